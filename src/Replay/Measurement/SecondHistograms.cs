using HdrHistogram;

namespace Replay.Measurement;

/// <summary>
/// One coarse histogram per second of a run (latency, TTFT or inter-token time, by completion second), whose
/// percentiles become the report's series.
/// </summary>
/// <remarks>
/// Two modes. Streaming (the default, one process): completions arrive in time order, so a second is closed (its
/// percentiles handed to <c>close</c>) as soon as a value two seconds later arrives, and its histogram is reset and
/// reused; at most a few are open at once, whatever the run's length. A value that arrives for a second already
/// closed (a race of a few microseconds at a boundary) goes into the oldest open second. Kept
/// (<see cref="Keep"/>): every second's histogram is kept whole until the end, so a worker can export it and a
/// coordinator can merge several workers' seconds exactly. Not thread-safe: <see cref="RunMetrics"/> holds its lock.
/// </remarks>
internal sealed class SecondHistograms
{
    private readonly Dictionary<int, LongHistogram> _open = [];
    private readonly Stack<LongHistogram> _pool = new();
    private readonly Action<int, LongHistogram> _close;
    private int _oldest;

    /// <summary>Creates the series.</summary>
    /// <param name="keep">Keep every second (see <see cref="Keep"/>).</param>
    /// <param name="close">Receives a second's index and its histogram when the second is closed.</param>
    public SecondHistograms(bool keep, Action<int, LongHistogram> close)
    {
        Keep = keep;
        _close = close;
    }

    /// <summary>Keep every second's histogram until the end (for export and merge) instead of closing them as the run goes.</summary>
    public bool Keep { get; set; }

    /// <summary>The seconds held, by index (every second when <see cref="Keep"/>).</summary>
    public IReadOnlyDictionary<int, LongHistogram> Held => _open;

    /// <summary>Records <paramref name="micros"/> in second <paramref name="second"/>.</summary>
    public void Record(int second, long micros)
    {
        if (!Keep)
        {
            second = Math.Max(second, _oldest);
            while (_oldest < second - 1)
            {
                if (_open.Remove(_oldest, out var done))
                {
                    _close(_oldest, done);
                    done.Reset();
                    _pool.Push(done);
                }

                _oldest++;
            }
        }

        Histograms.Record(GetOrCreate(second), micros);
    }

    /// <summary>The histogram of <paramref name="second"/>, created empty when absent.</summary>
    public LongHistogram GetOrCreate(int second)
    {
        if (!_open.TryGetValue(second, out var h))
        {
            _open[second] = h = _pool.Count > 0 ? _pool.Pop() : Histograms.CreateCoarse();
        }

        return h;
    }

    /// <summary>Closes every second held (kept ones stay held, so they can still be exported).</summary>
    public void CloseAll()
    {
        foreach (var (second, h) in _open)
        {
            if (h.TotalCount > 0)
            {
                _close(second, h);
            }
        }

        if (!Keep)
        {
            foreach (var h in _open.Values)
            {
                h.Reset();
                _pool.Push(h);
            }

            _open.Clear();
        }
    }
}
