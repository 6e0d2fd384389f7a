using System.Globalization;
using Microsoft.Extensions.Logging;
using Replay.Clients;
using Replay.Measurement;
using Replay.Reporting;
using Replay.Scheduling;
using Replay.Sources;

namespace Replay.Cli;

/// <summary>
/// Executes <c>run</c> and <c>load</c>: (1) validate every option; (2) load the source (bad records skipped and
/// counted); (3) plan (speed, amplification, profile); (4) check the targets answer; (5) send, with live progress;
/// (6) build the report, evaluate SLOs and assertions, write report.json/report.html; (7) return the exit code.
/// </summary>
internal static class RunCommand
{
    /// <summary>A validated, loaded and planned run whose targets answered: everything needed before sending.</summary>
    internal sealed record Prepared(ReplaySettings Settings, ValidatedRun Run, Workload Workload, RunPlan Plan, IReadOnlyList<(string Flag, Uri Target)> Targets);

    /// <summary>Steps (1) to (4): validate, load, plan and (when <paramref name="checkTargets"/>) check the targets. Null and the exit code when any step failed (its problems already written).</summary>
    public static async Task<(Prepared? Prepared, int ExitCode)> PrepareAsync(ReplaySettings settings, TextWriter error, ILogger logger, bool checkTargets, CancellationToken cancellationToken, bool logPlan = true)
    {
        // (1) Validate.
        var (run, errors) = SettingsValidator.Validate(settings);
        if (run is null)
        {
            foreach (var e in errors)
            {
                await error.WriteLineAsync($"replay: {Origin(settings, e)}{e}").ConfigureAwait(false);
            }

            return (null, ExitCodes.UsageOrInput);
        }

        // (2) Load the source.
        Workload workload;
        try
        {
            workload = await SourceLoader.LoadAsync(run.Source, cancellationToken).ConfigureAwait(false);
        }
        catch (InputException ex)
        {
            await error.WriteLineAsync($"replay: {ex.Message}").ConfigureAwait(false);
            return (null, ExitCodes.UsageOrInput);
        }

        foreach (var s in workload.Skipped.Take(5))
        {
            ReplayApp.Log.SkippedRecord(logger, s.Position, s.Reason);
        }

        if (workload.SkippedTotal > 5)
        {
            ReplayApp.Log.SkippedTotal(logger, workload.SkippedTotal, workload.Skipped.Count);
        }

        if (workload.OutOfOrder is { } disorder)
        {
            ReplayApp.Log.OutOfOrder(logger, disorder.Records, disorder.LargestDisplacement, disorder.LargestMs);
        }

        if (workload.SourceTimeRemovedMs > 0)
        {
            var removedSeconds = Math.Round(workload.SourceTimeRemovedMs / 1000, 3);
            ReplayApp.Log.GapsRemoved(logger, removedSeconds);
        }

        if (workload.Sessions.Count == 0)
        {
            await error.WriteLineAsync($"replay: nothing to send from {workload.Description} (check --duration and --limit).").ConfigureAwait(false);
            return (null, ExitCodes.UsageOrInput);
        }

        // (3) Plan.
        RunPlan plan;
        try
        {
            plan = Planner.Build(workload, PlannerOptions(run));
        }
        catch (ArgumentException ex)
        {
            await error.WriteLineAsync($"replay: {ex.Message}").ConfigureAwait(false);
            return (null, ExitCodes.UsageOrInput);
        }

        var needed = NeededTargets(plan, run.Clients, out var missing, settings);
        if (missing is not null)
        {
            await error.WriteLineAsync($"replay: {missing}").ConfigureAwait(false);
            return (null, ExitCodes.UsageOrInput);
        }

        if (plan.Mode == RunMode.Faithful && plan.Sessions.Count > 0)
        {
            // A record stamped far from the others (a clock step, a record at Unix time 0) makes a plan that would wait
            // for days: said before the run, with the way out.
            var lastStartMs = 0.0;
            foreach (var s in plan.Sessions)
            {
                lastStartMs = Math.Max(lastStartMs, s.StartOffsetMs);
            }

            if (lastStartMs > TimeSpan.FromHours(24).TotalMilliseconds)
            {
                ReplayApp.Log.LongPlan(logger, TimeSpan.FromMilliseconds(lastStartMs).ToString(@"d\.hh\:mm\:ss", System.Globalization.CultureInfo.InvariantCulture));
            }
        }

        if (logPlan)
        {
            var modeName = plan.Mode.ToString().ToLowerInvariant();
            var plannedText = PlannedText(plan, run);
            ReplayApp.Log.Planned(logger, modeName, workload.Description, plan.Sessions.Count, plannedText);
        }

        // (4) Can the targets be reached?
        if (checkTargets)
        {
            var problems = await Preflight.CheckAsync(needed, TimeSpan.FromSeconds(5), cancellationToken).ConfigureAwait(false);
            if (problems.Count > 0)
            {
                foreach (var p in problems)
                {
                    await error.WriteLineAsync($"replay: target unreachable: {p}").ConfigureAwait(false);
                }

                return (null, ExitCodes.TargetUnreachable);
            }
        }

        return (new Prepared(settings, run, workload, plan, needed), ExitCodes.Ok);
    }

