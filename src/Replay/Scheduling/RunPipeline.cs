using Replay.Clients;
using Replay.Measurement;
using Replay.Reporting;

namespace Replay.Scheduling;

/// <summary>
/// The one run core that <c>run</c>/<c>load</c>, <c>sweep</c> and <c>worker</c> share, built once per run (per run and
/// worker): (1) the socket budget (<c>--connections</c> fitted to the open-file limit); (2) the senders on it, whose
/// connections the warm-up, the run (or every sweep step) and the calibration all reuse; (3) the unmeasured warm-up
/// plan, made in one place; (4) runners over a plan into a <see cref="RunMetrics"/>; (5) the process's own
/// diagnostics for the report (CPU, GC, memory since the run was ready; the budget's peaks).
/// </summary>
/// <remarks>The commands stay thin: they choose the plans and the rates and print; sending and its plumbing live here.</remarks>
internal sealed class RunPipeline : IDisposable
{
    private readonly TimeProvider _time;
    private GeneratorReport _ready;

    private RunPipeline(ClientSettings requested, TimeProvider time)
    {
        _time = time;
        Budget = ConnectionBudget.ForProcess(requested.MaxConnections);
        Clients = requested with { MaxConnections = Budget.Limit };
        Http = new HttpSender(HttpSender.CreateHandler(Clients), Clients, time);
        WebSockets = new WebSocketSender(Clients, time);
        _ready = GeneratorReport.Capture();
    }

    /// <summary>The socket budget of the run.</summary>
    public ConnectionBudget Budget { get; }

    /// <summary>The client settings with the budget's limit.</summary>
    public ClientSettings Clients { get; }

    /// <summary>The HTTP and gRPC sender.</summary>
    public HttpSender Http { get; }

    /// <summary>The WebSocket sender.</summary>
    public WebSocketSender WebSockets { get; }

    /// <summary>True when the budget is below what <c>--connections</c> asked for (the open-file limit is lower).</summary>
    public bool Lowered(ClientSettings requested) => Budget.Limit < requested.MaxConnections;

    /// <summary>Builds the budget and the senders for <paramref name="clients"/>.</summary>
    public static RunPipeline Create(ClientSettings clients, TimeProvider time) => new(clients, time);

    /// <summary>
    /// The unmeasured warm-up of <paramref name="plan"/>: an open model at <paramref name="rate"/> (default: the
    /// profile's starting rate, at least 1/s) for <paramref name="length"/>; a closed model's users for that long; a
    /// timed replay has none (it sends exactly what the source holds).
    /// </summary>
    public static RunPlan? WarmupPlan(RunPlan plan, TimeSpan length, double? rate = null)
    {
        if (length <= TimeSpan.Zero || plan.Mode == RunMode.Faithful)
        {
            return null;
        }

        return plan.Mode == RunMode.Open
            ? plan with { Profile = RateProfile.Constant(rate ?? Math.Max(plan.Profile!.RateAt(0), 1), length.TotalSeconds), Limit = long.MaxValue, PlannedRequests = null }
            : plan with { Duration = length, Limit = long.MaxValue, PlannedRequests = null };
    }

    /// <summary>Runs the warm-up of <paramref name="plan"/> (<see cref="WarmupPlan"/>), unmeasured, on this pipeline's connections; then marks the run ready (diagnostics count from here).</summary>
    public async Task WarmUpAsync(RunPlan plan, TimeSpan length, double? rate, CancellationToken cancellationToken)
    {
        if (WarmupPlan(plan, length, rate) is { } warmup)
        {
            using var runner = CreateRunner(warmup, new RunMetrics(_time, []));
            await runner.RunAsync(cancellationToken).ConfigureAwait(false);
        }

        _ready = GeneratorReport.Capture();
    }

    /// <summary>A runner of <paramref name="plan"/> on this pipeline's senders and budget, measuring into <paramref name="metrics"/>.</summary>
    public LoadRunner CreateRunner(RunPlan plan, RunMetrics metrics, RequestLog? log = null) => new(plan, Http, WebSockets, metrics, log, Budget, _time);

    /// <summary>What this process cost since the run was ready (after the warm-up).</summary>
    public GeneratorReport GeneratorSinceReady() => GeneratorReport.Capture().Since(_ready);

    /// <summary>The budget's figures for the report.</summary>
    public ConnectionReport ConnectionReport() => new(Budget.Limit, Budget.OpenFileLimit, Budget.PeakInUse, Budget.Waits);

    /// <summary>Fills the report's diagnostics of this process: generator cost, peak sessions and connections.</summary>
    public void Describe(RunReport report, int peakSessions)
    {
        report.Generator = GeneratorSinceReady();
        report.PeakConcurrentSessions = peakSessions;
        report.Connections = ConnectionReport();
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        Http.Dispose();
        WebSockets.Dispose();
        Budget.Dispose();
    }
}
