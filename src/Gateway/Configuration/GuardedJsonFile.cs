using Microsoft.Extensions.Configuration.Json;

namespace Gateway.Configuration;

/// <summary>
/// A watched JSON configuration file whose reload never empties the configuration: .NET's JSON file provider, when
/// an edited file does not parse, drops every key of the file and signals a reload, so that the gateway would see the
/// configuration without that file (no policies, no routes of its own) as if it were valid. This source keeps the
/// keys of the last version that parsed instead, and logs the refusal once, naming the file.
/// </summary>
internal sealed class GuardedJsonConfigurationSource : JsonConfigurationSource
{
    /// <inheritdoc/>
    public override IConfigurationProvider Build(IConfigurationBuilder builder)
    {
        EnsureDefaults(builder);
        return new GuardedJsonConfigurationProvider(this);
    }
}

/// <summary>The provider of <see cref="GuardedJsonConfigurationSource"/>.</summary>
internal sealed partial class GuardedJsonConfigurationProvider(GuardedJsonConfigurationSource source) : JsonConfigurationProvider(source)
{
    private bool _started;
    private string? _lastError;

    /// <summary>Where a refused reload is logged; before it is set (start-up), on stderr.</summary>
    public ILogger? Logger { get; set; }

    /// <summary>Reloads of this file refused because it did not parse.</summary>
    public int Refused { get; private set; }

    /// <summary>The file's full path.</summary>
    public string FilePath => Source.FileProvider?.GetFileInfo(Source.Path ?? string.Empty).PhysicalPath ?? Source.Path ?? "";

    /// <inheritdoc/>
    public override void Load()
    {
        base.Load(); // at start-up a file that does not parse stops the gateway (InvalidDataException)
        ExistedAtStart = FilePath.Length > 0 && File.Exists(FilePath);
        _started = true;
    }

    /// <summary>Whether the file was there at start-up (an optional file that was not, such as appsettings.Production.json, may stay absent).</summary>
    public bool ExistedAtStart { get; private set; }

    /// <inheritdoc/>
    public override void Load(Stream stream)
    {
        try
        {
            base.Load(stream); // replaces Data only once the whole file has parsed
            _lastError = null;
        }
        catch (Exception ex) when (_started)
        {
            // A reload: keep Data (the last good keys). The base class then signals a reload, which changes nothing.
            var error = ex.InnerException is null ? ex.Message : $"{ex.Message} {ex.InnerException.Message}";
            if (error != _lastError)
            {
                _lastError = error; // a file watcher may signal one edit twice: say it once
                Refused++;
                if (Logger is { } logger)
                {
                    Log.FileRefused(logger, FilePath, error);
                }
                else
                {
                    Console.Error.WriteLine($"gateway: configuration reload refused, the last good configuration stays: '{FilePath}': {error}");
                }
            }
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 1101, Level = LogLevel.Error, Message = "Configuration reload refused, the last good configuration stays in force: '{File}' is not valid JSON: {Error}")]
        public static partial void FileRefused(ILogger logger, string file, string error);
    }
}

/// <summary>Adds watched JSON files whose reload keeps the last good keys when the file does not parse.</summary>
internal static class GuardedJsonFile
{
    /// <summary>Adds <paramref name="path"/>, required and watched.</summary>
    public static IConfigurationBuilder AddGuardedJsonFile(this IConfigurationBuilder builder, string path) =>
        builder.Add<GuardedJsonConfigurationSource>(s =>
        {
            s.Path = Path.GetFullPath(path);
            s.Optional = false;
            s.ReloadOnChange = true;
            s.ResolveFileProvider();
        });

    /// <summary>Replaces the builder's plain JSON file sources (appsettings.json) with guarded ones, in place.</summary>
    public static void GuardJsonFiles(IConfigurationBuilder builder)
    {
        for (var i = 0; i < builder.Sources.Count; i++)
        {
            if (builder.Sources[i] is JsonConfigurationSource { Path: { } path } json and not GuardedJsonConfigurationSource)
            {
                builder.Sources[i] = new GuardedJsonConfigurationSource
                {
                    FileProvider = json.FileProvider,
                    Path = path,
                    Optional = json.Optional,
                    ReloadOnChange = json.ReloadOnChange,
                    ReloadDelay = json.ReloadDelay,
                    OnLoadException = json.OnLoadException,
                };
            }
        }
    }

    /// <summary>Sends the refusals of the configuration's guarded files to <paramref name="logger"/>.</summary>
    public static void AttachLogger(IConfiguration configuration, ILogger logger)
    {
        foreach (var provider in (configuration as IConfigurationRoot)?.Providers.OfType<GuardedJsonConfigurationProvider>() ?? [])
        {
            provider.Logger = logger;
        }
    }
}
