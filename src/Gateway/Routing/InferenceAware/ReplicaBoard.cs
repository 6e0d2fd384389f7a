using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using Yarp.ReverseProxy.Model;

namespace Gateway.Routing.InferenceAware;

/// <summary>A destination's last good scrape: its vLLM metrics and the gateway's in-flight count to it at that moment.</summary>
internal sealed record ReplicaSample(VllmMetrics Metrics, int InFlightAtScrape, long Timestamp);

/// <summary>What the gateway knows of one destination of an <c>InferenceAware</c> cluster.</summary>
internal sealed class ReplicaLoad(string destinationId)
{
    /// <summary>The destination id's stable hash (<see cref="PromptPrefix.Hash"/>), for rendezvous tie-breaks.</summary>
    public ulong IdHash { get; } = PromptPrefix.Hash(destinationId);

    /// <summary>The last good scrape, or null before the first.</summary>
    public volatile ReplicaSample? Sample;

    /// <summary>When the last scrape failed (<see cref="TimeProvider.GetTimestamp"/>), or 0; for tests and logs.</summary>
    public long LastFailure;

    /// <summary>The scrape settings in force (the scraper re-reads them when the destination's config changes).</summary>
    public ScrapeSettings Scrape = ScrapeSettings.Default;

    /// <summary>The metrics URL, for <see cref="ScrapedAddress"/> and <see cref="Scrape"/>.</summary>
    public Uri? Url;

    /// <summary>The destination address <see cref="Url"/> was made from.</summary>
    public string? ScrapedAddress;

    /// <summary>The config <see cref="Scrape"/> was read from (reference equality: YARP keeps it while unchanged).</summary>
    public object? ScrapeConfig;

    /// <summary>When the next scrape is due.</summary>
    public long Due;

    /// <summary>The scrape in progress, or null.</summary>
    public Task? Pending;

    /// <summary>Whether the last failure was already logged (one log line per failing streak).</summary>
    public bool FailureLogged;
}

/// <summary>
/// The state shared by the <c>InferenceAware</c> policy and the scraper: each destination's <see cref="ReplicaLoad"/>
/// (keyed by YARP's <see cref="DestinationState"/>, which YARP keeps across reloads while the destination id stays; a
/// removed destination's entry goes with it), each cluster's <see cref="PrefixTable"/>, and each cluster model's
/// parsed <see cref="InferenceAwareSettings"/>.
/// </summary>
internal sealed class ReplicaBoard(TimeProvider time)
{
    private readonly ConditionalWeakTable<DestinationState, ReplicaLoad> _loads = [];
    private readonly ConditionalWeakTable<ClusterModel, InferenceAwareSettings> _settings = [];
    private readonly ConcurrentDictionary<string, PrefixTable> _tables = new(StringComparer.Ordinal);

    public TimeProvider Time => time;

    /// <summary>The destination's load state, created on first use.</summary>
    public ReplicaLoad LoadOf(DestinationState destination) =>
        _loads.TryGetValue(destination, out var load) ? load : _loads.GetValue(destination, static d => new ReplicaLoad(d.DestinationId));

    /// <summary>The settings of a cluster model, parsed once per model (invalid values were refused by validation; defaults stand in).</summary>
    public InferenceAwareSettings SettingsOf(ClusterModel model) =>
        _settings.TryGetValue(model, out var s) ? s : _settings.GetValue(model, static m => InferenceAwareSettings.Parse(m.Config.Metadata, m.Config.ClusterId, null));

    /// <summary>The cluster's prefix table; replaced (emptied) when its size or time-to-live changed.</summary>
    public PrefixTable TableOf(string clusterId, InferenceAwareSettings settings)
    {
        if (_tables.TryGetValue(clusterId, out var table) && table.Capacity == settings.PrefixTableSize && table.Ttl == settings.PrefixTtl)
        {
            return table;
        }

        var fresh = new PrefixTable(settings.PrefixTableSize, settings.PrefixTtl, time);
        return _tables.AddOrUpdate(clusterId, fresh, (_, old) => old.Capacity == fresh.Capacity && old.Ttl == fresh.Ttl ? old : fresh);
    }

    /// <summary>Whether a sample taken at <paramref name="sample"/> is too old to score by.</summary>
    public bool IsStale(ReplicaSample? sample, ScrapeSettings scrape) =>
        sample is null || time.GetElapsedTime(sample.Timestamp) > scrape.StaleAfter;
}
