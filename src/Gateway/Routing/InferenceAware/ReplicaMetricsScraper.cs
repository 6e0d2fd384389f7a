using System.Buffers;
using System.Net;
using Yarp.ReverseProxy;
using Yarp.ReverseProxy.Model;

namespace Gateway.Routing.InferenceAware;

/// <summary>
/// One background service that scrapes the vLLM metrics of every destination of every cluster whose
/// <c>LoadBalancingPolicy</c> is <c>InferenceAware</c> (found through <see cref="IProxyStateLookup"/> on each tick, so
/// clusters and destinations added or removed by a reload are followed): <c>GET {address}{MetricsPath}</c> every
/// <c>MetricsInterval</c>, bounded by <c>MetricsTimeout</c>, at most one scrape per destination at a time, scrapes of
/// different destinations in parallel. A good scrape replaces the destination's <see cref="ReplicaSample"/>; a failed
/// one is counted (<c>gateway.routing.scrape.failures</c>) and logged once per failing streak, and leaves the sample to
/// age until the policy treats it as stale. Scrapes go through the cluster's own <see cref="ClusterModel.HttpClient"/>
/// (YARP's client built from the cluster's <c>HttpClient</c> settings), so an https replica with a self-signed
/// certificate that the cluster accepts (<c>DangerousAcceptAnyServerCertificate</c>) or one that wants the client
/// certificate the cluster's client presents is scraped as it is forwarded to.
/// </summary>
internal sealed partial class ReplicaMetricsScraper : BackgroundService
{
    /// <summary>Most bytes of a metrics page read (vLLM's is tens of KB); a larger page is unparsable.</summary>
    public const int MaxBytes = 4 * 1024 * 1024;

    // Between ticks: until the next scrape is due, at least MinTick, at most MaxTick (a reload that adds a cluster is seen within it).
    private static readonly TimeSpan s_minTick = TimeSpan.FromMilliseconds(10);
    private static readonly TimeSpan s_maxTick = TimeSpan.FromSeconds(1);

    private readonly IProxyStateLookup _proxy;
    private readonly ReplicaBoard _board;
    private readonly InferenceAwareMetrics _metrics;
    private readonly ILogger<ReplicaMetricsScraper> _logger;
    private readonly TimeProvider _time;
    private readonly List<Task> _pending = [];