    /// <summary>Where a problem's flag was set, when it came from a scenario file: <c>scenario.yaml:12: </c>, else empty.</summary>
    internal static string Origin(ReplaySettings settings, string message)
    {
        if (settings.Origins is not { Count: > 0 } origins)
        {
            return string.Empty;
        }

        foreach (var (flag, origin) in origins)
        {
            var at = message.IndexOf(flag, StringComparison.Ordinal);
            if (at >= 0 && (at + flag.Length == message.Length || !char.IsAsciiLetterOrDigit(message[at + flag.Length]) && message[at + flag.Length] != '-'))
            {
                return origin + ": ";
            }
        }

        return string.Empty;
    }

    /// <summary>Runs one command; returns its exit code.</summary>
    public static async Task<int> ExecuteAsync(ReplaySettings settings, TextWriter output, TextWriter error, ILogger logger, TimeProvider time, CancellationToken cancellationToken)
    {
        var (prepared, code) = await PrepareAsync(settings, error, logger, checkTargets: true, cancellationToken).ConfigureAwait(false);
        if (prepared is null)
        {
            return code;
        }

        if (settings.Workers > 0)
        {
            return await Workers.Coordinator.RunAsync(prepared, output, error, logger, time, cancellationToken).ConfigureAwait(false);
        }

        var (_, run, workload, plan, needed) = prepared;

        // (5) Send, through the one run core: first an unmeasured warm-up on the same connections, then the run. Sockets
        // are bounded by the budget (--connections fitted to the open-file limit), so a backlog of late requests cannot
        // exhaust the process's descriptors.
        using var pipeline = RunPipeline.Create(run.Clients, time);
        if (pipeline.Lowered(run.Clients) && settings.Connections is not null)
        {
            ReplayApp.Log.ConnectionsLowered(logger, run.Clients.MaxConnections, pipeline.Budget.Limit, pipeline.Budget.OpenFileLimit);
        }

        try
        {
            await pipeline.WarmUpAsync(plan, run.Warmup, null, cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            return ExitCodes.Cancelled;
        }

        // The target's prefix cache counters before the measured run (after the warm-up), when it exposes vLLM metrics.
        using var prefixCache = PrefixCacheProbe.Create(settings, run);
        var cacheBefore = await prefixCache.BeforeAsync(error, cancellationToken).ConfigureAwait(false);

        var metrics = new RunMetrics(time, run.Slos);
        var startedAt = time.GetUtcNow();
        var cancelled = false;
        var log = settings.LogRequests is { } logPath ? new RequestLog(logPath) : null;
        long end;
        var peakSessions = 0;
        Exception? unexpected;
        using var generator = run.GenerateWith is { } generateWith
            ? new ConversationGenerator(generateWith, settings.GenerateModel ?? settings.Model, settings.Seed, settings.GenerateMaxTokens, settings.GenerateCache ?? DefaultCache(), run.Clients.Timeout)
            : null;
        long conversations = 0;
        try
        {
            using var runner = pipeline.CreateRunner(plan, metrics, log);
            runner.Conversations = (IUserTurns?)generator ?? (run.Source.Conversation is not null && run.Source.PromptText is { } text ? new SyntheticTurns(text, settings.PromptTokens) : null);
            var running = runner.RunAsync(cancellationToken);
            var mode = settings.Progress == "auto" ? (ReferenceEquals(output, Console.Out) && !Console.IsOutputRedirected ? "live" : "plain") : settings.Progress;
            await ConsoleProgress.ShowAsync(mode, output, () => metrics.Snapshot(time.GetTimestamp()), plan.PlannedRequests, () => runner.Inflight, running, time).ConfigureAwait(false);
            try
            {
                await running.ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                cancelled = true;
            }

            end = time.GetTimestamp();
            peakSessions = runner.PeakInflight;
            unexpected = runner.Unexpected;
            conversations = runner.ConversationsStarted;
        }
        finally
        {
            if (log is not null)
            {
                await log.DisposeAsync().ConfigureAwait(false);
            }
        }

        // (6) Report.
        var target = string.Join(", ", needed.Select(static t => t.Target.ToString()).Distinct());
        var report = ReportBuilder.Build(metrics, new ReportBuilder.Context(settings.Command, plan, workload, target, startedAt, settings.Speed, settings.Amplify, settings.Compare, cancelled), end);
        pipeline.Describe(report, peakSessions);
        if (generator is not null)
        {
            report.Conversations = new ConversationReport(conversations, (settings.Turns ?? ReplaySettings.DefaultTurns), generator.Generated, generator.CacheHits, generator.Failures,
                generator.Digest(conversations, (settings.Turns ?? ReplaySettings.DefaultTurns)), generator.Sample(0, (settings.Turns ?? ReplaySettings.DefaultTurns)), generator.CacheFile, generator.FirstFailure);
        }
        report.PrefixCache = await prefixCache.AfterAsync(cacheBefore, error, CancellationToken.None).ConfigureAwait(false);
        report.Assertions = [.. run.Assertions.Select(a => a.Evaluate(report))];
        SummaryWriter.Write(output, report);
        if (settings.ReportDirectory is { } directory)
        {
            await WriteReportAsync(report, directory, logger).ConfigureAwait(false);
        }

        await output.FlushAsync(CancellationToken.None).ConfigureAwait(false);

        // (7) Exit code.
        if (cancelled)
        {
            return ExitCodes.Cancelled;
        }

        if (unexpected is not null)
        {
            ReplayApp.Log.Unexpected(logger, unexpected);
            return ExitCodes.InternalError;
        }

        // A target that went away during the run (killed, its port closed): the report is written and shows the
        // failures; the exit code says so plainly rather than passing or failing an assertion by accident.
        if (metrics.FailuresOf(FailureKind.Connection) + metrics.FailuresOf(FailureKind.Timeout) > 0)
        {
            var lost = await Preflight.CheckAsync(needed, TimeSpan.FromSeconds(2), CancellationToken.None).ConfigureAwait(false);
            if (lost.Count > 0)
            {
                foreach (var p in lost)
                {
                    await error.WriteLineAsync($"replay: the target stopped answering during the run: {p}").ConfigureAwait(false);
                }

                return ExitCodes.TargetLost;
            }
        }

        return report.Assertions.All(static a => a.Passed) ? ExitCodes.Ok : ExitCodes.AssertionFailed;
    }

    /// <summary>The default cache of generated conversations: $XDG_CACHE_HOME/replay/conversations, or ~/.cache/replay/conversations.</summary>
    internal static string DefaultCache()
    {
        var root = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
        if (string.IsNullOrEmpty(root))
        {
            root = Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
        }

        return Path.Combine(root, "replay", "conversations");
    }

    /// <summary>Writes report.json and report.html into <paramref name="directory"/>.</summary>
    internal static async Task WriteReportAsync(RunReport report, string directory, ILogger logger)
    {
        Directory.CreateDirectory(directory);
        var json = Path.GetFullPath(Path.Combine(directory, "report.json"));
        var html = Path.GetFullPath(Path.Combine(directory, "report.html"));
        await File.WriteAllBytesAsync(json, ReportJson.Serialize(report), CancellationToken.None).ConfigureAwait(false);
        await File.WriteAllTextAsync(html, ReportHtml.Render(report), CancellationToken.None).ConfigureAwait(false);
        ReplayApp.Log.ReportWritten(logger, json, html);
    }

    internal static Planner.Options PlannerOptions(ValidatedRun run)
    {
        var s = run.Raw;
        RateProfile? profile = null;
        if (run.Mode == RunMode.Open)
        {
            var rate = s.Rate!.Value;
            var seconds = run.Duration?.TotalSeconds;
            profile = run.ProfileName switch
            {
                "ramp" => RateProfile.Ramp(rate, s.To!.Value, seconds!.Value),
                "steps" => RateProfile.Steps(rate, s.To!.Value, run.StepEvery!.Value.TotalSeconds, s.StepFactor ?? 1, s.StepAdd ?? 0, seconds),
                "spike" => RateProfile.Spike(rate, s.SpikeRate!.Value, run.SpikeAt!.Value.TotalSeconds, run.SpikeFor!.Value.TotalSeconds, seconds!.Value),
                _ => RateProfile.Constant(rate, seconds!.Value),
            };
        }

        return new Planner.Options
        {
            Mode = run.Mode,
            Speed = s.Speed,
            Amplify = s.Amplify,
            AmplifyFreshPrompts = s.AmplifyFreshPrompts,
            Spread = run.Spread,
            SessionHeader = s.SessionHeader,
            Profile = profile,
            Arrivals = run.Arrivals,
            Burstiness = s.Burstiness,
            Seed = s.Seed,
            Users = s.Users ?? 0,
            Think = run.Think,
            Duration = run.Duration,
            Limit = s.Limit,
            MaxInflight = s.MaxInflight,
            SourceDuration = run.Source.SourceDuration,
            SessionArrivals = s.SessionArrivals,
        };
    }

    /// <summary>
    /// What the plan line says will be sent: the exact count when it is known (a timed replay, uniform arrivals), else
    /// the expected count of the profile (Poisson or gamma arrivals, session arrivals) or the closed model's users and
    /// duration; never "unbounded" for a load that ends.
    /// </summary>
    internal static string PlannedText(RunPlan plan, ValidatedRun run)
    {
        var c = CultureInfo.InvariantCulture;
        var limit = plan.Limit != long.MaxValue ? string.Create(c, $", at most {plan.Limit} (--limit)") : string.Empty;
        if (plan.PlannedRequests is { } exact)
        {
            return string.Create(c, $"{exact} request(s)");
        }

        switch (plan.Mode)
        {
            case RunMode.Open when plan.Profile is { } profile:
                var expected = (long)Math.Round(profile.ExpectedCount);
                var what = run.Raw.SessionArrivals ? "session(s)" : "request(s)";
                var arrivals = plan.Arrivals.ToString().ToLowerInvariant();
                return string.Create(c, $"about {expected} {what} over {profile.Duration:0.###} s ({arrivals} arrivals){limit}");
            case RunMode.Closed:
                return plan.Duration is { } d
                    ? string.Create(c, $"{plan.Users} user(s) for {d.TotalSeconds:0.###} s{limit}")
                    : string.Create(c, $"{plan.Users} user(s){limit}");
            default:
                return string.Create(c, $"{plan.Sessions.Count} session(s){limit}");
        }
    }

    /// <summary>
    /// The targets the plan's protocols need, each with the flag the user gave for it (<c>--target</c> unless a
    /// per-protocol flag overrode it), so a problem names what the user typed; <paramref name="missing"/> names one that
    /// was not given.
    /// </summary>
    internal static List<(string Flag, Uri Target)> NeededTargets(RunPlan plan, ClientSettings clients, out string? missing, ReplaySettings? given = null)
    {
        var httpFlag = given is null || given.HttpTarget is not null ? "--http-target" : "--target";
        var grpcFlag = given is null || given.GrpcTarget is not null ? "--grpc-target" : "--target";
        var wsFlag = given is null || given.WebSocketTarget is not null ? "--ws-target" : httpFlag;
        bool http = false, grpc = false, ws = false;
        foreach (var s in plan.Sessions)
        {
            foreach (var r in s.Requests)
            {
                http |= r.Protocol == RequestProtocol.Http;
                grpc |= r.Protocol == RequestProtocol.Grpc;
                ws |= r.Protocol == RequestProtocol.WebSocket;
            }
        }

        missing = null;
        var list = new List<(string, Uri)>();
        Add(http, httpFlag, clients.HttpTarget, "HTTP", ref missing);
        Add(grpc, grpcFlag, clients.GrpcTarget, "gRPC", ref missing);
        Add(ws, wsFlag, clients.WebSocketTarget, "WebSocket", ref missing);
        return list;

        void Add(bool used, string flag, Uri? target, string name, ref string? missing)
        {
            if (!used)
            {
                return;
            }

            if (target is null)
            {
                missing ??= $"the source has {name} requests but no target for them: give {(flag == "--target" ? name switch { "gRPC" => "--grpc-target", "WebSocket" => "--ws-target", _ => "--http-target" } : flag)} or --target.";
                return;
            }

            list.Add((flag, target));
        }
    }
}
