using System.Globalization;
using Contracts.Recording;
using Microsoft.Extensions.Logging;
using Replay.Cli;
using Replay.Measurement;
using Replay.Reporting;
using Replay.Scheduling;
using StackExchange.Redis;

namespace Replay.Workers;

/// <summary>
/// <c>replay run|load --workers N --redis URL</c>: splits a run among <c>replay worker</c> processes and merges
/// what they measured into one report.
/// </summary>
/// <remarks>
/// (1) Wait until N workers beat in Redis; (2) cut the schedule into one-second slices (<see cref="RunSpec.Slice"/>)
/// and fix the epoch a moment (plus the warm-up) ahead; (3) write the spec and one work item per slice
/// (<see cref="WorkQueue"/>); (4) read the slice results as they come and add each into one
/// <see cref="RunMetrics"/> exactly (<see cref="RunMetrics.Merge"/>); (5) when every slice has a result, or the
/// deadline passed, build the report as a single process would, with a <c>workers</c> section: slices, slices taken
/// over from dead workers, and sessions lost with a dead worker (sent by it, never reported:
/// BITCOUNT of the sent bitmap − sessions reported), and the model servers' prefix cache hit rate between the epoch
/// and the last result (<see cref="PrefixCacheProbe"/>, as a single process reports it).
/// </remarks>
internal static class Coordinator
{
    /// <summary>Length of a slice of the schedule.</summary>
    public const double SliceSeconds = 1;

