using System.Globalization;
using Yarp.ReverseProxy.Configuration;
using Yarp.ReverseProxy.Configuration.ClusterValidators;

namespace Gateway.Routing.InferenceAware;

/// <summary>
/// A cluster's <c>InferenceAware</c> settings, read from its <c>Metadata</c> (keys <c>InferenceAware.*</c>). Parsed
/// once per cluster model (YARP replaces the model on every reload) and validated by <see cref="InferenceAwareRule"/>.
/// </summary>
internal sealed record InferenceAwareSettings
{
    /// <summary>Metadata key prefix of the cluster settings.</summary>
    public const string Prefix = "InferenceAware.";

    /// <summary>The settings' names after <see cref="Prefix"/>; any other <c>InferenceAware.*</c> metadata key is refused.</summary>
    public static readonly string[] Names = ["PrefixWeight", "QueueWeight", "KvWeight", "LoadFactor", "PrefixBlocks", "PrefixTableSize", "PrefixTtl"];

    /// <summary>Characters per prefix block: the prompt's chat text is hashed in blocks of this many characters.</summary>
    public const int BlockChars = 64;

    /// <summary>Most prefix blocks (<see cref="PrefixBlocks"/>); the prompt text the classification keeps is this many blocks long at most.</summary>
    public const int MaxPrefixBlocks = 1024;

    /// <summary>The defaults.</summary>
    public static readonly InferenceAwareSettings Default = new();

    /// <summary>Weight of prefix affinity (the fraction of the prompt's leading blocks a destination served recently). 0 … 1000, default 2.</summary>
    public double PrefixWeight { get; init; } = 2;

    /// <summary>Weight of queue depth (waiting + running + in flight since the last scrape, relative to the busiest destination). 0 … 1000, default 1.</summary>
    public double QueueWeight { get; init; } = 1;

    /// <summary>Weight of KV cache usage (0 … 1, scraped). 0 … 1000, default 0.5.</summary>
    public double KvWeight { get; init; } = 0.5;

    /// <summary>
    /// Bounded load: a destination whose load exceeds <c>LoadFactor × (least load + 1)</c> is passed over. 1 … 100, default 2.
    /// </summary>
    public double LoadFactor { get; init; } = 2;

    /// <summary>
    /// Leading blocks of <see cref="BlockChars"/> characters hashed per prompt. 1 … <see cref="MaxPrefixBlocks"/>, default
    /// 256 (16,384 characters, about 3,000 to 4,000 tokens): long enough to see past a long shared system prompt into the
    /// conversation after it (with 64 blocks, a 1,000-token system prompt filled the window and every conversation
    /// behind it looked alike; sglang#26263 is the same blind spot, routing chats by their first message only).
    /// </summary>
    public int PrefixBlocks { get; init; } = 256;

    /// <summary>Entries (block chains) the prefix table holds, least recently used evicted first. 16 … 10 000 000, default 65 536.</summary>
    public int PrefixTableSize { get; init; } = 65_536;

    /// <summary>How long a table entry counts after it was last used. Default 5 minutes.</summary>
    public TimeSpan PrefixTtl { get; init; } = TimeSpan.FromMinutes(5);

    /// <summary>The settings in <paramref name="metadata"/>; a value that does not parse is reported to <paramref name="errors"/> (when given) and its default kept.</summary>
    public static InferenceAwareSettings Parse(IReadOnlyDictionary<string, string>? metadata, string key, IList<Exception>? errors)
    {
        if (metadata is null)
        {
            return Default;
        }

        return new InferenceAwareSettings
        {
            PrefixWeight = Number(metadata, "PrefixWeight", 0, 1000, Default.PrefixWeight, key, errors),
            QueueWeight = Number(metadata, "QueueWeight", 0, 1000, Default.QueueWeight, key, errors),
            KvWeight = Number(metadata, "KvWeight", 0, 1000, Default.KvWeight, key, errors),
            LoadFactor = Number(metadata, "LoadFactor", 1, 100, Default.LoadFactor, key, errors),
            PrefixBlocks = (int)Number(metadata, "PrefixBlocks", 1, MaxPrefixBlocks, Default.PrefixBlocks, key, errors, whole: true),
            PrefixTableSize = (int)Number(metadata, "PrefixTableSize", 16, 10_000_000, Default.PrefixTableSize, key, errors, whole: true),
            PrefixTtl = Duration(metadata, Prefix + "PrefixTtl", Default.PrefixTtl, TimeSpan.FromDays(1), key, errors),
        };
    }

    private static double Number(IReadOnlyDictionary<string, string> metadata, string name, double min, double max, double fallback, string key,
        IList<Exception>? errors, bool whole = false)
    {
        if (!metadata.TryGetValue(Prefix + name, out var text))
        {
            return fallback;
        }

        if (double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) && value >= min && value <= max
            && (!whole || value == Math.Floor(value)))
        {
            return value;
        }

