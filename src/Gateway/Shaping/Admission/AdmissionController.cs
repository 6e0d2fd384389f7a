using Contracts.Wire;
namespace Gateway.Shaping.Admission;

/// <summary>
/// Admission to one cluster: at most <c>limit</c> requests in flight (fixed, or <see cref="AdaptiveLimit"/>), and a bounded
/// wait queue with priority classes. A class is served only when every more urgent class is empty; within a class the
/// keys (tenants) take turns, one request each (round robin over per-key FIFO queues), so one noisy key cannot fill the
/// queue's service. When the queue is full a newcomer evicts the most recent waiter of a less urgent class, or is refused.
/// A waiter leaves with 503 after the queue timeout. Refusals answer at once; nothing here waits on the backend.
/// </summary>
internal sealed class AdmissionController
{
    private readonly Lock _lock = new();
    private readonly TimeProvider _time;
    private AdmissionSettings _settings;
    private AdaptiveLimit? _adaptive;
    private ClassQueue[] _classes;
    private int _inFlight;
    private int _queued;

    // Departures (requests leaving, which frees their permit) in the last second, in four 250 ms buckets: the rate at
    // which the queue is served, used to refuse at once a request that could not start within the queue timeout.
    private readonly long[] _departures = new long[4];
    private long _departureBucket;

    public AdmissionController(string clusterId, AdmissionSettings settings, TimeProvider time)
    {
        ClusterId = clusterId;
        _time = time;
        _settings = settings;
        _classes = [.. settings.Classes.Select(static _ => new ClassQueue())];
        _adaptive = settings.Options.Adaptive.Enabled ? new AdaptiveLimit(settings.Options.Adaptive, settings.Options.MaxInFlight) : null;
    }

    public string ClusterId { get; }

    public AdmissionSettings Settings => _settings;

    /// <summary>Requests in flight now.</summary>
    public int InFlight => Volatile.Read(ref _inFlight);

    /// <summary>Requests waiting now.</summary>
    public int Queued => Volatile.Read(ref _queued);

    /// <summary>The in-flight limit now (the adaptive one when enabled).</summary>
    public int Limit
    {
        get
        {
            lock (_lock)
            {
                return CurrentLimit;
            }
        }
    }

    private int CurrentLimit => _adaptive is null ? _settings.Options.MaxInFlight : Math.Max(1, (int)_adaptive.Limit);

    /// <summary>Applies new settings (a configuration reload) without losing the requests in flight or waiting.</summary>
    public void Update(AdmissionSettings settings)
    {
        lock (_lock)
        {
            var adaptiveChanged = settings.Options.Adaptive.Enabled != _settings.Options.Adaptive.Enabled
                || settings.Options.MaxInFlight != _settings.Options.MaxInFlight;
            if (!settings.Classes.SequenceEqual(_settings.Classes, StringComparer.OrdinalIgnoreCase))
            {
                // Re-home the waiters by class name; classes that no longer exist go to the default class.
                var next = settings.Classes.Select(static _ => new ClassQueue()).ToArray();
                foreach (var (queue, i) in _classes.Select(static (q, i) => (q, i)))
                {
                    foreach (var waiter in queue.DrainAll())
                    {
                        var target = settings.ClassIndex(_settings.Classes[i]) ?? settings.DefaultClass;
                        waiter.Priority = target;
                        next[target].Enqueue(waiter);
                    }
                }

                _classes = next;
            }

            _settings = settings;
            if (adaptiveChanged || (settings.Options.Adaptive.Enabled && _adaptive is null))
            {
                _adaptive = settings.Options.Adaptive.Enabled ? new AdaptiveLimit(settings.Options.Adaptive, settings.Options.MaxInFlight) : null;
            }

            GrantWaiting();
        }
    }