    public ReplicaMetricsScraper(IProxyStateLookup proxy, ReplicaBoard board, InferenceAwareMetrics metrics, ILogger<ReplicaMetricsScraper> logger)
    {
        _proxy = proxy;
        _board = board;
        _metrics = metrics;
        _logger = logger;
        _time = board.Time;
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            while (!stoppingToken.IsCancellationRequested)
            {
                var wait = Tick(stoppingToken);
                await Task.Delay(wait, _time, stoppingToken);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        finally
        {
            try
            {
                await Task.WhenAll(_pending);
            }
            catch (OperationCanceledException)
            {
            }
        }
    }

    /// <summary>Starts the scrapes that are due; returns how long to wait for the next.</summary>
    private TimeSpan Tick(CancellationToken stoppingToken)
    {
        _pending.RemoveAll(static t => t.IsCompleted);
        var now = _time.GetTimestamp();
        var next = long.MaxValue;
        foreach (var cluster in _proxy.GetClusters())
        {
            if (!string.Equals(cluster.Model.Config.LoadBalancingPolicy, InferenceAwarePolicy.PolicyName, StringComparison.OrdinalIgnoreCase))
            {
                continue;
            }

            foreach (var destination in cluster.Destinations.Values)
            {
                var load = _board.LoadOf(destination);
                if (load.Pending is { IsCompleted: false } || now < load.Due)
                {
                    next = Math.Min(next, load.Due);
                    continue;
                }

                Configure(load, cluster, destination);
                if (load.Url is null)
                {
                    continue;
                }

                load.Due = now + (long)(load.Scrape.Interval.TotalSeconds * _time.TimestampFrequency);
                var task = ScrapeAsync(cluster, destination, load, stoppingToken);
                load.Pending = task;
                _pending.Add(task);
                next = Math.Min(next, load.Due);
            }
        }

        if (next == long.MaxValue)
        {
            return s_maxTick;
        }

        var wait = next <= now ? TimeSpan.Zero : _time.GetElapsedTime(now, next);
        return wait < s_minTick ? s_minTick : wait > s_maxTick ? s_maxTick : wait;
    }

    /// <summary>Re-reads a destination's scrape settings and URL when its configuration changed.</summary>
    private static void Configure(ReplicaLoad load, ClusterState cluster, DestinationState destination)
    {
        var config = destination.Model.Config;
        if (ReferenceEquals(load.ScrapeConfig, config) && ReferenceEquals(load.ScrapedAddress, config.Address))
        {
            return;
        }

        load.Scrape = ScrapeSettings.Of(config.Metadata, cluster.Model.Config.Metadata, destination.DestinationId, null);
        load.Url = Uri.TryCreate(config.Address, UriKind.Absolute, out var address) && Uri.TryCreate(address, load.Scrape.Path, out var url) ? url : null;
        load.ScrapedAddress = config.Address;
        load.ScrapeConfig = config;
    }

    private async Task ScrapeAsync(ClusterState cluster, DestinationState destination, ReplicaLoad load, CancellationToken stoppingToken)
    {
        await Task.Yield();
        var clusterId = cluster.ClusterId;

        // The cluster's own client (YARP's, from its HttpClient settings: TLS protocols, DangerousAcceptAnyServerCertificate,
        // a client certificate or proxy a client factory adds, pool limits), so a replica the cluster can forward to
        // can be scraped; its connections are the cluster's (counted by BackendConnections).
        var client = cluster.Model.HttpClient;
        var requestConfig = cluster.Model.Config.HttpRequest;
        var inFlight = destination.ConcurrentRequestCount;
        using var timeout = new CancellationTokenSource(load.Scrape.Timeout, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(timeout.Token, stoppingToken);
        byte[]? buffer = null;
        try
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, load.Url)
            {
                Version = requestConfig?.Version ?? HttpVersion.Version11,
                VersionPolicy = requestConfig?.VersionPolicy ?? HttpVersionPolicy.RequestVersionOrLower,
            };
            using var response = await client.SendAsync(request, linked.Token);
            if (!response.IsSuccessStatusCode)
            {
                Failed(clusterId, destination, load, ScrapeFailure.Status, $"status {(int)response.StatusCode}");
                return;
            }

            await using var stream = await response.Content.ReadAsStreamAsync(linked.Token);
            buffer = ArrayPool<byte>.Shared.Rent(64 * 1024);
            var length = 0;
            while (true)
            {
                if (length == buffer.Length)
                {
                    if (buffer.Length >= MaxBytes)
                    {
                        Failed(clusterId, destination, load, ScrapeFailure.Unparsable, $"larger than {MaxBytes} bytes");
                        return;
                    }

                    var larger = ArrayPool<byte>.Shared.Rent(buffer.Length * 2);
                    buffer.AsSpan(0, length).CopyTo(larger);
                    ArrayPool<byte>.Shared.Return(buffer);
                    buffer = larger;
                }

                var read = await stream.ReadAsync(buffer.AsMemory(length), linked.Token);
                if (read == 0)
                {
                    break;
                }

                length += read;
            }

            if (!VllmMetricsParser.TryParse(buffer.AsSpan(0, length), out var metrics))
            {
                Failed(clusterId, destination, load, ScrapeFailure.Unparsable, "no vllm:num_requests_running or vllm:num_requests_waiting series");
                return;
            }

            load.Sample = new ReplicaSample(metrics, inFlight, _time.GetTimestamp());
            if (load.FailureLogged)
            {
                load.FailureLogged = false;
                Log.ScrapeRecovered(_logger, clusterId, destination.DestinationId);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        catch (OperationCanceledException)
        {
            Failed(clusterId, destination, load, ScrapeFailure.Timeout, $"no answer within {load.Scrape.Timeout.TotalMilliseconds} ms");
        }
        catch (HttpRequestException ex)
        {
            Failed(clusterId, destination, load, ScrapeFailure.Unreachable, ex.Message);
        }
        catch (IOException ex)
        {
            Failed(clusterId, destination, load, ScrapeFailure.Unreachable, ex.Message);
        }
        finally
        {
            if (buffer is not null)
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
        }
    }

    private void Failed(string clusterId, DestinationState destination, ReplicaLoad load, ScrapeFailure reason, string detail)
    {
        load.LastFailure = _time.GetTimestamp();
        _metrics.ScrapeFailed(clusterId, reason);
        if (!load.FailureLogged)
        {
            load.FailureLogged = true;
            Log.ScrapeFailed(_logger, clusterId, destination.DestinationId, load.Url?.ToString() ?? "(none)", detail);
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 5201, Level = LogLevel.Warning,
            Message = "Metrics of destination '{Destination}' in cluster '{Cluster}' could not be read from {Url}: {Detail}. It is scored by the gateway's in-flight count alone until a scrape succeeds.")]
        public static partial void ScrapeFailed(ILogger logger, string cluster, string destination, string url, string detail);

        [LoggerMessage(EventId = 5202, Level = LogLevel.Information,
            Message = "Metrics of destination '{Destination}' in cluster '{Cluster}' are read again.")]
        public static partial void ScrapeRecovered(ILogger logger, string cluster, string destination);
    }
}
