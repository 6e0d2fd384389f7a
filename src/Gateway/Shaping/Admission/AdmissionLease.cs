namespace Gateway.Shaping.Admission;

/// <summary>Validated admission settings of a cluster: the options and the resolved priority classes.</summary>
internal sealed class AdmissionSettings
{
    public AdmissionSettings(AdmissionOptions options)
    {
        Options = options;
        Classes = options.PriorityClasses.Count > 0 ? [.. options.PriorityClasses] : [.. AdmissionOptions.DefaultPriorityClasses];
        DefaultClass = ClassIndex(options.DefaultPriority) ?? Math.Min(1, Classes.Length - 1);
    }

    public AdmissionOptions Options { get; }

    /// <summary>Class names, most urgent first.</summary>
    public string[] Classes { get; }

    public int DefaultClass { get; }

    /// <summary>The index of a class by name (case-insensitive), or null.</summary>
    public int? ClassIndex(string? name)
    {
        if (name is null)
        {
            return null;
        }

        for (var i = 0; i < Classes.Length; i++)
        {
            if (string.Equals(Classes[i], name, StringComparison.OrdinalIgnoreCase))
            {
                return i;
            }
        }

        return null;
    }
}

/// <summary>What a request asks of <see cref="AdmissionController.EnterAsync(AdmissionRequest, CancellationToken)"/>.</summary>
/// <param name="Key">The fair-share key: the tenant (<c>tenant:NAME</c>) when there is one, else the client key.</param>
/// <param name="Priority">The class index (0 most urgent).</param>
/// <param name="Weight">The key's share relative to the other keys of its class (&gt; 0; anything else counts as 1).</param>
/// <param name="InputTokens">The prompt tokens (estimate), charged to the key's counter when admitted.</param>
/// <param name="PredictedOutputTokens">The output tokens it may generate (its <c>max_tokens</c>), charged when admitted and reconciled when it completes.</param>
internal readonly record struct AdmissionRequest(string Key, int Priority, double Weight = 1.0, long InputTokens = 0, long PredictedOutputTokens = 0);

/// <summary>The outcome of <see cref="AdmissionController.EnterAsync(AdmissionRequest, CancellationToken)"/>.</summary>
/// <param name="Lease">The permit, when admitted.</param>
/// <param name="Reason">Why not (<c>queue_full</c>, <c>queue_timeout</c>, <c>evicted</c>, <c>cancelled</c>), when refused.</param>
/// <param name="Waited">Time spent in the queue, from joining it to the grant (zero when admitted at once; the thread pool's delay in resuming the waiter is not counted).</param>
/// <param name="RetryAfter">When a refused client should come back.</param>
/// <param name="Aged">Served ahead of a more urgent class because it had waited the aging bound.</param>
internal readonly record struct AdmissionResult(AdmissionLease? Lease, string? Reason, TimeSpan Waited, TimeSpan RetryAfter, bool Aged = false)
{
    public static AdmissionResult Admitted(AdmissionLease lease, TimeSpan waited, bool aged = false) => new(lease, null, waited, TimeSpan.Zero, aged);

    public static AdmissionResult Refused(string reason, TimeSpan retryAfter) => new(null, reason, TimeSpan.Zero, retryAfter);
}

/// <summary>A permit to be in flight; disposing it lets the next waiter in and feeds the adaptive limit.</summary>
internal sealed class AdmissionLease : IDisposable, Tokens.IOutputTokenSink
{
    private readonly AdmissionController _owner;
    private readonly TimeProvider _time;
    private readonly long _start;
    private readonly bool _calibrating;
    private readonly int _epoch;
    private readonly object? _band;
    private readonly object? _flow;
    private long _firstByte;
    private readonly long _predicted;
    private long _outputTokens = -1;
    private int _disposed;

    public AdmissionLease(AdmissionController owner, TimeProvider time, bool calibrating, int epoch, object? band = null, object? flow = null, long predictedOutputTokens = 0)
    {
        _owner = owner;
        _time = time;
        _start = time.GetTimestamp();
        _calibrating = calibrating;
        _epoch = epoch;
        _band = band;
        _flow = flow;
        _predicted = predictedOutputTokens;
    }

    /// <summary>Output tokens delivered so far, each charged to the key's fair-share counter as it streamed.</summary>
    private long _streamed;

    /// <summary>Charges <paramref name="tokens"/> output tokens to the key's counter now (VTC charges output as it is generated).</summary>
    public void Generated(int tokens)
    {
        if (Volatile.Read(ref _disposed) == 0)
        {
            Interlocked.Add(ref _streamed, tokens);
            _owner.ChargeOutput(_band, _flow, tokens);
        }
    }

    /// <summary>
    /// The output tokens the exchange generated in all: when the lease is disposed its key's counter is corrected from
    /// what was charged (the prediction, plus what streamed) to this. Not called: what was charged stands.
    /// </summary>
    public void ReportOutputTokens(long tokens) => Interlocked.Exchange(ref _outputTokens, Math.Max(0, tokens));

    /// <summary>Marks the first response byte (the adaptive limit's latency signal).</summary>
    public void MarkFirstByte() => Interlocked.CompareExchange(ref _firstByte, _time.GetTimestamp(), 0);

    /// <summary>Call when the backend answered with a failure that says nothing about its latency (no sample is taken).</summary>
    public void Discard() => Interlocked.Exchange(ref _firstByte, -1);

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            var fb = Interlocked.Read(ref _firstByte);
            _owner.Exit(fb > 0 ? _time.GetElapsedTime(_start, fb).TotalMilliseconds : null, _calibrating, _epoch, _band, _flow, Interlocked.Read(ref _outputTokens), _predicted + Interlocked.Read(ref _streamed));
        }
    }
}