    /// <summary>
    /// Waits for a permit. The result says admitted (dispose the lease when the exchange ends) or why not
    /// (<c>queue_full</c>, <c>queue_timeout</c>, <c>evicted</c>).
    /// </summary>
    public async ValueTask<AdmissionResult> EnterAsync(string key, int priority, CancellationToken cancellationToken)
    {
        Waiter waiter;
        TimeSpan timeout;
        lock (_lock)
        {
            if (_queued == 0 && _inFlight < CurrentLimit)
            {
                _inFlight++;
                return AdmissionResult.Admitted(NewLease(), TimeSpan.Zero);
            }

            var settings = _settings;
            if (_queued >= settings.Options.QueueLimit && !EvictLessUrgentThan(priority))
            {
                return AdmissionResult.Refused(GatewayErrorCodes.QueueFull, RetryAfter());
            }

            // Refuse now what would wait in vain: at the rate the queue is being served, the requests ahead of this one
            // (of its class or a more urgent one) would take longer than the queue timeout to start.
            var rate = DepartureRate();
            if (rate > 0 && (Ahead(priority) + 1) / rate > settings.Options.QueueTimeout.TotalSeconds)
            {
                return AdmissionResult.Refused(GatewayErrorCodes.QueueTimeout, RetryAfter());
            }

            waiter = new Waiter(key, priority, _time.GetTimestamp());
            _classes[priority].Enqueue(waiter);
            _queued++;
            timeout = settings.Options.QueueTimeout;
        }

        string? reason;
        try
        {
            reason = await waiter.Task.WaitAsync(timeout, _time, cancellationToken);
        }
        catch (Exception ex) when (ex is TimeoutException or OperationCanceledException)
        {
            lock (_lock)
            {
                if (_classes[waiter.Priority].Remove(waiter))
                {
                    _queued--;
                    return AdmissionResult.Refused(ex is TimeoutException ? GatewayErrorCodes.QueueTimeout : "cancelled", RetryAfter());
                }
            }

            // Granted (or evicted) while timing out: take what was decided.
            reason = await waiter.Task;
        }

        var waited = _time.GetElapsedTime(waiter.EnqueuedAt);
        if (reason is not null)
        {
            return AdmissionResult.Refused(reason, RetryAfter());
        }

        lock (_lock)
        {
            return AdmissionResult.Admitted(NewLease(), waited);
        }
    }

    /// <summary>Called by the lease: one request left, with its latency to the first response byte (or null if none).</summary>
    internal void Exit(double? firstByteMs, bool admittedCalibrating, int epoch)
    {
        lock (_lock)
        {
            _inFlight--;
            _departures[CurrentBucket() % _departures.Length]++;
            if (firstByteMs is { } ms)
            {
                _adaptive?.Sample(ms, _inFlight + 1, _time.GetTimestamp() * 1000.0 / _time.TimestampFrequency, admittedCalibrating, epoch);
            }

            GrantWaiting();
        }
    }

    /// <summary>A lease for a request admitted now (call under the lock).</summary>
    private AdmissionLease NewLease() => new(this, _time, _adaptive?.Calibrating ?? false, _adaptive?.Epoch ?? 0);

    /// <summary>The adaptive limit's latest no-load latency in milliseconds, or null when the limit is fixed.</summary>
    public double? MinRttMs
    {
        get
        {
            lock (_lock)
            {
                return _adaptive?.MinRttMs;
            }
        }
    }

    /// <summary>The index of the current 250 ms bucket, clearing buckets that went by (call under the lock).</summary>
    private long CurrentBucket()
    {
        var bucket = _time.GetTimestamp() * 4 / _time.TimestampFrequency;
        for (var b = Math.Max(_departureBucket + 1, bucket - _departures.Length + 1); b <= bucket; b++)
        {
            _departures[b % _departures.Length] = 0;
        }

        _departureBucket = Math.Max(_departureBucket, bucket);
        return bucket;
    }

    /// <summary>Departures per second over the last second (call under the lock); 0 while unknown.</summary>
    private double DepartureRate()
    {
        var current = CurrentBucket();
        long total = 0;
        for (var i = 0; i < _departures.Length; i++)
        {
            total += _departures[i];
        }

        // The current bucket is partly elapsed: count the three full ones and the current one's share.
        var elapsedInCurrent = ((_time.GetTimestamp() * 4.0 / _time.TimestampFrequency) - current) / 4.0;
        var seconds = 0.75 + elapsedInCurrent;
        return total < 4 ? 0 : total / seconds;
    }

