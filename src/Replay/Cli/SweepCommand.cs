using System.Globalization;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Replay.Capacity;
using Replay.Clients;
using Replay.Measurement;
using Replay.Reporting;
using Replay.Scheduling;

namespace Replay.Cli;

/// <summary>
/// <c>replay sweep</c>: finds a target's capacity. (1) Prepare the workload as <c>load</c>/<c>run</c> would;
/// (2) hold each rate of the ladder (<c>--rate</c>, × <c>--step-factor</c> or + <c>--step-add</c>, up to
/// <c>--to</c>) for <c>--step-every</c>, open model, on the same connections, each step measured on its own;
/// (3) stop past the knee (<see cref="KneeFinder"/>); (4) print the most goodput reached and the knee, write the
/// shaping profile (<see cref="ShapingProfile"/>) and sweep.json. When the model servers expose vLLM's prefix cache
/// counters (<c>--metrics-url</c>, or the target's <c>/metrics</c>), each step gives its hit rate (<see cref="PrefixCacheProbe"/>).
/// </summary>
internal static class SweepCommand
{
    /// <summary>The sweep's own settings, beside the workload's.</summary>
    internal sealed record Options
    {
        /// <summary>The first step's rate, requests/s; null: calibrate (<see cref="CalibrateAsync"/>).</summary>
        public double? StartRate { get; init; }

        /// <summary>The last step's rate at most, requests/s; null: 100 × the first.</summary>
        public double? MaxRate { get; init; }

        /// <summary>How long the calibration sends one request at a time.</summary>
        public TimeSpan Calibration { get; init; } = TimeSpan.FromSeconds(3);
        public required TimeSpan StepLength { get; init; }
        public double StepFactor { get; init; } = 1.25;
        public double StepAdd { get; init; }
        public KneeFinder.Options Knee { get; init; } = new();
        public string? ProfileOut { get; init; }
        public string Cluster { get; init; } = "model-http";
        public string Route { get; init; } = "openai";
    }