    /// <summary>Runs the prepared run through the workers; returns the exit code.</summary>
    public static async Task<int> RunAsync(RunCommand.Prepared prepared, TextWriter output, TextWriter error, ILogger logger, TimeProvider time, CancellationToken cancellationToken)
    {
        var (settings, run, workload, plan, needed) = prepared;
        var c = CultureInfo.InvariantCulture;
        ConnectionMultiplexer redis;
        try
        {
            redis = await ConnectionMultiplexer.ConnectAsync(RedisConnection.Parse(settings.Redis!)).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is RedisException or ArgumentException)
        {
            await error.WriteLineAsync($"replay: --redis '{settings.Redis}': cannot connect ({ex.Message}).").ConfigureAwait(false);
            return ExitCodes.UsageOrInput;
        }

        await using var _ = redis.ConfigureAwait(false);
        var db = redis.GetDatabase();
        await WorkQueue.EnsureGroupAsync(db).ConfigureAwait(false);

        // (1) Workers.
        var wanted = settings.Workers;
        var joinBy = time.GetTimestamp() + (long)(30 * time.TimestampFrequency);
        IReadOnlyList<string> live;
        while ((live = await WorkQueue.LiveWorkersAsync(db, time, TimeSpan.FromSeconds(2)).ConfigureAwait(false)).Count < wanted)
        {
            if (time.GetTimestamp() > joinBy)
            {
                await error.WriteLineAsync(string.Create(c, $"replay: only {live.Count} of {wanted} workers joined within 30 s (start them with: replay worker --redis {settings.Redis}).")).ConfigureAwait(false);
                return ExitCodes.TargetUnreachable;
            }

            await Task.Delay(TimeSpan.FromMilliseconds(200), time, cancellationToken).ConfigureAwait(false);
        }

        // (2) Slices and epoch.
        var slices = RunSpec.Slice(plan, SliceSeconds, wanted);
        var id = Guid.NewGuid().ToString("N")[..12];
        var epochMs = time.GetUtcNow().ToUnixTimeMilliseconds() + 1500 + (long)run.Warmup.TotalMilliseconds;
        var epoch = time.GetTimestamp() + ((epochMs - time.GetUtcNow().ToUnixTimeMilliseconds()) * time.TimestampFrequency / 1000);
        var shared = settings with
        {
            Source = Absolute(settings.Source),
            Template = settings.Template is null ? null : Path.GetFullPath(settings.Template),
            Workers = 0,
            Redis = null,
            ReportDirectory = null,
            LogRequests = null,
            Asserts = [],
            Progress = "none",
            Warmup = null,
            Origins = null,
        };
        var spec = new RunSpec(shared, epochMs, slices, run.Warmup.TotalSeconds, wanted);

        // (3) Spec, then the work.
        await db.HashSetAsync(WorkQueue.Run(id), "spec", spec.ToJson()).ConfigureAwait(false);
        await db.KeyExpireAsync(WorkQueue.Run(id), WorkQueue.RunLifetime).ConfigureAwait(false);
        for (var k = 0; k < slices.Count; k++)
        {
            await db.StreamAddAsync(WorkQueue.Work, [new NameValueEntry("run", id), new NameValueEntry("slice", k)]).ConfigureAwait(false);
        }

        await output.WriteLineAsync(string.Create(c, $"run {id}: {slices.Count} slice(s) of {SliceSeconds:0.#} s among {wanted} worker(s) ({string.Join(", ", live)}), starting in {(epochMs - time.GetUtcNow().ToUnixTimeMilliseconds()) / 1000.0:0.0} s")).ConfigureAwait(false);

        // The model servers' prefix cache counters at the epoch (after the workers' warm-up), when they expose vLLM metrics.
        using var prefixCache = PrefixCacheProbe.Create(settings, run);
        // Read a moment before the epoch: the first measured request is sent at the epoch itself, and a model server
        // counts a request's prompt when it starts it.
        var cacheBefore = ReadAtAsync(prefixCache, epoch - (time.TimestampFrequency / 100), time, error, cancellationToken);

        // (4) Results.
        var metrics = new RunMetrics(time, run.Slos, keepSeconds: true);
        metrics.Start(epoch);
        var startedAt = DateTimeOffset.FromUnixTimeMilliseconds(epochMs);
        var done = new bool[slices.Count];
        var state = new CollectState();
        var scheduleSeconds = slices.Count * SliceSeconds;
        if (plan.Mode == RunMode.Faithful && plan.Sessions.Count > 0)
        {
            scheduleSeconds = plan.Sessions[^1].StartOffsetMs / 1000;
        }

        var deadline = epoch + (long)((scheduleSeconds + run.Clients.Timeout.TotalSeconds + 30) * time.TimestampFrequency);
        var cancelled = false;
        var collect = CollectAsync(db, id, metrics, done, state, deadline, time, cancellationToken);
        var mode = settings.Progress == "auto" ? (ReferenceEquals(output, Console.Out) && !Console.IsOutputRedirected ? "live" : "plain") : settings.Progress;
        await ConsoleProgress.ShowAsync(mode, output, () => metrics.Snapshot(time.GetTimestamp()), plan.PlannedRequests, null, collect, time).ConfigureAwait(false);
        try
        {
            await collect.ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            cancelled = true;
        }

        // (5) Report.
        var sentSessions = await db.StringBitCountAsync(WorkQueue.Sent(id)).ConfigureAwait(false);
        var missing = done.Count(static d => !d);
        var end = Math.Max(metrics.LastCompletedTimestamp, metrics.StartTimestamp);
        var target = string.Join(", ", needed.Select(static t => t.Target.ToString()).Distinct());
        var report = ReportBuilder.Build(metrics, new ReportBuilder.Context(settings.Command, plan, workload, target, startedAt, settings.Speed, settings.Amplify, settings.Compare, cancelled), end);
        MergeDiagnostics(report, state.Diagnostics.Values);
        report.PrefixCache = await prefixCache.AfterAsync(await cacheBefore.ConfigureAwait(false), error, CancellationToken.None).ConfigureAwait(false);
        report.Workers = new WorkersReport(wanted, [.. state.Names.Order(StringComparer.Ordinal)], slices.Count, state.TakenOver, Math.Max(0, sentSessions - state.SessionsReported), missing, id);
        report.Assertions = [.. run.Assertions.Select(a => a.Evaluate(report))];
        SummaryWriter.Write(output, report);
        if (settings.ReportDirectory is { } directory)
        {
            await RunCommand.WriteReportAsync(report, directory, logger).ConfigureAwait(false);
        }

        await output.FlushAsync(CancellationToken.None).ConfigureAwait(false);
        if (cancelled)
        {
            return ExitCodes.Cancelled;
        }

        if (missing > 0)
        {
            await error.WriteLineAsync(string.Create(c, $"replay: {missing} of {slices.Count} slice(s) got no result before the deadline: no live worker finished them (the report covers the rest).")).ConfigureAwait(false);
            return ExitCodes.WorkersLost;
        }

        return report.Assertions.All(static a => a.Passed) ? ExitCodes.Ok : ExitCodes.AssertionFailed;
    }