    /// <summary>Waiters that would be served before a newcomer of <paramref name="priority"/> (call under the lock).</summary>
    private int Ahead(int priority)
    {
        var ahead = 0;
        for (var i = 0; i <= priority && i < _classes.Length; i++)
        {
            ahead += _classes[i].Count;
        }

        return ahead;
    }

    private void GrantWaiting()
    {
        while (_queued > 0 && _inFlight < CurrentLimit)
        {
            var next = DequeueNext();
            if (next is null)
            {
                break;
            }

            _queued--;
            _inFlight++;
            next.Complete(null);
        }
    }

    private Waiter? DequeueNext()
    {
        foreach (var c in _classes)
        {
            if (c.TryDequeue(out var w))
            {
                return w;
            }
        }

        return null;
    }

    private bool EvictLessUrgentThan(int priority)
    {
        for (var i = _classes.Length - 1; i > priority; i--)
        {
            if (_classes[i].TryRemoveNewest(out var victim))
            {
                _queued--;
                victim.Complete(GatewayErrorCodes.Evicted);
                return true;
            }
        }

        return false;
    }

    private TimeSpan RetryAfter() => _settings.Options.QueueTimeout > TimeSpan.FromSeconds(1) ? _settings.Options.QueueTimeout : TimeSpan.FromSeconds(1);

    /// <summary>A queued request.</summary>
    private sealed class Waiter(string key, int priority, long enqueuedAt)
    {
        private readonly TaskCompletionSource<string?> _tcs = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public string Key { get; } = key;

        public int Priority { get; set; } = priority;

        public long EnqueuedAt { get; } = enqueuedAt;

        public LinkedListNode<Waiter>? Node { get; set; }

        public Task<string?> Task => _tcs.Task;

        /// <summary>null: admitted; otherwise the refusal reason.</summary>
        public void Complete(string? reason) => _tcs.TrySetResult(reason);
    }

    /// <summary>One priority class: a FIFO queue per key, keys served in turn.</summary>
    private sealed class ClassQueue
    {
        private readonly Dictionary<string, LinkedList<Waiter>> _byKey = new(StringComparer.Ordinal);
        private readonly LinkedList<string> _turns = new();
        private readonly LinkedList<Waiter> _arrival = new(); // for "newest" eviction

        public int Count => _arrival.Count;

        public void Enqueue(Waiter w)
        {
            if (!_byKey.TryGetValue(w.Key, out var list))
            {
                list = new LinkedList<Waiter>();
                _byKey[w.Key] = list;
                _turns.AddLast(w.Key);
            }

            list.AddLast(w);
            w.Node = _arrival.AddLast(w);
        }

        public bool TryDequeue(out Waiter waiter)
        {
            waiter = null!;
            if (_turns.First is not { } turn)
            {
                return false;
            }

            var key = turn.Value;
            var list = _byKey[key];
            waiter = list.First!.Value;
            list.RemoveFirst();
            _arrival.Remove(waiter.Node!);
            _turns.RemoveFirst();
            if (list.Count > 0)
            {
                _turns.AddLast(key); // the key waits for its next turn behind the others
            }
            else
            {
                _byKey.Remove(key);
            }

            return true;
        }

        public bool TryRemoveNewest(out Waiter waiter)
        {
            waiter = null!;
            if (_arrival.Last is not { } last)
            {
                return false;
            }

            waiter = last.Value;
            return Remove(waiter);
        }

        public bool Remove(Waiter w)
        {
            if (!_byKey.TryGetValue(w.Key, out var list) || !list.Remove(w))
            {
                return false;
            }

            _arrival.Remove(w.Node!);
            if (list.Count == 0)
            {
                _byKey.Remove(w.Key);
                _turns.Remove(w.Key);
            }

            return true;
        }

        public List<Waiter> DrainAll()
        {
            var all = _arrival.ToList();
            _byKey.Clear();
            _turns.Clear();
            _arrival.Clear();
            return all;
        }
    }
}
