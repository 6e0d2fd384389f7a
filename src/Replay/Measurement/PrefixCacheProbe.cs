using Replay.Cli;

namespace Replay.Measurement;

/// <summary>
/// Reads the prefix-cache counters (<see cref="PrefixCacheCounters"/>) of a run's model servers before and after a
/// measured period, for every command that measures one: <c>run</c>/<c>load</c> (one process or <c>--workers N</c>)
/// and each step of <c>sweep</c>. The URLs are <c>--metrics-url</c>s, else the HTTP target's <c>/metrics</c>; a URL
/// named with <c>--metrics-url</c> that cannot be read is said on the error output, the target's own <c>/metrics</c>
/// (a gateway's, which has no vLLM counters) is tried silently.
/// </summary>
internal sealed class PrefixCacheProbe : IDisposable
{
    private readonly HttpClient _client;
    private readonly bool _named;

    private PrefixCacheProbe(HttpClient client, IReadOnlyList<Uri> urls, bool named)
    {
        _client = client;
        Urls = urls;
        _named = named;
    }

    /// <summary>The metrics read (empty: nothing to read, every read gives null).</summary>
    public IReadOnlyList<Uri> Urls { get; }

    /// <summary>The probe of a validated run: its <c>--metrics-url</c>s or its HTTP target's <c>/metrics</c>, read with <c>--insecure</c>'s certificate policy.</summary>
    public static PrefixCacheProbe Create(ReplaySettings settings, ValidatedRun run)
    {
        var handler = new SocketsHttpHandler();
        if (settings.Insecure)
        {
#pragma warning disable CA5359 // --insecure is an explicit opt-in for self-signed test targets.
            handler.SslOptions.RemoteCertificateValidationCallback = static (_, _, _, _) => true;
#pragma warning restore CA5359
        }

        List<Uri> urls = settings.MetricsUrls.Count > 0 ? [.. settings.MetricsUrls.Select(static m => new Uri(m))]
            : run.Clients.HttpTarget is { } http ? [new Uri(http, "/metrics")] : [];
        return new PrefixCacheProbe(new HttpClient(handler) { Timeout = TimeSpan.FromSeconds(5) }, urls, settings.MetricsUrls.Count > 0);
    }

    /// <summary>
    /// The counters now, before a measured period; null when there are none to read or none answered. Each named
    /// <c>--metrics-url</c> that failed is written to <paramref name="error"/>; the others still count.
    /// </summary>
    public async Task<PrefixCacheReading?> BeforeAsync(TextWriter error, CancellationToken cancellationToken)
    {
        if (Urls.Count == 0)
        {
            return null;
        }

        var reading = await PrefixCacheCounters.ReadAsync(_client, Urls, cancellationToken).ConfigureAwait(false);
        if (reading.Problems.Count > 0 && _named)
        {
            await error.WriteLineAsync(reading.Samples.Count == 0
                ? $"replay: --metrics-url: {reading.Describe()}; no prefix cache hit rate."
                : $"replay: --metrics-url: {reading.Describe()}; the prefix cache hit rate is partial (from {reading.Samples.Count} of {Urls.Count} URLs).").ConfigureAwait(false);
        }

        return reading.Samples.Count == 0 ? null : reading;
    }

    /// <summary>
    /// The period's figures from <paramref name="before"/> and a read now, summed over the URLs that answered both
    /// (the others named in <see cref="PrefixCacheReport.Failed"/>, the figure marked partial); null without a first
    /// read, or when no URL answered both (said on <paramref name="error"/>).
    /// </summary>
    public async Task<PrefixCacheReport?> AfterAsync(PrefixCacheReading? before, TextWriter error, CancellationToken cancellationToken)
    {
        if (before is null)
        {
            return null;
        }

        var after = await PrefixCacheCounters.ReadAsync(_client, Urls, cancellationToken).ConfigureAwait(false);
        var report = PrefixCacheReport.Between(before, after, Urls);
        if (report is null)
        {
            await error.WriteLineAsync($"replay: prefix cache counters unreadable after the run ({after.Describe()}).").ConfigureAwait(false);
        }
        else if (after.Problems.Count > 0)
        {
            await error.WriteLineAsync($"replay: prefix cache counters unreadable after the run at {after.Describe()}; the hit rate is partial.").ConfigureAwait(false);
        }

        return report;
    }

    public void Dispose() => _client.Dispose();
}