    /// <summary>The prefix cache counters read at <paramref name="at"/> (a timestamp of <paramref name="time"/>); null when unreadable or cancelled.</summary>
    private static async Task<PrefixCacheReading?> ReadAtAsync(PrefixCacheProbe probe, long at, TimeProvider time, TextWriter error, CancellationToken cancellationToken)
    {
        try
        {
            var now = time.GetTimestamp();
            if (at > now)
            {
                await Task.Delay(time.GetElapsedTime(now, at), time, cancellationToken).ConfigureAwait(false);
            }

            return await probe.BeforeAsync(error, cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            return null;
        }
    }

    /// <summary>A source naming a file or directory, made absolute for workers that run elsewhere.</summary>
    internal static string? Absolute(string? source)
    {
        if (source is null)
        {
            return null;
        }

        foreach (var prefix in new[] { "file:", "template:", "azure-llm:" })
        {
            if (source.StartsWith(prefix, StringComparison.OrdinalIgnoreCase))
            {
                return prefix + Path.GetFullPath(source[prefix.Length..]);
            }
        }

        return Directory.Exists(source) ? Path.GetFullPath(source) : source;
    }

    /// <summary>
    /// The workers' own diagnostics in the report: CPU, GC collections and pauses, peak memory, cores and connection
    /// figures are added over the workers (the fleet's cost); the open-file limit is the lowest; peak concurrent
    /// sessions is the sum of each worker's peak, an upper bound on the fleet's (the peaks need not coincide).
    /// </summary>
    internal static void MergeDiagnostics(RunReport report, IEnumerable<WorkerDiagnostics> workers)
    {
        GeneratorReport? generator = null;
        ConnectionReport? connections = null;
        var peak = 0;
        foreach (var d in workers)
        {
            peak += d.PeakSessions;
            var g = d.Generator;
            generator = generator is null ? g : new GeneratorReport(
                generator.Gen0 + g.Gen0, generator.Gen1 + g.Gen1, generator.Gen2 + g.Gen2, generator.GcPauseMs + g.GcPauseMs,
                generator.CpuSeconds + g.CpuSeconds, generator.PeakWorkingSetMb + g.PeakWorkingSetMb, generator.Cores + g.Cores);
            connections = connections is null
                ? new ConnectionReport(d.ConnectionLimit, d.OpenFileLimit, d.PeakConnections, d.ConnectionWaits)
                : new ConnectionReport(connections.Limit + d.ConnectionLimit, Math.Min(connections.OpenFileLimit, d.OpenFileLimit), connections.PeakInUse + d.PeakConnections, connections.Waits + d.ConnectionWaits);
        }

        report.Generator = generator;
        report.Connections = connections;
        report.PeakConcurrentSessions = peak;
    }

    private sealed class CollectState
    {
        public readonly HashSet<string> Names = new(StringComparer.Ordinal);
        public readonly Dictionary<string, WorkerDiagnostics> Diagnostics = new(StringComparer.Ordinal);
        public long SessionsReported;
        public int TakenOver;
    }

    private static async Task CollectAsync(IDatabase db, string id, RunMetrics metrics, bool[] done, CollectState state, long deadline, TimeProvider time, CancellationToken cancellationToken)
    {
        RedisValue position = "0-0";
        var remaining = done.Length;
        while (remaining > 0 && time.GetTimestamp() < deadline)
        {
            var entries = await db.StreamReadAsync(WorkQueue.Results(id), position, count: 100).ConfigureAwait(false);
            if (entries.Length == 0)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(100), time, cancellationToken).ConfigureAwait(false);
                continue;
            }

            foreach (var entry in entries)
            {
                position = entry.Id;
                var slice = (int)entry["slice"];
                metrics.Merge((byte[])entry["metrics"]!);
                state.Names.Add(entry["worker"].ToString());
                if (entry["diagnostics"] is { IsNullOrEmpty: false } diagnostics
                    && System.Text.Json.JsonSerializer.Deserialize(diagnostics.ToString(), WorkerJsonContext.Default.WorkerDiagnostics) is { } d)
                {
                    // Cumulative per worker: its latest result supersedes the earlier ones.
                    state.Diagnostics[entry["worker"].ToString()] = d;
                }

                state.SessionsReported += (long)entry["sent"];
                if ((int)entry["taken_over"] == 1)
                {
                    state.TakenOver++;
                }

                if (slice >= 0 && slice < done.Length && !done[slice])
                {
                    done[slice] = true;
                    remaining--;
                }
            }
        }
    }
}

/// <summary>How a run split among workers went (<c>workers</c> in report.json).</summary>
/// <param name="Workers">Workers asked for.</param>
/// <param name="Names">Workers that reported a slice.</param>
/// <param name="Slices">Slices of the schedule.</param>
/// <param name="TakenOver">Slices finished by another worker after theirs died.</param>
/// <param name="LostSessions">Sessions sent by a worker that died before reporting them (their outcome is unknown; they were not sent again).</param>
/// <param name="MissingSlices">Slices without any result by the deadline.</param>
/// <param name="RunId">The run's id in Redis.</param>
internal sealed record WorkersReport(int Workers, IReadOnlyList<string> Names, int Slices, int TakenOver, long LostSessions, int MissingSlices, string RunId);
