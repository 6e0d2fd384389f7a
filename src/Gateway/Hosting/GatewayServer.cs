using Gateway.Configuration;
using Gateway.Listeners;

namespace Gateway.Hosting;

/// <summary>
/// Runs a gateway in-process, for tests and benchmarks: the same application as the gateway process, configured
/// from JSON text and/or key-value settings, on the listeners' configured ports (0 = a free port, which
/// <see cref="GetAddress"/> then reports). The current directory's appsettings.json is not read.
/// </summary>
/// <example>
/// <code>
/// await using var gateway = await GatewayServer.StartAsync(json, settings: null, cancellationToken);
/// var http = gateway.GetAddress("Http"); // http://127.0.0.1:40123
/// </code>
/// </example>
public sealed class GatewayServer : IAsyncDisposable
{
    private static int s_instances;
    private readonly WebApplication _app;

    private GatewayServer(WebApplication app) => _app = app;

    /// <summary>The application's services (tests read state and metrics through them).</summary>
    public IServiceProvider Services => _app.Services;

    /// <summary>
    /// Builds and starts a gateway.
    /// </summary>
    /// <param name="json">Configuration as JSON text, in the shape of appsettings.json; may be null.</param>
    /// <param name="settings">Key-value overrides (<c>Gateway:Listeners:Http:Port</c> = <c>0</c>), applied after <paramref name="json"/>; may be null.</param>
    /// <param name="cancellationToken">Cancels start-up.</param>
    /// <param name="configureLogging">Optional: adds logging providers (tests capture log levels with it).</param>
    /// <returns>The started gateway; dispose it to stop it.</returns>
    /// <exception cref="InvalidOperationException">The configuration is invalid; the message lists every problem, one line each, naming its key.</exception>
    /// <param name="jsonFile">Optional: a JSON file layered after <paramref name="json"/> and watched, so that editing it reloads the configuration as in the gateway process.</param>
    /// <param name="configure">Optional: adds configuration sources after the others (tests add one they can reload at will).</param>
    /// <param name="tracing">Optional: turns tracing on (as an OTLP endpoint would) and adds to it, e.g. an in-memory exporter.</param>
    public static async Task<GatewayServer> StartAsync(string? json, IReadOnlyDictionary<string, string?>? settings, CancellationToken cancellationToken,
        Action<ILoggingBuilder>? configureLogging = null, string? jsonFile = null, Action<IConfigurationBuilder>? configure = null,
        Action<OpenTelemetry.Trace.TracerProviderBuilder>? tracing = null)
    {
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { ContentRootPath = AppContext.BaseDirectory, Args = [] });
        builder.Configuration.Sources.Clear();
        builder.Configuration.AddInMemoryCollection([new("Gateway:Admin:WarmupRequests", "0")]); // tests count backend requests; a setting may turn it on
        builder.Logging.ClearProviders();
        if (json is not null)
        {
            builder.Configuration.AddJsonStream(new MemoryStream(System.Text.Encoding.UTF8.GetBytes(json)));
        }

        if (jsonFile is not null)
        {
            builder.Configuration.AddGuardedJsonFile(jsonFile);
        }

        if (settings is not null)
        {
            builder.Configuration.AddInMemoryCollection(settings);
        }

        configure?.Invoke(builder.Configuration);

        builder.Logging.AddConfiguration(builder.Configuration.GetSection("Logging"));
        configureLogging?.Invoke(builder.Logging);

        try
        {
            var app = GatewayApp.Build(builder, $"{Telemetry.GatewayMetrics.MeterName}.{Interlocked.Increment(ref s_instances)}", tracing);
            await GatewayApp.StartAsync(app, cancellationToken);
            return new GatewayServer(app);
        }
        catch (GatewayApp.ConfigurationException ex)
        {
            throw new InvalidOperationException(ex.Message, ex);
        }
    }

    /// <summary>
    /// The address of a listener after start-up, e.g. <c>http://127.0.0.1:40123</c>.
    /// </summary>
    /// <param name="listener">Http, Grpc, WebSocket, Https or Admin (case-insensitive).</param>
    /// <returns>The address, or null when that listener is not enabled.</returns>
    /// <exception cref="ArgumentException"><paramref name="listener"/> is not a listener name.</exception>
    public Uri? GetAddress(string listener)
    {
        if (!ListenerNames.TryParse(listener, out var name))
        {
            throw new ArgumentException($"'{listener}' is not a listener (Http, Grpc, WebSocket, Https, Admin).", nameof(listener));
        }

        return _app.Services.GetRequiredService<ListenerRegistry>().GetAddress(name);
    }

    /// <summary>Stops the gateway, letting in-flight exchanges finish for up to the host's shutdown timeout.</summary>
    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
