using System.Net.Sockets;
using Yarp.ReverseProxy;
using Yarp.ReverseProxy.Health;
using Yarp.ReverseProxy.Model;

namespace Gateway.Admin;

/// <summary>
/// Readiness for <c>/readyz</c>: every cluster has a destination that can take traffic and no open circuit breaker
/// (each cluster's report says which failed: <c>no_available_destination</c> or <c>circuit_open</c>). A destination counts when
/// YARP's active health check marks it healthy, or, where active checks are off, when it is not marked unhealthy by
/// passive checks and accepts a TCP connection within a second. Probe results are cached for a second so a busy
/// orchestrator cannot turn readiness checks into load. Not ready, whatever the backends, until the start-up warm-up
/// (<see cref="Hosting.Warmup"/>) is done.
/// </summary>
internal sealed class BackendReadiness
{
    private static readonly TimeSpan s_probeTimeout = TimeSpan.FromSeconds(1);
    private static readonly TimeSpan s_cacheFor = TimeSpan.FromSeconds(1);

    private readonly IProxyStateLookup _proxyState;
    private readonly TimeProvider _time;
    private readonly Hosting.Warmup _warmup;
    private readonly Shaping.ShapingRuntime _shaping;
    private readonly Lock _lock = new();
    private (long At, Report Value)? _cached;

    public BackendReadiness(IProxyStateLookup proxyState, TimeProvider time, Hosting.Warmup warmup, Shaping.ShapingRuntime shaping)
    {
        _proxyState = proxyState;
        _time = time;
        _warmup = warmup;
        _shaping = shaping;
    }

    /// <summary>The readiness of each cluster; <see cref="WarmingUp"/> while the start-up warm-up runs (never ready then).</summary>
    public sealed record Report(bool Ready, IReadOnlyDictionary<string, ClusterReport> Clusters, bool WarmingUp = false);

    private static readonly Report s_warmingUp = new(false, new Dictionary<string, ClusterReport>(), WarmingUp: true);

    /// <summary>
    /// One cluster: ready when <see cref="Available"/> &gt; 0 and its circuit breaker (if any) is not open;
    /// <see cref="Reason"/> says why not (<c>no_available_destination</c>, <c>circuit_open</c>), null when ready.
    /// </summary>
    public sealed record ClusterReport(bool Ready, int Destinations, int Available, string? Reason = null);

    public async Task<Report> CheckAsync(CancellationToken cancellationToken)
    {
        if (!_warmup.Done)
        {
            return s_warmingUp;
        }

        lock (_lock)
        {
            if (_cached is { } c && _time.GetElapsedTime(c.At) < s_cacheFor)
            {
                return c.Value;
            }
        }

        var clusters = new Dictionary<string, ClusterReport>();
        foreach (var cluster in _proxyState.GetClusters())
        {
            var destinations = cluster.Destinations.Values.ToList();
            var checks = destinations.Select(d => IsAvailableAsync(d, cancellationToken)).ToList();
            var results = await Task.WhenAll(checks);
            var available = results.Count(static r => r);
            var open = _shaping.Current.Clusters.TryGetValue(cluster.ClusterId, out var admission) && admission.Breaker is { } breaker && breaker.IsBreaking(out _);
            clusters[cluster.ClusterId] = new ClusterReport(available > 0 && !open, destinations.Count, available,
                available == 0 ? "no_available_destination" : open ? "circuit_open" : null);
        }

        var report = new Report(clusters.Count > 0 && clusters.Values.All(static c => c.Ready), clusters);
        lock (_lock)
        {
            _cached = (_time.GetTimestamp(), report);
        }

        return report;
    }

    private static async Task<bool> IsAvailableAsync(DestinationState destination, CancellationToken cancellationToken)
    {
        var health = destination.Health;
        if (health.Active == DestinationHealth.Healthy)
        {
            return true;
        }

        if (health.Active == DestinationHealth.Unhealthy || health.Passive == DestinationHealth.Unhealthy)
        {
            return false;
        }

        if (!Uri.TryCreate(destination.Model?.Config.Address, UriKind.Absolute, out var uri))
        {
            return false;
        }

        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(s_probeTimeout);
        using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
        try
        {
            await socket.ConnectAsync(uri.Host, uri.Port, timeout.Token);
            return true;
        }
        catch (Exception ex) when (ex is SocketException or OperationCanceledException)
        {
            return false;
        }
    }
}
