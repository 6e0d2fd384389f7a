using Yarp.ReverseProxy;
using Yarp.ReverseProxy.Health;
using Yarp.ReverseProxy.Model;

namespace Gateway.Admin;

/// <summary>
/// Logs one line each time a destination's health changes (YARP's active and passive checks), so an operator sees a
/// model server go down and come back without YARP's per-probe warnings, each with a stack trace every probe interval
/// (appsettings.json keeps <c>Yarp.ReverseProxy.Health</c> at Error; set it to Warning to see every failed probe).
/// </summary>
/// <remarks>Reads YARP's proxy state once a second (a walk over the clusters' destinations; nothing on the request path).</remarks>
internal sealed partial class DestinationHealthLog : BackgroundService
{
    private static readonly TimeSpan s_interval = TimeSpan.FromSeconds(1);
    private readonly IProxyStateLookup _proxyState;
    private readonly TimeProvider _time;
    private readonly ILogger<DestinationHealthLog> _logger;
    private readonly Dictionary<(string Cluster, string Destination), (DestinationHealth Active, DestinationHealth Passive)> _last = [];

    public DestinationHealthLog(IProxyStateLookup proxyState, TimeProvider time, ILogger<DestinationHealthLog> logger)
    {
        _proxyState = proxyState;
        _time = time;
        _logger = logger;
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(s_interval, _time);
        try
        {
            do
            {
                Check();
            }
            while (await timer.WaitForNextTickAsync(stoppingToken));
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Shutting down.
        }
    }

    /// <summary>Compares every destination's health with what was seen last, and logs the changes.</summary>
    internal void Check()
    {
        foreach (var cluster in _proxyState.GetClusters())
        {
            foreach (var (id, destination) in cluster.Destinations)
            {
                var now = (destination.Health.Active, destination.Health.Passive);
                var key = (cluster.ClusterId, id);
                var seen = _last.TryGetValue(key, out var before);
                _last[key] = now;
                if (seen ? before == now : now is (DestinationHealth.Unknown, DestinationHealth.Unknown))
                {
                    continue;
                }

                var wasUnhealthy = seen && (before.Active == DestinationHealth.Unhealthy || before.Passive == DestinationHealth.Unhealthy);
                var isUnhealthy = now.Active == DestinationHealth.Unhealthy || now.Passive == DestinationHealth.Unhealthy;
                if (isUnhealthy && !wasUnhealthy)
                {
                    Log.Unhealthy(_logger, id, cluster.ClusterId, destination.Model?.Config.Address ?? "?", now.Active, now.Passive);
                }
                else if (!isUnhealthy && wasUnhealthy)
                {
                    Log.Healthy(_logger, id, cluster.ClusterId, destination.Model?.Config.Address ?? "?", now.Active, now.Passive);
                }
            }
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 5101, Level = LogLevel.Warning, Message = "Destination '{Destination}' of cluster '{Cluster}' ({Address}) is unhealthy (active check: {Active}, passive: {Passive}); requests avoid it while another destination is healthy.")]
        public static partial void Unhealthy(ILogger logger, string destination, string cluster, string address, DestinationHealth active, DestinationHealth passive);

        [LoggerMessage(EventId = 5102, Level = LogLevel.Information, Message = "Destination '{Destination}' of cluster '{Cluster}' ({Address}) is healthy again (active check: {Active}, passive: {Passive}).")]
        public static partial void Healthy(ILogger logger, string destination, string cluster, string address, DestinationHealth active, DestinationHealth passive);
    }
}
