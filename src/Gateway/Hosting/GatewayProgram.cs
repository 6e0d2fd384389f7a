using Gateway.Configuration;
using Microsoft.Extensions.Options;

namespace Gateway.Hosting;

/// <summary>The gateway's command line: <c>[--config FILE]...</c> then standard .NET configuration overrides.</summary>
internal static class GatewayProgram
{
    public static async Task<int> RunAsync(string[] args)
    {
        // Socket completions run inline on the socket engine's thread instead of hopping to the thread pool: every step
        // of the proxy path is asynchronous, and on few cores this gave 15-20% more requests/s through the gateway
        // (docs/benchmarks.md). Set DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS=0 to turn it off; read by the runtime
        // when the first socket is used, so it is set before anything else.
        if (Environment.GetEnvironmentVariable("DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS") is null)
        {
            Environment.SetEnvironmentVariable("DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS", "1");
        }

        WebApplication app;
        try
        {
            var builder = CreateBuilder(args);
            app = GatewayApp.Build(builder);
            await GatewayApp.StartAsync(app, CancellationToken.None);
        }
        catch (GatewayApp.ConfigurationException ex)
        {
            foreach (var error in ex.Errors)
            {
                await Console.Error.WriteLineAsync($"gateway: configuration error: {error}");
            }

            return 2;
        }
        catch (InvalidDataException ex)
        {
            // A configuration file that is not valid JSON (appsettings.json or a --config file).
            await Console.Error.WriteLineAsync($"gateway: configuration error: {ex.Message} {ex.InnerException?.Message}".TrimEnd());
            return 2;
        }
        catch (Exception ex) when (ex is InvalidOperationException or OptionsValidationException)
        {
            // YARP's own validation of ReverseProxy (for example an invalid route match) ends here.
            await Console.Error.WriteLineAsync($"gateway: configuration error: {Flatten(ex)}");
            return 2;
        }
        catch (Exception ex) when (ex is ArgumentException or FormatException or OverflowException)
        {
            // A value a library refuses at start-up that no check of ours knew of (the logging section's, for example):
            // one line, never a stack trace.
            await Console.Error.WriteLineAsync($"gateway: configuration error: a setting was refused while starting: {Flatten(ex)}");
            return 2;
        }

        PrintListeners(app);
        await app.WaitForShutdownAsync();
        await app.DisposeAsync();
        return 0;
    }

    /// <summary>
    /// A builder with the gateway's configuration sources: appsettings.json (and appsettings.{Environment}.json) from
    /// the current directory, each <c>--config FILE</c> in order, environment variables, then the command line.
    /// </summary>
    /// <exception cref="GatewayApp.ConfigurationException">A <c>--config</c> file is missing or has no value.</exception>
    internal static WebApplicationBuilder CreateBuilder(string[] args)
    {
        var files = new List<string>();
        var rest = new List<string>();
        for (var i = 0; i < args.Length; i++)
        {
            if (args[i] is "--config" or "-c")
            {
                if (i + 1 >= args.Length)
                {
                    throw new GatewayApp.ConfigurationException(["--config needs a file path."]);
                }

                files.Add(args[++i]);
            }
            else if (args[i].StartsWith("--config=", StringComparison.Ordinal))
            {
                files.Add(args[i]["--config=".Length..]);
            }
            else
            {
                rest.Add(args[i]);
            }
        }

        CheckArguments(rest);

        var missing = files.Where(f => !File.Exists(f)).Select(f => $"--config: file '{Path.GetFullPath(f)}' does not exist.").ToList();
        if (missing.Count > 0)
        {
            throw new GatewayApp.ConfigurationException(missing);
        }

        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = [.. rest] });
        GuardedJsonFile.GuardJsonFiles(builder.Configuration); // appsettings.json
        foreach (var file in files)
        {
            builder.Configuration.AddGuardedJsonFile(file);
        }

        // Later sources win: keep environment variables and the command line above the --config files.
        builder.Configuration.AddEnvironmentVariables();
        builder.Configuration.AddCommandLine([.. rest]);
        return builder;
    }

    /// <summary>Top-level configuration sections the command line may set.</summary>
    private static readonly HashSet<string> s_roots = new(StringComparer.OrdinalIgnoreCase)
    {
        "Gateway", "ReverseProxy", "Logging", "Kestrel", "AllowedHosts", "environment", "contentRoot", "applicationName",
    };

    /// <summary>
    /// Command-line overrides are <c>--Section:Key=Value</c> (or <c>--Section:Key Value</c>); anything else, and any section
    /// the gateway does not read, is refused rather than ignored.
    /// </summary>
    /// <exception cref="GatewayApp.ConfigurationException">An argument is not a known override.</exception>
    private static void CheckArguments(List<string> args)
    {
        var errors = new List<string>();
        for (var i = 0; i < args.Count; i++)
        {
            var arg = args[i];
            if (!arg.StartsWith("--", StringComparison.Ordinal) || arg.Length == 2)
            {
                errors.Add($"unexpected argument '{arg}': use --config FILE or --Section:Key=Value (for example --Gateway:Listeners:Http:Port=9080).");
                continue;
            }

            var equals = arg.IndexOf('=', StringComparison.Ordinal);
            var key = equals < 0 ? arg[2..] : arg[2..equals];
            if (equals < 0)
            {
                if (i + 1 >= args.Count)
                {
                    errors.Add($"'{arg}' has no value: use --{key}=VALUE.");
                    continue;
                }

                i++; // the value
            }

            var root = key.Split(':')[0];
            if (!s_roots.Contains(root))
            {
                errors.Add($"'--{key}' is not a setting the gateway reads (sections: Gateway, ReverseProxy, Logging, Kestrel).");
            }
        }

        if (errors.Count > 0)
        {
            throw new GatewayApp.ConfigurationException(errors);
        }
    }

    private static void PrintListeners(WebApplication app)
    {
        var registry = app.Services.GetRequiredService<Listeners.ListenerRegistry>();
        var logger = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Gateway");
        foreach (var name in Listeners.ListenerNames.All)
        {
            if (registry.GetAddress(name) is { } address)
            {
                Log.Listening(logger, name, address);
            }
        }
    }

    private static string Flatten(Exception ex)
    {
        var parts = new List<string>();
        for (Exception? e = ex; e is not null; e = e.InnerException)
        {
            if (e is AggregateException agg)
            {
                parts.AddRange(agg.InnerExceptions.Select(i => i.Message));
                break;
            }

            parts.Add(e.Message);
        }

        return string.Join(" ", parts.Distinct());
    }
}

internal static partial class Log
{
    [LoggerMessage(EventId = 1, Level = LogLevel.Information, Message = "{Listener} listener on {Address}")]
    public static partial void Listening(ILogger logger, Listeners.ListenerName listener, Uri address);
}