    /// <summary>Runs the sweep; returns the exit code (0 with a knee, 1 when no step had any goodput).</summary>
    public static async Task<int> ExecuteAsync(ReplaySettings settings, Options options, TextWriter output, TextWriter error, ILogger logger, TimeProvider time, CancellationToken cancellationToken)
    {
        // The workload's own plan is not what a sweep sends: each step prints its own (its planned requests).
        var (prepared, code) = await RunCommand.PrepareAsync(settings, error, logger, checkTargets: true, cancellationToken, logPlan: false).ConfigureAwait(false);
        if (prepared is null)
        {
            return code;
        }

        var (_, run, workload, plan, needed) = prepared;
        using var pipeline = RunPipeline.Create(run.Clients, time);
        var c = CultureInfo.InvariantCulture;
        var target = string.Join(", ", needed.Select(static t => t.Target.ToString()).Distinct());
        if (options.StartRate is null)
        {
            double? calibrated;
            try
            {
                calibrated = await CalibrateAsync(plan, pipeline, options.Calibration, output, error, time, cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return ExitCodes.Cancelled;
            }

            if (calibrated is not { } first)
            {
                return ExitCodes.AssertionFailed;
            }

            if (options.MaxRate is { } cap && cap < first)
            {
                await output.WriteLineAsync(string.Create(c, $"calibration: the first rate {first:0.##}/s is above --to {cap:0.##}/s; starting at --to")).ConfigureAwait(false);
                first = cap;
            }

            options = options with { StartRate = first };
        }

        options = options with { MaxRate = options.MaxRate ?? (options.StartRate!.Value * 100) };
        var startRate = options.StartRate!.Value;
        var maxRate = options.MaxRate!.Value;
        await output.WriteLineAsync(string.Create(c, $"sweep {workload.Description} -> {target}: from {startRate:0.##}/s, {(options.StepAdd > 0 ? $"+{options.StepAdd:0.##}/s" : $"x{options.StepFactor:0.##}")} every {options.StepLength.TotalSeconds:0.##} s, up to {maxRate:0.##}/s; SLOs: {(run.Slos.Count == 0 ? "none (goodput = successes)" : string.Join(", ", run.Slos.Select(static s => s.Text)))}")).ConfigureAwait(false);

        try
        {
            await pipeline.WarmUpAsync(plan, run.Warmup, startRate, cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            return ExitCodes.Cancelled;
        }

        // Each step's prefix cache hit rate, when the model servers expose vLLM's counters (--metrics-url, or the target's /metrics).
        using var prefixCache = PrefixCacheProbe.Create(settings, run);
        await output.WriteLineAsync("  step  offered/s  planned  sent/s  goodput/s  done/s   good%   p50 ms   p95 ms   p99 ms  in flight  cache hit  SLOs").ConfigureAwait(false);
        var steps = new List<SweepStep>();
        var cancelled = false;
        var seconds = options.StepLength.TotalSeconds;
        for (var rate = startRate; rate <= maxRate * (1 + 1e-9); rate = options.StepAdd > 0 ? rate + options.StepAdd : rate * options.StepFactor)
        {
            var stepPlan = plan with
            {
                Profile = RateProfile.Constant(rate, seconds),
                Limit = long.MaxValue,
                PlannedRequests = (long)Math.Ceiling((rate * seconds) - 1e-9),
                NominalSeconds = seconds,
            };
            var metrics = new RunMetrics(time, run.Slos);
            var cacheBefore = await prefixCache.BeforeAsync(steps.Count == 0 ? error : TextWriter.Null, cancellationToken).ConfigureAwait(false);
            using (var runner = pipeline.CreateRunner(stepPlan, metrics))
            {
                try
                {
                    await runner.RunAsync(cancellationToken).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
                {
                    cancelled = true;
                    break;
                }

                if (runner.Unexpected is { } bug)
                {
                    ReplayApp.Log.Unexpected(logger, bug);
                    return ExitCodes.InternalError;
                }
            }

            var step = SweepStep.From(metrics, rate, seconds) with
            {
                PrefixCache = await prefixCache.AfterAsync(cacheBefore, error, CancellationToken.None).ConfigureAwait(false),
            };
            steps.Add(step);
            var slos = step.SlosMet.Count == 0 ? "-" : string.Join(" ", step.SlosMet.Select(static m => m ? "ok" : "MISSED"));
            var hit = step.PrefixCache?.HitRate is { } rateHit ? string.Create(c, $"{rateHit * 100:0.0}%{(step.PrefixCache.Partial ? " (partial)" : string.Empty)}") : "-";
            await output.WriteLineAsync(string.Create(c, $"  {steps.Count,4}  {rate,9:0.##}  {stepPlan.PlannedRequests,7}  {step.Sent / seconds,6:0.#}  {step.GoodputRps,9:0.##}  {step.ThroughputRps,6:0.#}  {step.GoodFraction * 100,6:0.#}  {step.Latency.P50,7:0.#}  {step.Latency.P95,7:0.#}  {step.Latency.P99,7:0.#}  {step.MeanInFlight,9:0.#}  {hit,9}  {slos}")).ConfigureAwait(false);
            if (KneeFinder.PastKnee(steps, options.Knee))
            {
                break;
            }
        }

        var best = KneeFinder.Best(steps);
        var knee = KneeFinder.Knee(steps, options.Knee);
        var reachedKnee = steps.Count >= 2 && KneeFinder.PastKnee(steps, options.Knee);
        string? profilePath = null;
        ShapingProfile.Limits? limits = null;
        if (knee >= 0)
        {
            var k = steps[knee];
            await output.WriteLineAsync(string.Create(c, $"most goodput {steps[best].GoodputRps:0.##}/s (offered {steps[best].Rate:0.##}/s); knee at {k.Rate:0.##}/s offered: goodput {k.GoodputRps:0.##}/s, p95 {k.Latency.P95:0.#} ms, {k.MeanInFlight:0.#} in flight{(reachedKnee ? string.Empty : " (the sweep ended before goodput stopped growing: raise --to)")}")).ConfigureAwait(false);
            limits = ShapingProfile.Compute(k, run.Slos);
            profilePath = Path.GetFullPath(options.ProfileOut ?? Path.Combine(settings.ReportDirectory ?? ".", "shaping-profile.json"));
            Directory.CreateDirectory(Path.GetDirectoryName(profilePath)!);
            string[] header =
            [
                string.Create(c, $"Shaping profile written by replay sweep at {time.GetUtcNow():yyyy-MM-dd HH:mm} UTC for {target} ({workload.Description})."),
                reachedKnee
                    ? string.Create(c, $"Knee: {k.Rate:0.##} requests/s offered, goodput {k.GoodputRps:0.##}/s, service time mean {k.ServiceTime.Mean:0.#} ms / p95 {k.ServiceTime.P95:0.#} ms, {k.MeanInFlight:0.#} in flight.")
                    : string.Create(c, $"PROVISIONAL: the sweep ended at --to before goodput stopped growing, so the target can take more than this; these limits hold it at the best step found: {k.Rate:0.##} requests/s offered, goodput {k.GoodputRps:0.##}/s, service time mean {k.ServiceTime.Mean:0.#} ms / p95 {k.ServiceTime.P95:0.#} ms, {k.MeanInFlight:0.#} in flight. Raise --to for the knee."),
                string.Create(c, $"Most goodput {steps[best].GoodputRps:0.##}/s at {steps[best].Rate:0.##}/s offered. SLOs: {(run.Slos.Count == 0 ? "none" : string.Join(", ", run.Slos.Select(static s => s.Text)))}."),
                $"Layer it over appsettings.json: dotnet run --project src/Gateway -- --config {Path.GetFileName(profilePath)}",
            ];
            await File.WriteAllTextAsync(profilePath, ShapingProfile.Write(limits, options.Cluster, options.Route, header), CancellationToken.None).ConfigureAwait(false);
            await output.WriteLineAsync(string.Create(c, $"shaping profile{(reachedKnee ? string.Empty : " (provisional: no knee below --to)")}: {profilePath} (cluster {options.Cluster}: MaxInFlight {limits.MaxInFlight}, QueueLimit {limits.QueueLimit}, QueueTimeout {limits.QueueTimeout.TotalMilliseconds:0} ms; route {options.Route}: {limits.RatePerSecond}/s)")).ConfigureAwait(false);
        }
        else
        {
            await error.WriteLineAsync("replay: no step had any goodput: every request failed or missed an SLO; no profile written.").ConfigureAwait(false);
        }

        if (settings.ReportDirectory is { } directory)
        {
            Directory.CreateDirectory(directory);
            var json = Path.GetFullPath(Path.Combine(directory, "sweep.json"));
            await File.WriteAllBytesAsync(json, SweepJson(steps, best, knee, reachedKnee, limits, profilePath, target, run.Slos, cancelled), CancellationToken.None).ConfigureAwait(false);
        }

        await output.FlushAsync(CancellationToken.None).ConfigureAwait(false);
        return cancelled ? ExitCodes.Cancelled : knee >= 0 ? ExitCodes.Ok : ExitCodes.AssertionFailed;
    }

    /// <summary>
    /// The first rate when <c>--rate</c> is not given: the workload's requests one at a time (closed model, one user, no
    /// think time) for <paramref name="length"/>, unmeasured by the sweep. Their mean service time S gives 1 / S, the
    /// rate one request at a time sustains: below any target's capacity (a target that serves one request at a time has
    /// exactly that capacity), so the ladder starts under the knee and climbs to it. Null (and the reason written) when
    /// no request succeeded.
    /// </summary>
    internal static async Task<double?> CalibrateAsync(RunPlan plan, RunPipeline pipeline, TimeSpan length, TextWriter output, TextWriter error, TimeProvider time, CancellationToken cancellationToken)
    {
        var c = CultureInfo.InvariantCulture;
        await output.WriteLineAsync(string.Create(c, $"calibrating: one request at a time for {length.TotalSeconds:0.##} s (no --rate given)")).ConfigureAwait(false);
        var calibration = plan with { Mode = RunMode.Closed, Users = 1, ThinkMs = 0, Duration = length, Profile = null, Limit = long.MaxValue, PlannedRequests = null };
        var metrics = new RunMetrics(time, []);
        using (var runner = pipeline.CreateRunner(calibration, metrics))
        {
            await runner.RunAsync(cancellationToken).ConfigureAwait(false);
        }

        var succeeded = metrics.SuccessLatency.TotalCount;
        if (succeeded == 0)
        {
            await error.WriteLineAsync(string.Create(c, $"replay: calibration: none of {metrics.Completed} request(s) sent one at a time succeeded ({metrics.Failures} failed); no rate to start from. Check the target, or give --rate.")).ConfigureAwait(false);
            return null;
        }

        var serviceMs = Histograms.MeanMs(metrics.SuccessLatency); // closed model: latency is from the actual send, the service time
        var rate = Math.Max(0.1, RoundSignificant(1000.0 / Math.Max(serviceMs, 0.001), 2));
        await output.WriteLineAsync(string.Create(c, $"calibration: {succeeded} request(s), service time mean {serviceMs:0.##} ms: first rate {rate:0.##}/s (1 / service time; --rate overrides)")).ConfigureAwait(false);
        return rate;
    }

    private static double RoundSignificant(double value, int digits)
    {
        var scale = Math.Pow(10, Math.Floor(Math.Log10(value)) - digits + 1);
        return Math.Round(value / scale) * scale;
    }

    private static byte[] SweepJson(List<SweepStep> steps, int best, int knee, bool reachedKnee, ShapingProfile.Limits? limits, string? profilePath, string target, IReadOnlyList<Slo> slos, bool cancelled)
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteString("tool", "replay sweep");
            w.WriteNumber("report_version", 1);
            w.WriteString("target", target);
            w.WriteStartArray("slos");
            foreach (var s in slos)
            {
                w.WriteStringValue(s.Text);
            }

            w.WriteEndArray();
            w.WriteBoolean("cancelled", cancelled);
            w.WriteBoolean("past_knee", reachedKnee);
            w.WriteNumber("best_step", best + 1);
            w.WriteNumber("knee_step", knee + 1);
            w.WriteNumber("max_goodput_rps", best >= 0 ? Round(steps[best].GoodputRps) : 0);
            w.WriteNumber("knee_rate", knee >= 0 ? Round(steps[knee].Rate) : 0);
            if (limits is not null)
            {
                w.WriteStartObject("profile");
                w.WriteString("path", profilePath);
                w.WriteNumber("max_in_flight", limits.MaxInFlight);
                w.WriteNumber("queue_limit", limits.QueueLimit);
                w.WriteNumber("queue_timeout_ms", limits.QueueTimeout.TotalMilliseconds);
                w.WriteNumber("rate_per_s", limits.RatePerSecond);
                w.WriteEndObject();
            }

            w.WriteStartArray("steps");
            foreach (var s in steps)
            {
                w.WriteStartObject();
                w.WriteNumber("rate", Round(s.Rate));
                w.WriteNumber("seconds", Round(s.Seconds));
                w.WriteNumber("sent", s.Sent);
                w.WriteNumber("completed", s.Completed);
                w.WriteNumber("failures", s.Failures);
                w.WriteNumber("goodput_rps", Round(s.GoodputRps));
                w.WriteNumber("throughput_rps", Round(s.ThroughputRps));
                w.WriteNumber("good_fraction", Round(s.GoodFraction));
                w.WriteNumber("mean_in_flight", Round(s.MeanInFlight));
                w.WriteNumber("latency_p50_ms", Round(s.Latency.P50));
                w.WriteNumber("latency_p95_ms", Round(s.Latency.P95));
                w.WriteNumber("latency_p99_ms", Round(s.Latency.P99));
                w.WriteNumber("service_mean_ms", Round(s.ServiceTime.Mean));
                w.WriteNumber("service_p95_ms", Round(s.ServiceTime.P95));
                if (s.PrefixCache is { } pc)
                {
                    // As report.json's: the step's prompt tokens looked up and found cached, and their ratio (null when none was looked up).
                    if (pc.HitRate is { } stepHit)
                    {
                        w.WriteNumber("prefix_cache_hit_rate", Round(stepHit));
                    }
                    else
                    {
                        w.WriteNull("prefix_cache_hit_rate");
                    }

                    w.WriteStartObject("prefix_cache");
                    w.WriteNumber("queries", pc.Queries);
                    w.WriteNumber("hits", pc.Hits);
                    w.WriteEndObject();
                }

                w.WriteStartArray("slos_met");
                foreach (var m in s.SlosMet)
                {
                    w.WriteBooleanValue(m);
                }

                w.WriteEndArray();
                w.WriteEndObject();
            }

            w.WriteEndArray();
            w.WriteEndObject();
        }

        return stream.ToArray();
    }

    private static double Round(double value) => double.IsFinite(value) ? Math.Round(value, 3) : 0;
}
