using System.Globalization;
using System.Text;
using System.Text.Json;
using Replay.Measurement;

namespace Replay.Capacity;

/// <summary>
/// The gateway shaping profile that holds a target at the knee a sweep found, in the gateway's configuration format
/// (docs/configuration.md, "Traffic shaping"): layered over appsettings.json with <c>--config FILE</c>, like
/// config/protect-sim.json.
/// </summary>
/// <remarks>
/// <para>From the knee step's measurements:</para>
/// <list type="number">
/// <item><c>Admission:{cluster}:MaxInFlight</c> = ⌈throughput × mean service time⌉, the requests the target held at
/// once at the knee (Little's law, L = λW): admitting more only queues inside the target.</item>
/// <item><c>QueueTimeout</c> = half the SLO slack, where the slack is the smallest of (e2e bound − p95 service time)
/// and (TTFT bound − p95 TTFT) over the SLOs given (one median service time without SLOs), at least 10 ms: a request
/// that waited longer in the gateway could no longer meet its SLO, so it is better refused at once. Half, because
/// under sustained overload the queue stays full and nearly every admitted request waits the whole timeout, so the
/// admitted p95 is about QueueTimeout + p95 service time, and service time grows when the machine is busier than
/// during the sweep (with 0.8 the test's admitted p95 reached 1,027 ms against a 1 s SLO on a loaded machine). A
/// shorter queue costs no goodput under overload: it never empties.</item>
/// <item><c>QueueLimit</c> = ⌈throughput × QueueTimeout⌉, the waiters that can still start within the timeout
/// (Little's law again).</item>
/// <item>A <c>TokenBucket</c> policy on the route, partition <c>Global</c>, at 1.1 × the knee's goodput per second
/// with a one-second burst: gross overload is refused cheaply before it reaches the admission queue, while the
/// in-flight cap does the fine shaping near capacity.</item>
/// </list>
/// </remarks>
internal static class ShapingProfile
{
    /// <summary>The policy name the profile defines.</summary>
    public const string PolicyName = "sweep-knee";

    /// <summary>The profile's numbers.</summary>
    internal sealed record Limits(int MaxInFlight, int QueueLimit, TimeSpan QueueTimeout, int RatePerSecond, int Burst);

    /// <summary>Computes the limits from the knee step.</summary>
    public static Limits Compute(SweepStep knee, IReadOnlyList<Slo> slos)
    {
        var throughput = Math.Max(knee.ThroughputRps, knee.GoodputRps);
        var maxInFlight = Math.Max(1, (int)Math.Ceiling(knee.MeanInFlight - 1e-9));
        double? slack = null;
        foreach (var slo in slos)
        {
            var bound = slo.ThresholdMicros / 1000.0;
            double? used = slo.Metric switch
            {
                SloMetric.E2e => knee.ServiceTime.P95,
                SloMetric.Ttft => knee.Ttft?.P95 ?? knee.ServiceTime.P95,
                _ => null,
            };
            if (used is { } u)
            {
                slack = Math.Min(slack ?? double.MaxValue, bound - u);
            }
        }

        var timeoutMs = Math.Clamp(0.5 * (slack ?? knee.ServiceTime.P50), 10, 60_000);
        var queueTimeout = TimeSpan.FromMilliseconds(Math.Round(timeoutMs));
        var queueLimit = Math.Max(1, (int)Math.Ceiling(throughput * queueTimeout.TotalSeconds));
        var rate = Math.Max(1, (int)Math.Ceiling(knee.GoodputRps * 1.1));
        return new Limits(maxInFlight, queueLimit, queueTimeout, rate, rate);
    }

    /// <summary>The profile as JSON (with a comment header saying where it came from).</summary>
    /// <param name="limits">The numbers.</param>
    /// <param name="cluster">The YARP cluster id the target serves (<c>model-http</c> in appsettings.json).</param>
    /// <param name="route">The route id whose requests reach it (<c>openai</c>).</param>
    /// <param name="header">Comment lines (without <c>//</c>).</param>
    public static string Write(Limits limits, string cluster, string route, IEnumerable<string> header)
    {
        var text = new StringBuilder();
        foreach (var line in header)
        {
            text.Append("// ").AppendLine(line);
        }

        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteStartObject("Gateway");
            w.WriteStartObject("Shaping");
            w.WriteStartObject("Admission");
            w.WriteStartObject(cluster);
            w.WriteNumber("MaxInFlight", limits.MaxInFlight);
            w.WriteNumber("QueueLimit", limits.QueueLimit);
            w.WriteString("QueueTimeout", limits.QueueTimeout.ToString(@"hh\:mm\:ss\.fff", CultureInfo.InvariantCulture));
            w.WriteEndObject();
            w.WriteEndObject();
            w.WriteStartObject("Policies");
            w.WriteStartObject(PolicyName);
            w.WriteString("Kind", "TokenBucket");
            w.WriteNumber("TokenLimit", limits.Burst);
            w.WriteNumber("TokensPerPeriod", limits.RatePerSecond);
            w.WriteString("ReplenishmentPeriod", "00:00:01");
            w.WriteString("Partition", "Global");
            w.WriteEndObject();
            w.WriteEndObject();
            w.WriteEndObject();
            w.WriteEndObject();
            w.WriteStartObject("ReverseProxy");
            w.WriteStartObject("Routes");
            w.WriteStartObject(route);
            w.WriteStartObject("Metadata");
            w.WriteString("Policies", PolicyName);
            w.WriteEndObject();
            w.WriteEndObject();
            w.WriteEndObject();
            w.WriteEndObject();
            w.WriteEndObject();
        }

        text.AppendLine(Encoding.UTF8.GetString(stream.ToArray()));
        return text.ToString();
    }
}