        errors?.Add(new ArgumentException(string.Create(CultureInfo.InvariantCulture,
            $"{key}:Metadata:{Prefix}{name} must be {(whole ? "a whole number" : "a number")} from {min} to {max} (was '{text}').")));
        return fallback;
    }

    /// <summary>A duration key (<c>hh:mm:ss</c> or seconds), from 1 ms to <paramref name="max"/>.</summary>
    internal static TimeSpan Duration(IReadOnlyDictionary<string, string>? metadata, string name, TimeSpan fallback, TimeSpan max, string key, IList<Exception>? errors)
    {
        if (metadata is null || !metadata.TryGetValue(name, out var text))
        {
            return fallback;
        }

        if (Forwarding.ClusterMetadata.TryParseDuration(text, out var value) && value >= TimeSpan.FromMilliseconds(1) && value <= max)
        {
            return value;
        }

        errors?.Add(new ArgumentException($"{key}:Metadata:{name} must be a duration from 00:00:00.001 to {max:c} (hh:mm:ss or seconds) (was '{text}')."));
        return fallback;
    }
}

/// <summary>
/// Where and how often a destination's vLLM metrics are scraped: <c>Metadata:MetricsPath</c> (default <c>/metrics</c>),
/// <c>Metadata:MetricsInterval</c> (default 250 ms) and <c>Metadata:MetricsTimeout</c> (default 1 s), read from the
/// destination's metadata, else the cluster's.
/// </summary>
internal readonly record struct ScrapeSettings(string Path, TimeSpan Interval, TimeSpan Timeout)
{
    public const string PathKey = "MetricsPath";
    public const string IntervalKey = "MetricsInterval";
    public const string TimeoutKey = "MetricsTimeout";

    public static readonly ScrapeSettings Default = new("/metrics", TimeSpan.FromMilliseconds(250), TimeSpan.FromSeconds(1));

    /// <summary>Metrics count as stale when the last good scrape is older than this many intervals (and at least the timeout).</summary>
    public const int StaleIntervals = 4;

    /// <summary>How old the last good scrape may be before the destination is scored by in-flight count alone.</summary>
    public TimeSpan StaleAfter => StaleIntervals * Interval > Timeout ? StaleIntervals * Interval : Timeout + Interval;

    /// <summary>The settings of a destination: its metadata first, then its cluster's.</summary>
    public static ScrapeSettings Of(IReadOnlyDictionary<string, string>? destination, IReadOnlyDictionary<string, string>? cluster, string key, IList<Exception>? errors)
    {
        var path = Value(destination, PathKey) ?? Value(cluster, PathKey) ?? Default.Path;
        if (!path.StartsWith('/') || path.StartsWith("//", StringComparison.Ordinal) || !Uri.TryCreate("http://h" + path, UriKind.Absolute, out _))
        {
            errors?.Add(new ArgumentException($"{key}:Metadata:{PathKey} must be an absolute path starting with '/' (was '{path}')."));
            path = Default.Path;
        }

        var source = destination is not null && destination.ContainsKey(IntervalKey) ? destination : cluster;
        var interval = InferenceAwareSettings.Duration(source, IntervalKey, Default.Interval, TimeSpan.FromHours(1), key, errors);
        source = destination is not null && destination.ContainsKey(TimeoutKey) ? destination : cluster;
        var timeout = InferenceAwareSettings.Duration(source, TimeoutKey, Default.Timeout, TimeSpan.FromMinutes(1), key, errors);
        return new ScrapeSettings(path, interval, timeout);
    }

    private static string? Value(IReadOnlyDictionary<string, string>? metadata, string name) =>
        metadata is not null && metadata.TryGetValue(name, out var v) ? v : null;
}

/// <summary>
/// A cluster's <c>InferenceAware.*</c> metadata and every destination's <c>MetricsPath</c>, <c>MetricsInterval</c> and
/// <c>MetricsTimeout</c> are in range; each message names the full key and the value found.
/// </summary>
internal sealed class InferenceAwareRule : IClusterValidator
{
    public ValueTask ValidateAsync(ClusterConfig cluster, IList<Exception> errors)
    {
        var key = $"ReverseProxy:Clusters:{cluster.ClusterId}";
        foreach (var name in cluster.Metadata?.Keys ?? [])
        {
            // A typo'd setting (InferenceAware.PrefixWieght) would silently keep its default (stranger review, issue 14).
            if (name.StartsWith(InferenceAwareSettings.Prefix, StringComparison.OrdinalIgnoreCase)
                && !InferenceAwareSettings.Names.Contains(name[InferenceAwareSettings.Prefix.Length..], StringComparer.OrdinalIgnoreCase))
            {
                errors.Add(new ArgumentException(
                    $"{key}:Metadata:{name} is not a known setting{Configuration.KnownKeys.Suggest(name, InferenceAwareSettings.Names.Select(static n => InferenceAwareSettings.Prefix + n))} (known: {string.Join(", ", InferenceAwareSettings.Names.Select(static n => InferenceAwareSettings.Prefix + n))})."));
            }
        }

        InferenceAwareSettings.Parse(cluster.Metadata, key, errors);
        ScrapeSettings.Of(null, cluster.Metadata, key, errors);
        foreach (var (id, destination) in cluster.Destinations ?? new Dictionary<string, DestinationConfig>())
        {
            if (destination.Metadata is { Count: > 0 } metadata)
            {
                ScrapeSettings.Of(metadata, null, $"{key}:Destinations:{id}", errors);
            }
        }

        return ValueTask.CompletedTask;
    }
}
