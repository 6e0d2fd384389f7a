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

/// <summary>The outcome of <see cref="AdmissionController.EnterAsync"/>.</summary>
internal readonly record struct AdmissionResult(AdmissionLease? Lease, string? Reason, TimeSpan Waited, TimeSpan RetryAfter)
{
    public static AdmissionResult Admitted(AdmissionLease lease, TimeSpan waited) => new(lease, null, waited, TimeSpan.Zero);

    public static AdmissionResult Refused(string reason, TimeSpan retryAfter) => new(null, reason, TimeSpan.Zero, retryAfter);
}

/// <summary>A permit to be in flight; disposing it lets the next waiter in and feeds the adaptive limit.</summary>
internal sealed class AdmissionLease : IDisposable
{
    private readonly AdmissionController _owner;
    private readonly TimeProvider _time;
    private readonly long _start;
    private readonly bool _calibrating;
    private readonly int _epoch;
    private long _firstByte;
    private int _disposed;

    public AdmissionLease(AdmissionController owner, TimeProvider time, bool calibrating, int epoch)
    {
        _owner = owner;
        _time = time;
        _start = time.GetTimestamp();
        _calibrating = calibrating;
        _epoch = epoch;
    }

    /// <summary>Marks the first response byte (the adaptive limit's latency signal).</summary>
    public void MarkFirstByte() => Interlocked.CompareExchange(ref _firstByte, _time.GetTimestamp(), 0);

    /// <summary>Call when the backend answered with a failure that says nothing about its latency (no sample is taken).</summary>
    public void Discard() => Interlocked.Exchange(ref _firstByte, -1);

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            var fb = Interlocked.Read(ref _firstByte);
            _owner.Exit(fb > 0 ? _time.GetElapsedTime(_start, fb).TotalMilliseconds : null, _calibrating, _epoch);
        }
    }
}
