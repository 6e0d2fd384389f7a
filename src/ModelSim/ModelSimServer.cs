using System.Globalization;
using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using ModelSim.Engine;
using ModelSim.Hosting;

namespace ModelSim;

/// <summary>
/// A simulated GPU model server running in this process on real Kestrel sockets: the same application as
/// <c>dotnet run --project src/ModelSim</c>, for tests, benchmarks and tools that need a backend.
/// </summary>
/// <example>
/// <code>
/// await using var sim = await ModelSimServer.StartAsync(new Dictionary&lt;string, string?&gt; { ["Sim:Slots"] = "4" }, cancellationToken);
/// using var http = new HttpClient { BaseAddress = sim.HttpAddress };
/// // … send load …
/// SimStats stats = sim.Stats;
/// </code>
/// </example>
/// <remarks>
/// Unless the settings say otherwise both listeners bind 127.0.0.1 on a free port (<c>Sim:Http:Port</c> and
/// <c>Sim:Grpc:Port</c> default to 0 here, not 9000/9001); the bound ports are read from Kestrel after start.
/// Only the given settings are used: no environment variables, no appsettings.json. Every instance has its own engine,
/// counters and <c>ModelSim</c> meter, so several can run side by side.
/// </remarks>
public sealed class ModelSimServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly GenerationEngine _engine;
    private int _disposed;

    private ModelSimServer(WebApplication app, Uri httpAddress, Uri grpcAddress)
    {
        _app = app;
        _engine = app.Services.GetRequiredService<GenerationEngine>();
        HttpAddress = httpAddress;
        GrpcAddress = grpcAddress;
        WebSocketAddress = new UriBuilder(httpAddress) { Scheme = "ws", Path = "/v1/stream" }.Uri;
    }

    /// <summary>Base address of the HTTP/1.1 listener (OpenAI-compatible API, SSE, WebSocket, <c>/metrics</c>), e.g. <c>http://127.0.0.1:43121/</c>.</summary>
    public Uri HttpAddress { get; }

    /// <summary>Base address of the gRPC listener (HTTP/2 cleartext, prior knowledge), e.g. <c>http://127.0.0.1:43122/</c>.</summary>
    public Uri GrpcAddress { get; }

    /// <summary>The WebSocket endpoint, <c>ws://…/v1/stream</c>.</summary>
    public Uri WebSocketAddress { get; }

    /// <summary>The served model name (<c>Sim:Model</c>).</summary>
    public string Model => _engine.Options.Model;

    /// <summary>A consistent snapshot of this instance's exact counters.</summary>
    public SimStats Stats => _engine.GetStats();

    /// <summary>The application's services (for example its <see cref="System.Diagnostics.Metrics.IMeterFactory"/>).</summary>
    public IServiceProvider Services => _app.Services;

    /// <summary>
    /// Starts a simulator with <paramref name="settings"/> (configuration keys such as <c>Sim:Slots</c>) on the system clock.
    /// </summary>
    /// <param name="settings">Configuration overrides; null for all defaults.</param>
    /// <param name="cancellationToken">Cancels the start.</param>
    /// <returns>The running server; dispose it to stop.</returns>
    /// <exception cref="Microsoft.Extensions.Options.OptionsValidationException">A setting is invalid; the message names every bad key and its value.</exception>
    /// <exception cref="InvalidOperationException">A setting cannot be converted to its type, or is not a known key (the message names it).</exception>
    /// <exception cref="IOException">A listener could not bind (address in use).</exception>
    public static Task<ModelSimServer> StartAsync(IEnumerable<KeyValuePair<string, string?>>? settings = null, CancellationToken cancellationToken = default) =>
        StartAsync(settings, timeProvider: null, cancellationToken);

    /// <summary>Starts a simulator whose engine runs on <paramref name="timeProvider"/> (e.g. a fake clock in tests).</summary>
    /// <param name="settings">Configuration overrides; null for all defaults.</param>
    /// <param name="timeProvider">The engine's clock; null for <see cref="TimeProvider.System"/>.</param>
    /// <param name="cancellationToken">Cancels the start.</param>
    /// <returns>The running server; dispose it to stop.</returns>
    /// <exception cref="Microsoft.Extensions.Options.OptionsValidationException">A setting is invalid; the message names every bad key and its value.</exception>
    /// <exception cref="InvalidOperationException">A setting cannot be converted to its type, or is not a known key (the message names it).</exception>
    /// <exception cref="IOException">A listener could not bind (address in use).</exception>
    public static async Task<ModelSimServer> StartAsync(IEnumerable<KeyValuePair<string, string?>>? settings, TimeProvider? timeProvider, CancellationToken cancellationToken = default)
    {
        var app = ModelSimApp.Build(ModelSimApp.CreateInProcessBuilder(settings), timeProvider);
        try
        {
            await app.StartAsync(cancellationToken).ConfigureAwait(false);
            var (http, grpc) = BoundAddresses(app);
            return new ModelSimServer(app, http, grpc);
        }
        catch
        {
            await app.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Freezes all generation for <paramref name="duration"/> (as <c>POST /sim/stall?ms=N</c>).</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="duration"/> is not positive.</exception>
    public void Stall(TimeSpan duration) => _engine.Stall(duration);

    /// <summary>Collapses the server now for <paramref name="duration"/> (as <c>POST /sim/collapse?ms=N</c>).</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="duration"/> is not positive.</exception>
    public void Collapse(TimeSpan duration) => _engine.Collapse(duration);

    /// <summary>
    /// Requests per second this instance completes at saturation for requests of this shape:
    /// <c>1000 × Slots / (PrefillMs + P × PrefillPerTokenMs + N × PerTokenMs × (1 + BatchSlowdown))</c> (see docs/modelsim.md).
    /// </summary>
    /// <param name="promptTokens">Prompt tokens per request (cl100k), ≥ 0.</param>
    /// <param name="outputTokens">Output tokens per request, ≥ 1.</param>
    /// <exception cref="ArgumentOutOfRangeException">A size is out of range.</exception>
    public double CapacityPerSecond(int promptTokens, int outputTokens)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(promptTokens);
        ArgumentOutOfRangeException.ThrowIfLessThan(outputTokens, 1);
        return LatencyModel.CapacityPerSecond(_engine.Options, promptTokens, outputTokens);
    }

    /// <summary>Latency of a lone request (no queue, batch otherwise empty): <c>PrefillMs + P × PrefillPerTokenMs + N × PerTokenMs</c>.</summary>
    /// <param name="promptTokens">Prompt tokens, ≥ 0.</param>
    /// <param name="outputTokens">Output tokens, ≥ 1.</param>
    /// <exception cref="ArgumentOutOfRangeException">A size is out of range.</exception>
    public TimeSpan UnloadedLatency(int promptTokens, int outputTokens)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(promptTokens);
        ArgumentOutOfRangeException.ThrowIfLessThan(outputTokens, 1);
        return TimeSpan.FromMilliseconds(LatencyModel.UnloadedLatencyMs(_engine.Options, promptTokens, outputTokens));
    }

    /// <summary>
    /// Polls <see cref="Stats"/> (every 5 ms, real time) until <paramref name="condition"/> holds, e.g.
    /// <c>s =&gt; s.Inflight == 0 &amp;&amp; s.Cancelled == 1</c>.
    /// </summary>
    /// <param name="condition">The awaited state.</param>
    /// <param name="timeout">How long to wait at most.</param>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <returns>The first snapshot that satisfied <paramref name="condition"/>.</returns>
    /// <exception cref="TimeoutException">The condition did not hold within <paramref name="timeout"/>; the message shows the last snapshot.</exception>
    public async Task<SimStats> WaitForStatsAsync(Func<SimStats, bool> condition, TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(condition);
        var start = TimeProvider.System.GetTimestamp();
        while (true)
        {
            var stats = Stats;
            if (condition(stats))
            {
                return stats;
            }

            if (TimeProvider.System.GetElapsedTime(start) > timeout)
            {
                throw new TimeoutException($"The simulator's stats did not reach the expected state within {timeout.TotalMilliseconds} ms; last: {stats}.");
            }

            await Task.Delay(TimeSpan.FromMilliseconds(5), TimeProvider.System, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Stops the listeners; running and queued requests end at once (streams are cut, others get 503/UNAVAILABLE).</summary>
    /// <param name="cancellationToken">Makes the stop ungraceful.</param>
    public Task StopAsync(CancellationToken cancellationToken = default) => _app.StopAsync(cancellationToken);

    /// <summary>Stops the server (if running) and releases it.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        try
        {
            await _app.StopAsync().ConfigureAwait(false);
        }
        finally
        {
            await _app.DisposeAsync().ConfigureAwait(false);
        }
    }

    /// <inheritdoc/>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"ModelSim {Model} http={HttpAddress} grpc={GrpcAddress}");

    /// <summary>The bound listener addresses, from Kestrel's <see cref="ListenOptions"/> (updated with the real port on bind).</summary>
    internal static (Uri Http, Uri Grpc) BoundAddresses(WebApplication app)
    {
        var listeners = app.Services.GetRequiredService<SimListeners>();
        return (ToUri(listeners.Http, "HTTP", app), ToUri(listeners.Grpc, "gRPC", app));
    }

    private static Uri ToUri(ListenOptions? listen, string name, WebApplication app)
    {
        if (listen?.IPEndPoint is not { Port: > 0 } endPoint)
        {
            var known = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses;
            throw new InvalidOperationException($"The {name} listener has no bound port (server addresses: {string.Join(", ", known ?? [])}).");
        }

        var host = endPoint.Address.Equals(IPAddress.Any) ? IPAddress.Loopback : endPoint.Address;
        return new UriBuilder(Uri.UriSchemeHttp, host.ToString(), endPoint.Port).Uri;
    }
}
