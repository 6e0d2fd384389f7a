using Contracts.Wire;
namespace Gateway.Shaping.Admission;

/// <summary>
/// Admission to one cluster: at most <c>limit</c> requests in flight (fixed, or <see cref="AdaptiveLimit"/>), and a bounded
/// wait queue with priority classes (bands).
/// <list type="bullet">
/// <item>Bands are served strictly by priority, with aging: a waiter of a less urgent band that has waited
/// <see cref="AdmissionOptions.MaxStarvation"/> is served at the next free slot before any other (the oldest such waiter
/// first), so a low band is never starved for longer than that bound plus the time to the next departure.</item>
/// <item>Within a band the keys (tenants, else client keys) share the cluster in proportion to their weights, counted in
/// tokens served, not requests: the Virtual Token Counter (VTC) of Y. Sheng, S. Cao, D. Li, B. Zhu, Z. Li, D. Zhuo,
/// J. E. Gonzalez and I. Stoica, "Fairness in Serving Large Language Models", OSDI 2024 (Algorithm 2). Each key has a
/// counter of the weighted service it received, (input tokens x w_in + output tokens x w_out) / weight; a free slot goes
/// to the backlogged key with the smallest counter (ties, which the paper leaves open: the key with fewer requests in
/// flight, then with fewer waiting, so a key just lifted to the floor goes before the backlog it was lifted to); a key that becomes backlogged is lifted to the smallest counter of the backlogged keys (to the counter of the
/// last key that left the backlog when none is; a request admitted at once leaves at once), so idle time is not banked
/// as credit. A request is charged its prompt tokens when it is admitted, and its output tokens as they stream to the
/// client (<see cref="AdmissionLease.Generated"/>, from the usage meter), as the paper charges them as they are
/// generated; when it completes the charge is corrected to the output the backend reported
/// (<see cref="AdmissionLease.ReportOutputTokens"/>). (Charging all the output at completion was tried first and measured
/// unfair: a key lifted to the floor on arrival was then charged again for requests it had in flight before, and a
/// light tenant got 27% of the tokens, not 50%. <see cref="AdmissionRequest.PredictedOutputTokens"/> can charge a
/// prediction up front instead, the paper's "VTC with length prediction"; the gateway passes none.)</item>
/// <item>When the queue is full a newcomer evicts the most recent waiter of a less urgent band (<c>evicted</c>), else, in
/// its own band, the most recent waiter of the key with the longest queue if that key has more waiters than the newcomer's
/// (longest-queue drop: one key's backlog cannot shut the others out), or is refused (<c>queue_full</c>); a waiter leaves with <c>queue_timeout</c> after the queue timeout, and a newcomer that
/// could not start within it at the rate the queue is served is refused at once. Refusals answer at once; nothing here
/// waits on the backend.</item>
/// <item>Headroom (<see cref="AdmissionOptions.FairShareHeadroom"/>, off by default): the last H slots of the limit go only
/// to keys under their fair share, so a light tenant's request finds a slot free at saturation instead of waiting for a
/// departure and then for its turn (no work-conserving order can spare it that without preempting a request in flight,
/// which a gateway cannot). Under its share means: served fewer weighted tokens, while others waited, than its weight's
/// part (a decaying sum over <see cref="AdmissionOptions.FairShareWindow"/>; such keys go first), or holding fewer slots
/// than its weight's part of the limit, among the keys active within that window. A key alone is never over its share,
/// so a single tenant loses nothing; aging keeps its bound (an aged waiter takes a headroom slot too).</item>
/// </list>
/// One lock per cluster; a decision costs O(keys backlogged in the band) at worst, O(keys known) in the headroom zone.
/// </summary>
internal sealed class AdmissionController
{
    private readonly Lock _lock = new();
    private readonly TimeProvider _time;
    private AdmissionSettings _settings;
    private AdaptiveLimit? _adaptive;
    private Band[] _bands;
    private int _inFlight;
    private int _queued;
    private ITimer? _recheck; // the headroom's look again when only time moves the shares (ArmRecheck)
    private long _recheckDue;
    private double _recentTotal; // the headroom's recent service of all keys (weighted tokens, decaying), as of _recentTotalAt
    private long _recentTotalAt;
    private long _aged;

    // Departures (requests leaving, which frees their permit) in the last second, in four 250 ms buckets: the rate at
    // which the queue is served, used to refuse at once a request that could not start within the queue timeout.
    private readonly long[] _departures = new long[4];
    private long _departureBucket;

    public AdmissionController(string clusterId, AdmissionSettings settings, TimeProvider time)
    {
        ClusterId = clusterId;
        _time = time;
        _settings = settings;
        _bands = [.. settings.Classes.Select(static _ => new Band())];
        _adaptive = settings.Options.Adaptive.Enabled ? new AdaptiveLimit(settings.Options.Adaptive, settings.Options.MaxInFlight) : null;
        KeepActiveKeys();
    }

    public string ClusterId { get; }

    public AdmissionSettings Settings => _settings;

    /// <summary>Requests in flight now.</summary>
    public int InFlight => Volatile.Read(ref _inFlight);

    /// <summary>Requests waiting now.</summary>
    public int Queued => Volatile.Read(ref _queued);

    /// <summary>Waiters served ahead of a more urgent band because they had waited <see cref="AdmissionOptions.MaxStarvation"/> (since start).</summary>
    public long Aged => Interlocked.Read(ref _aged);

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

    /// <summary>
    /// Slots free while requests wait: held back by <see cref="AdmissionOptions.FairShareHeadroom"/> from the waiters over
    /// their fair share (0 without headroom, where a free slot never coexists with a waiter).
    /// </summary>
    public int HeldBack
    {
        get
        {
            lock (_lock)
            {
                return _queued > 0 ? Math.Max(0, CurrentLimit - _inFlight) : 0;
            }
        }
    }

    private int CurrentLimit => _adaptive is null ? _settings.Options.MaxInFlight : Math.Max(1, (int)_adaptive.Limit);

    /// <summary>
    /// The virtual token counter of <paramref name="key"/> in band <paramref name="priority"/> (weighted tokens served /
    /// weight), or null when the band does not know the key; for tests and diagnostics.
    /// </summary>
    public double? CounterOf(string key, int priority)
    {
        lock (_lock)
        {
            return priority >= 0 && priority < _bands.Length && _bands[priority].TryGetFlow(key, out var flow) ? flow.Counter : null;
        }
    }

    /// <summary>
    /// The waiters and the requests in flight of <paramref name="key"/> in band <paramref name="priority"/> (0, 0 when the
    /// band does not know the key); for tests and diagnostics.
    /// </summary>
    public (int Waiting, int InFlight) FlowOf(string key, int priority)
    {
        lock (_lock)
        {
            return priority >= 0 && priority < _bands.Length && _bands[priority].TryGetFlow(key, out var flow) ? (flow.Queue.Count, flow.InFlight) : (0, 0);
        }
    }

    /// <summary>Applies new settings (a configuration reload) without losing the requests in flight or waiting.</summary>
    public void Update(AdmissionSettings settings)
    {
        lock (_lock)
        {
            var adaptiveChanged = settings.Options.Adaptive.Enabled != _settings.Options.Adaptive.Enabled
                || settings.Options.MaxInFlight != _settings.Options.MaxInFlight;
            if (!settings.Classes.SequenceEqual(_settings.Classes, StringComparer.OrdinalIgnoreCase))
            {
                // Re-home the keys and their waiters by class name; classes that no longer exist go to the default class.
                // The keys' flows move with them (counters, requests in flight, the headroom's activity and recent
                // service), so a reload neither resets the fair share nor hides the requests in flight from the headroom
                // (kubernetes/enhancements#1098); requests in flight release their flow as before. Two old classes merged
                // into one keep the first flow of a key; the other's requests in flight then count in no band (until they end).
                var next = settings.Classes.Select(static _ => new Band()).ToArray();
                var waiters = new List<(Waiter Waiter, int Target)>();
                for (var i = 0; i < _bands.Length; i++)
                {
                    var target = settings.ClassIndex(_settings.Classes[i]) ?? settings.DefaultClass;
                    foreach (var waiter in _bands[i].DrainAll())
                    {
                        waiters.Add((waiter, target));
                    }

                    foreach (var flow in _bands[i].Flows)
                    {
                        next[target].Adopt(flow);
                    }
                }

                foreach (var (waiter, target) in waiters)
                {
                    waiter.Priority = target;
                    next[target].Enqueue(waiter);
                }

                _bands = next;
            }

            _settings = settings;
            if (adaptiveChanged || (settings.Options.Adaptive.Enabled && _adaptive is null))
            {
                _adaptive = settings.Options.Adaptive.Enabled ? new AdaptiveLimit(settings.Options.Adaptive, settings.Options.MaxInFlight) : null;
            }

            KeepActiveKeys();
            GrantWaiting();
        }
    }

    /// <summary>
    /// With headroom on, idle keys are remembered for <see cref="AdmissionOptions.FairShareWindow"/> after their latest
    /// request (they count towards the shares); otherwise an idle key at the lift floor is forgotten at once.
    /// </summary>
    private void KeepActiveKeys()
    {
        var keep = _settings.Options.FairShareHeadroom > 0 ? WindowTicks : -1;
        foreach (var band in _bands)
        {
            band.KeepTicks = keep;
        }
    }

    /// <summary>Waits for a permit for a request of <paramref name="key"/> in class <paramref name="priority"/>, weight 1, no token charge.</summary>
    public ValueTask<AdmissionResult> EnterAsync(string key, int priority, CancellationToken cancellationToken) =>
        EnterAsync(new AdmissionRequest(key, priority), cancellationToken);

    /// <summary>
    /// Waits for a permit. The result says admitted (dispose the lease when the exchange ends, after reporting its output
    /// tokens) or why not (<c>queue_full</c>, <c>queue_timeout</c>, <c>evicted</c>, <c>cancelled</c>).
    /// </summary>
    /// <param name="request">The fair-share key, class, weight and prompt tokens of the request.</param>
    /// <param name="cancellationToken">The client's abort: a waiter that goes away leaves the queue (<c>cancelled</c>).</param>
    public async ValueTask<AdmissionResult> EnterAsync(AdmissionRequest request, CancellationToken cancellationToken)
    {
        var priority = Math.Clamp(request.Priority, 0, _bands.Length - 1);
        var weight = request.Weight > 0 && double.IsFinite(request.Weight) ? request.Weight : 1.0;
        var input = Math.Max(0, request.InputTokens);
        var predicted = Math.Max(0, request.PredictedOutputTokens);
        Waiter waiter;
        TimeSpan timeout;
        lock (_lock)
        {
            priority = Math.Min(priority, _bands.Length - 1);
            var now = _time.GetTimestamp();
            if (_queued > 0 && _inFlight < CurrentLimit)
            {
                // Slots free while requests wait: the headroom holds them back from the waiters over their share. Shares
                // move (a key's window ends, requests end): grant what is now allowed before judging the newcomer.
                GrantWaiting();
            }

            if (_inFlight < CurrentLimit)
            {
                // A free slot, and nobody waits who may take it (every waiter left is over its share of the headroom):
                // admitted at once when it may take it itself, and charged like any other (its service counts against its share).
                var band = _bands[priority];
                var flow = band.Arrive(request.Key, weight, now);
                if (!InHeadroom || (!WaitingAbove(priority) && MayTakeHeadroom(flow, priority, now)))
                {
                    var cost = Cost(input, predicted);
                    Band.Dispatch(flow, cost);
                    Served(flow, cost, now);
                    band.ServedAtOnce(flow);
                    _inFlight++;
                    return AdmissionResult.Admitted(NewLease(band, flow, predicted), TimeSpan.Zero);
                }
            }

            var settings = _settings;
            if (_queued >= settings.Options.QueueLimit && !EvictLessUrgentThan(priority) && !_bands[priority].TryEvictForFairness(request.Key, out _queued, _queued))
            {
                return AdmissionResult.Refused(GatewayErrorCodes.QueueFull, RetryAfter());
            }

            // Refuse now what would wait in vain: at the rate the queue is being served, the requests that would start
            // before this one (more urgent classes, and its fair turn in its own) would take longer than the queue timeout.
            var rate = DepartureRate();
            if (rate > 0 && StartEstimate(priority, request.Key, weight, rate) > settings.Options.QueueTimeout.TotalSeconds)
            {
                return AdmissionResult.Refused(GatewayErrorCodes.QueueTimeout, RetryAfter());
            }

            waiter = new Waiter(request.Key, weight, input, predicted, priority, now);
            _bands[priority].Enqueue(waiter);
            _queued++;
            timeout = settings.Options.QueueTimeout;
        }

        Grant? grant;
        try
        {
            grant = await waiter.Task.WaitAsync(timeout, _time, cancellationToken);
        }
        catch (Exception ex) when (ex is TimeoutException or OperationCanceledException)
        {
            lock (_lock)
            {
                if (waiter.Priority < _bands.Length && _bands[waiter.Priority].Remove(waiter))
                {
                    _queued--;
                    return AdmissionResult.Refused(ex is TimeoutException ? GatewayErrorCodes.QueueTimeout : "cancelled", RetryAfter());
                }
            }

            // Granted (or evicted) while timing out: take what was decided.
            grant = await waiter.Task;
        }

        // The queue's own wait: from joining it to the grant (not the thread pool's delay in resuming this method, which a
        // loaded machine adds to every request's latency alike and which is not the scheduler's).
        var waited = _time.GetElapsedTime(waiter.EnqueuedAt, grant.GrantedAt > 0 ? grant.GrantedAt : _time.GetTimestamp());
        if (grant.Reason is not null)
        {
            return AdmissionResult.Refused(grant.Reason, RetryAfter());
        }

        return AdmissionResult.Admitted(grant.Lease!, waited, grant.Aged);
    }

    /// <summary>
    /// Called by the lease: one request left, with its latency to the first response byte (or null if none), and the
    /// output tokens it generated, charged to its key's counter.
    /// </summary>
    /// <param name="firstByteMs">Latency to the first response byte, or null.</param>
    /// <param name="admittedCalibrating">Whether the adaptive limit was calibrating when it was admitted.</param>
    /// <param name="epoch">The adaptive limit's epoch at admission.</param>
    /// <param name="band">The band it was admitted in.</param>
    /// <param name="flow">Its key's flow in that band.</param>
    /// <param name="outputTokens">The output tokens it generated; negative when unknown (the prediction stands).</param>
    /// <param name="predictedOutputTokens">The output tokens charged so far (predicted at admission, plus streamed).</param>
    internal void Exit(double? firstByteMs, bool admittedCalibrating, int epoch, object? band, object? flow, long outputTokens, long predictedOutputTokens)
    {
        lock (_lock)
        {
            _inFlight--;
            if (band is Band b && flow is Flow f)
            {
                // Reconcile what was charged (a prediction, and the tokens as they streamed) with what it generated.
                var correction = outputTokens < 0 ? 0 : (outputTokens - predictedOutputTokens) * _settings.Options.OutputTokenWeight;
                var now = _time.GetTimestamp();
                b.Complete(f, correction, now);
                Served(f, correction, now);
            }

            _departures[CurrentBucket() % _departures.Length]++;
            if (firstByteMs is { } ms)
            {
                _adaptive?.Sample(ms, _inFlight + 1, _time.GetTimestamp() * 1000.0 / _time.TimestampFrequency, admittedCalibrating, epoch);
            }

            GrantWaiting();
        }
    }

    /// <summary>Charges output tokens of a request in flight to its key's counter as they are generated.</summary>
    internal void ChargeOutput(object? band, object? flow, int tokens)
    {
        if (band is Band b && flow is Flow f)
        {
            lock (_lock)
            {
                Band.Charge(f, tokens * _settings.Options.OutputTokenWeight);
                Served(f, tokens * _settings.Options.OutputTokenWeight, _time.GetTimestamp());
            }
        }
    }

    /// <summary>A lease for a request admitted now (call under the lock).</summary>
    private AdmissionLease NewLease(Band band, Flow flow, long predicted) => new(this, _time, _adaptive?.Calibrating ?? false, _adaptive?.Epoch ?? 0, band, flow, predicted);

    /// <summary>The weighted charge at admission: input tokens x w_in + predicted output tokens x w_out (call under the lock).</summary>
    private double Cost(long input, long predictedOutput) => (input * _settings.Options.InputTokenWeight) + (predictedOutput * _settings.Options.OutputTokenWeight);

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

    /// <summary>
    /// About how long a newcomer would wait, in seconds, at <paramref name="rate"/> departures a second (call under the
    /// lock): its turn behind the waiters ahead of it (<see cref="Ahead"/>), or, in a class less urgent than one with
    /// waiters, when aging would serve it: the aging bound, then one departure for each waiter of the less urgent
    /// classes (older, so aged first) and its own. Without the second a low-class newcomer behind a busy class was
    /// refused at once though aging would have served it within the bound (stranger review).
    /// </summary>
    private double StartEstimate(int priority, string key, double weight, double rate)
    {
        var turn = (Ahead(priority, key, weight) + 1) / rate;
        var first = FirstWaitingBand();
        if (_settings.Options.EffectiveMaxStarvation is not { } bound || first < 0 || priority <= first)
        {
            return turn;
        }

        var older = 0;
        for (var i = first + 1; i < _bands.Length; i++)
        {
            older += _bands[i].Count;
        }

        return Math.Min(turn, bound.TotalSeconds + ((older + 1) / rate));
    }

    /// <summary>
    /// Waiters that would be served before a newcomer of <paramref name="key"/> in <paramref name="priority"/> (call under
    /// the lock): every waiter of a more urgent class, and of its own class about its fair turn (its key's waiters and
    /// the others' weighted share of as many; never more than the class holds). A light key is not refused for a heavy
    /// key's backlog that the fair share would not serve first.
    /// </summary>
    private double Ahead(int priority, string key, double weight)
    {
        double ahead = 0;
        for (var i = 0; i < priority && i < _bands.Length; i++)
        {
            ahead += _bands[i].Count;
        }

        return ahead + _bands[priority].FairAhead(key, weight);
    }

    private void GrantWaiting()
    {
        GrantWaitingNow();
        if (_settings.Options.FairShareHeadroom > 0 && _queued > 0 && _inFlight < CurrentLimit)
        {
            ArmRecheck();
        }
    }

    /// <summary>
    /// Slots are held back while requests wait: the shares that hold them move with time alone (a key's activity window
    /// ends, recent service decays), so look again then even if nothing arrives or leaves (golang/go#37852: a waiter must
    /// not sit out its timeout beside a free slot). At the next end of a key's window, at most a quarter of the window
    /// away (call under the lock).
    /// </summary>
    private void ArmRecheck()
    {
        var now = _time.GetTimestamp();
        var window = WindowTicks;
        var due = now + Math.Max(1, window / 4);
        var since = now - window;
        foreach (var band in _bands)
        {
            foreach (var flow in band.Flows)
            {
                if (flow.Idle && flow.LastArrival >= since)
                {
                    due = Math.Min(due, flow.LastArrival + window + 1);
                }
            }
        }

        if (_settings.Options.EffectiveMaxStarvation is { } bound && FirstWaitingBand() is var first and >= 0)
        {
            // A less urgent waiter that reaches the aging bound while slots are held takes one then, not at the next event.
            var boundTicks = (long)(bound.TotalSeconds * _time.TimestampFrequency);
            for (var i = first + 1; i < _bands.Length; i++)
            {
                if (_bands[i].Oldest is { } w)
                {
                    due = Math.Min(due, w.EnqueuedAt + boundTicks + 1);
                }
            }
        }

        if (_recheckDue > now && _recheckDue <= due)
        {
            return; // armed already, as early
        }

        _recheckDue = due;
        var delay = TimeSpan.FromSeconds(Math.Max(0.001, (due - now) / (double)_time.TimestampFrequency));
        _recheck ??= _time.CreateTimer(static state => ((AdmissionController)state!).Recheck(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        _recheck.Change(delay, Timeout.InfiniteTimeSpan);
    }

    private void Recheck()
    {
        lock (_lock)
        {
            _recheckDue = 0;
            GrantWaiting();
        }
    }

    private void GrantWaitingNow()
    {
        while (_queued > 0 && _inFlight < CurrentLimit)
        {
            if ((InHeadroom ? DequeueUnderShare() : DequeueNext()) is not { } next)
            {
                break;
            }

            var (waiter, band, flow, aged) = next;
            _queued--;
            _inFlight++;
            var cost = Cost(waiter.InputTokens, waiter.PredictedOutputTokens);
            Band.Dispatch(flow, cost);
            Served(flow, cost, _time.GetTimestamp());
            if (aged)
            {
                _aged++;
            }

            if (!waiter.Complete(new Grant(NewLease(band, flow, waiter.PredictedOutputTokens), null, aged, _time.GetTimestamp())))
            {
                // Cannot happen (a waiter leaves the queue under the lock before it completes otherwise); never leak the slot.
                _inFlight--;
            }
        }
    }

    /// <summary>The next waiter to serve (call under the lock): an aged waiter of a less urgent band, else the fair choice of the most urgent band.</summary>
    private (Waiter Waiter, Band Band, Flow Flow, bool Aged)? DequeueNext()
    {
        var first = FirstWaitingBand();
        if (first < 0)
        {
            return null;
        }

        if (DequeueAged(first) is { } aged)
        {
            return aged;
        }

        var band = _bands[first];
        var next = band.DequeueFair(out var chosen);
        return (next, band, chosen, false);
    }

    /// <summary>The most urgent band with waiters, or -1 (call under the lock).</summary>
    private int FirstWaitingBand()
    {
        for (var i = 0; i < _bands.Length; i++)
        {
            if (_bands[i].Count > 0)
            {
                return i;
            }
        }

        return -1;
    }

    /// <summary>
    /// Aging (call under the lock): the oldest waiter of a band less urgent than <paramref name="first"/> that has waited
    /// <see cref="AdmissionOptions.EffectiveMaxStarvation"/>, taken out of its band; null when none has.
    /// </summary>
    private (Waiter Waiter, Band Band, Flow Flow, bool Aged)? DequeueAged(int first)
    {
        if (_settings.Options.EffectiveMaxStarvation is not { } bound)
        {
            return null;
        }

        var limit = _time.GetTimestamp() - (long)(bound.TotalSeconds * _time.TimestampFrequency);
        Band? agedBand = null;
        Waiter? oldest = null;
        for (var i = first + 1; i < _bands.Length; i++)
        {
            if (_bands[i].Oldest is { } w && w.EnqueuedAt <= limit && (oldest is null || w.EnqueuedAt < oldest.EnqueuedAt))
            {
                oldest = w;
                agedBand = _bands[i];
            }
        }

        if (oldest is null)
        {
            return null;
        }

        var flow = oldest.Flow!;
        agedBand!.Remove(oldest);
        return (oldest, agedBand, flow, true);
    }

    /// <summary>
    /// Whether the next slot is one of the headroom's (<see cref="AdmissionOptions.FairShareHeadroom"/>): only keys
    /// below their fair share may take it (call under the lock). At most the limit - 1 is held back.
    /// </summary>
    private bool InHeadroom
    {
        get
        {
            var limit = CurrentLimit;
            var headroom = Math.Min(_settings.Options.FairShareHeadroom, limit - 1);
            return headroom > 0 && _inFlight >= limit - headroom;
        }
    }

    /// <summary>
    /// The summed weights of the distinct keys active now in band <paramref name="band"/> and the more urgent ones (call
    /// under the lock): with requests in flight or waiting, or whose latest request arrived within
    /// <see cref="AdmissionOptions.FairShareWindow"/>. A key is counted once however many classes it uses (litellm#18953:
    /// a key alone is never held back), and a less urgent class's keys do not shrink a more urgent key's share: the
    /// headroom never overrides priority (vllm#24365).
    /// </summary>
    private double ActiveWeight(int band, long now)
    {
        var since = ActiveSince(now);
        double total = 0;
        for (var i = 0; i <= band && i < _bands.Length; i++)
        {
            foreach (var flow in _bands[i].Flows)
            {
                if (Active(flow, since) && !ActiveInEarlierBand(flow.Key, i, since))
                {
                    total += flow.Weight;
                }
            }
        }

        return total;
    }

    private static bool Active(Flow flow, long since) => !flow.Idle || flow.LastArrival >= since;

    /// <summary>Whether <paramref name="key"/> is active in a band before <paramref name="band"/> (so already counted).</summary>
    private bool ActiveInEarlierBand(string key, int band, long since)
    {
        for (var j = 0; j < band; j++)
        {
            if (_bands[j].TryGetFlow(key, out var other) && Active(other, since))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>Whether a band more urgent than <paramref name="priority"/> has waiters (call under the lock).</summary>
    private bool WaitingAbove(int priority)
    {
        for (var i = 0; i < priority && i < _bands.Length; i++)
        {
            if (_bands[i].Count > 0)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>
    /// Whether <paramref name="flow"/>'s key has fewer requests in flight (in every band) than its fair share of the
    /// limit, limit x weight / <paramref name="activeWeight"/>, or is alone among the active keys (call under the lock).
    /// </summary>
    private bool UnderSlotShare(Flow flow, double activeWeight)
    {
        if (activeWeight <= flow.Weight * 1.000001)
        {
            return true; // alone: its share is the whole limit
        }

        var inFlight = 0;
        foreach (var b in _bands)
        {
            if (b.TryGetFlow(flow.Key, out var f))
            {
                inFlight += f.InFlight;
            }
        }

        return inFlight < CurrentLimit * flow.Weight / activeWeight;
    }

    /// <summary>
    /// Records <paramref name="weightedTokens"/> of service to <paramref name="flow"/> in the headroom's measure of recent
    /// service (call under the lock): an exponentially decaying sum (time constant <see cref="AdmissionOptions.FairShareWindow"/>)
    /// per key and over all keys, of the service given while requests waited. Unlike the virtual token counter it is
    /// never lifted, so it remembers that a light tenant took less than its share; and service taken while nobody
    /// waited is nobody's loss, so a tenant that had the cluster to itself is not held to it when a heavy one arrives.
    /// Kept only with headroom on.
    /// </summary>
    private void Served(Flow flow, double weightedTokens, long now)
    {
        if (_settings.Options.FairShareHeadroom <= 0 || weightedTokens == 0 || _queued == 0)
        {
            return; // only service while others wait counts: what a key takes when nobody else wants it is no one's loss
        }

        flow.Recent = Math.Max(0, Decayed(flow.Recent, flow.RecentAt, now) + weightedTokens);
        flow.RecentAt = now;
        _recentTotal = Math.Max(0, Decayed(_recentTotal, _recentTotalAt, now) + weightedTokens);
        _recentTotalAt = now;
    }

    /// <summary><paramref name="value"/> as of <paramref name="at"/>, decayed to <paramref name="now"/>: value x e^(-dt / window).</summary>
    private double Decayed(double value, long at, long now)
    {
        if (value == 0 || now <= at)
        {
            return value;
        }

        var seconds = (now - at) / (double)_time.TimestampFrequency;
        return value * Math.Exp(-seconds / _settings.Options.FairShareWindow.TotalSeconds);
    }

    /// <summary>
    /// Whether <paramref name="flow"/>'s key was served less of late, while others waited, than its weight's part of what
    /// every key was (call under the lock): recent_k &lt; recent_all x w_k / <paramref name="activeWeight"/>, both
    /// decaying with time constant <see cref="AdmissionOptions.FairShareWindow"/> (<see cref="Served"/>).
    /// </summary>
    private bool UnderTokenShare(Flow flow, double activeWeight, long now)
    {
        double recent = 0;
        foreach (var b in _bands)
        {
            if (b.TryGetFlow(flow.Key, out var f))
            {
                recent += Decayed(f.Recent, f.RecentAt, now);
            }
        }

        return recent < Decayed(_recentTotal, _recentTotalAt, now) * flow.Weight / activeWeight;
    }

    /// <summary>Whether a newcomer of <paramref name="flow"/>'s key in band <paramref name="band"/> may take a slot of the headroom: under its token or its slot share.</summary>
    private bool MayTakeHeadroom(Flow flow, int band, long now)
    {
        var activeWeight = ActiveWeight(band, now);
        return UnderTokenShare(flow, activeWeight, now) || UnderSlotShare(flow, activeWeight);
    }

    /// <summary>The timestamp after which a key's latest request makes it active (<see cref="AdmissionOptions.FairShareWindow"/>).</summary>
    private long ActiveSince(long now) => now - WindowTicks;

    /// <summary><see cref="AdmissionOptions.FairShareWindow"/> in <see cref="TimeProvider"/> ticks.</summary>
    private long WindowTicks => (long)(_settings.Options.FairShareWindow.TotalSeconds * _time.TimestampFrequency);

    /// <summary>
    /// The next waiter to serve in the headroom (call under the lock), or null when no waiter may take it. Only the most
    /// urgent class with waiters is considered (the headroom never overrides priority: a slot held back from a more
    /// urgent key over its share is not given to a less urgent one). In it, first the keys served less than their share
    /// of the tokens while others waited (<see cref="UnderTokenShare"/>: a light tenant, even while its own burst holds
    /// more than its share of the slots), then the keys holding fewer slots than their share (<see cref="UnderSlotShare"/>:
    /// a key that just started sending); in each tier the fair choice (the virtual token counter). Before all that, aging: a
    /// waiter of a less urgent class that has waited <see cref="AdmissionOptions.MaxStarvation"/> goes first, as below it.
    /// </summary>
    private (Waiter Waiter, Band Band, Flow Flow, bool Aged)? DequeueUnderShare()
    {
        // Aging keeps its bound in the headroom too: at saturation every departure leaves the cap in the headroom, so
        // without this a less urgent class behind a busy more urgent one would never age in (stranger review, with
        // volcano#748 and kube-batch#847 as the pattern: a reserve that starves a low band).
        var first = FirstWaitingBand();
        if (first < 0)
        {
            return null;
        }

        if (DequeueAged(first) is { } aged)
        {
            return aged;
        }

        var now = _time.GetTimestamp();
        var band = _bands[first];
        var activeWeight = ActiveWeight(first, now);
        return DequeueEligible(band, tokens: true, activeWeight, now) ?? DequeueEligible(band, tokens: false, activeWeight, now);
    }

    /// <summary>The fair choice among the waiting keys of <paramref name="band"/> under their token (else slot) share, or null.</summary>
    private (Waiter Waiter, Band Band, Flow Flow, bool Aged)? DequeueEligible(Band band, bool tokens, double activeWeight, long now)
    {
        var any = false;
        foreach (var flow in band.Backlog)
        {
            flow.Eligible = tokens ? UnderTokenShare(flow, activeWeight, now) : UnderSlotShare(flow, activeWeight);
            any |= flow.Eligible;
        }

        if (!any)
        {
            return null;
        }

        var next = band.DequeueFair(out var chosen, eligibleOnly: true);
        return (next, band, chosen, false);
    }

    private bool EvictLessUrgentThan(int priority)
    {
        for (var i = _bands.Length - 1; i > priority; i--)
        {
            if (_bands[i].TryRemoveNewest(out var victim))
            {
                _queued--;
                victim.Complete(new Grant(null, GatewayErrorCodes.Evicted, false));
                return true;
            }
        }

        return false;
    }

    private TimeSpan RetryAfter() => _settings.Options.QueueTimeout > TimeSpan.FromSeconds(1) ? _settings.Options.QueueTimeout : TimeSpan.FromSeconds(1);

    /// <summary>What a waiter got: a lease (granted at <paramref name="GrantedAt"/>, a <see cref="TimeProvider"/> timestamp; 0 when refused), or the refusal reason.</summary>
    private sealed record Grant(AdmissionLease? Lease, string? Reason, bool Aged, long GrantedAt = 0);

    /// <summary>A queued request.</summary>
    private sealed class Waiter(string key, double weight, long inputTokens, long predictedOutputTokens, int priority, long enqueuedAt)
    {
        private readonly TaskCompletionSource<Grant> _tcs = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public string Key { get; } = key;

        public double Weight { get; } = weight;

        /// <summary>Prompt tokens, charged when admitted.</summary>
        public long InputTokens { get; } = inputTokens;

        /// <summary>Output tokens predicted (max_tokens), charged when admitted and reconciled when it completes.</summary>
        public long PredictedOutputTokens { get; } = predictedOutputTokens;

        public int Priority { get; set; } = priority;

        public long EnqueuedAt { get; } = enqueuedAt;

        /// <summary>The waiter's node in its band's arrival order.</summary>
        public LinkedListNode<Waiter>? Node { get; set; }

        /// <summary>The key's flow in the waiter's band, and the waiter's node in the flow's queue.</summary>
        public Flow? Flow { get; set; }

        public LinkedListNode<Waiter>? FlowNode { get; set; }

        public Task<Grant> Task => _tcs.Task;

        public bool Complete(Grant grant) => _tcs.TrySetResult(grant);
    }

    /// <summary>One key (tenant or client key) in one band: its virtual token counter, its waiters, its requests in flight.</summary>
    private sealed class Flow(string key)
    {
        public string Key { get; } = key;

        /// <summary>The key's weight (its latest request's).</summary>
        public double Weight { get; set; } = 1.0;

        /// <summary>Weighted tokens served / weight (VTC's c_u).</summary>
        public double Counter { get; set; }

        public LinkedList<Waiter> Queue { get; } = new();

        public int InFlight { get; set; }

        /// <summary>Index in the band's backlog list, or -1 when the key has no waiter.</summary>
        public int BacklogIndex { get; set; } = -1;

        public bool Idle => InFlight == 0 && Queue.Count == 0;

        /// <summary>When its latest request arrived (a <see cref="TimeProvider"/> timestamp): the headroom's activity window.</summary>
        public long LastArrival { get; set; }

        /// <summary>Its recent service, for the headroom (weighted tokens, decaying over the window), as of <see cref="RecentAt"/>.</summary>
        public double Recent { get; set; }

        public long RecentAt { get; set; }

        /// <summary>Scratch for the headroom's choice: whether the key is under its fair share (set just before the choice).</summary>
        public bool Eligible { get; set; }
    }

    /// <summary>One priority class: the keys' flows, the backlogged ones, and every waiter in arrival order.</summary>
    private sealed class Band
    {
        /// <summary>Idle flows kept (with their counters) beyond this many are swept when no longer above the lift floor.</summary>
        private const int IdleSweep = 1024;

        private readonly Dictionary<string, Flow> _flows = new(StringComparer.Ordinal);
        private readonly List<Flow> _backlog = [];
        private readonly LinkedList<Waiter> _arrival = new(); // oldest first: aging and "newest" eviction
        private Flow? _lastLeft; // the last key that left the backlog (VTC: its counter is the lift when none is backlogged)

        public int Count => _arrival.Count;

        public Waiter? Oldest => _arrival.First?.Value;

        public bool TryGetFlow(string key, out Flow flow) => _flows.TryGetValue(key, out flow!);

        /// <summary>Every flow the band knows (idle ones with their counters too).</summary>
        public Dictionary<string, Flow>.ValueCollection Flows => _flows.Values;

        /// <summary>The flows with waiters.</summary>
        public List<Flow> Backlog => _backlog;

        /// <summary>A request of <paramref name="key"/> arrives: its flow, lifted to the floor if it was not backlogged.</summary>
        public Flow Arrive(string key, double weight, long now)
        {
            if (!_flows.TryGetValue(key, out var flow))
            {
                if (_flows.Count >= IdleSweep)
                {
                    Sweep(now);
                }

                flow = new Flow(key);
                _flows[key] = flow;
            }

            flow.Weight = weight;
            flow.LastArrival = now;
            if (flow.BacklogIndex < 0)
            {
                // VTC: a key that becomes backlogged starts no lower than the least-served backlogged key (idle time is
                // not banked as credit).
                flow.Counter = Math.Max(flow.Counter, Floor());
            }

            return flow;
        }

        public void Enqueue(Waiter w)
        {
            var flow = Arrive(w.Key, w.Weight, w.EnqueuedAt);
            if (flow.BacklogIndex < 0)
            {
                flow.BacklogIndex = _backlog.Count;
                _backlog.Add(flow);
            }

            w.Flow = flow;
            w.FlowNode = flow.Queue.AddLast(w);
            w.Node = _arrival.AddLast(w);
        }

        /// <summary>
        /// Takes the first waiter of the backlogged key with the smallest counter (there is one: Count &gt; 0), among the
        /// keys marked <see cref="Flow.Eligible"/> when <paramref name="eligibleOnly"/> (one is).
        /// </summary>
        public Waiter DequeueFair(out Flow chosen, bool eligibleOnly = false)
        {
            chosen = null!;
            for (var i = 0; i < _backlog.Count; i++)
            {
                var f = _backlog[i];
                if (eligibleOnly && !f.Eligible)
                {
                    continue;
                }

                if (chosen is null || Before(f, chosen))
                {
                    chosen = f;
                }
            }

            var w = chosen.Queue.First!.Value;
            Remove(w);
            return w;
        }

        /// <summary>Whether <paramref name="a"/> is served before <paramref name="b"/>: the smaller counter, then fewer in flight, then fewer waiting.</summary>
        private static bool Before(Flow a, Flow b) =>
            a.Counter < b.Counter || (a.Counter == b.Counter && (a.InFlight < b.InFlight || (a.InFlight == b.InFlight && a.Queue.Count < b.Queue.Count)));

        /// <summary>Adds weighted tokens to a key's counter.</summary>
        public static void Charge(Flow flow, double weightedTokens) => flow.Counter += weightedTokens / flow.Weight;

        /// <summary>
        /// A request admitted at once (nobody waiting) passed through the queue in no time: its key is the last to have left
        /// it. Without this, a key served alone for a while would be held to that service against a newcomer lifted to 0.
        /// </summary>
        public void ServedAtOnce(Flow flow)
        {
            if (flow.BacklogIndex < 0)
            {
                _lastLeft = flow;
            }
        }

        /// <summary>Charges an admitted request's weighted input tokens to its key.</summary>
        public static void Dispatch(Flow flow, double weightedTokens)
        {
            flow.InFlight++;
            flow.Counter += weightedTokens / flow.Weight;
        }

        /// <summary>
        /// How long an idle key is remembered after its latest request, in <see cref="TimeProvider"/> ticks (the headroom's
        /// activity window); -1: not at all (forgotten as soon as it is idle at the lift floor).
        /// </summary>
        public long KeepTicks { get; set; } = -1;

        /// <summary>Corrects a finished request's charge by its weighted output tokens beyond (or short of) the prediction.</summary>
        public void Complete(Flow flow, double weightedTokens, long now)
        {
            flow.InFlight = Math.Max(0, flow.InFlight - 1);
            flow.Counter += weightedTokens / flow.Weight;
            if (flow.Idle && !Remembered(flow, now) && flow.Counter <= Floor() && _flows.TryGetValue(flow.Key, out var same) && ReferenceEquals(same, flow))
            {
                _flows.Remove(flow.Key); // it would be lifted to the floor anyway: nothing to remember
            }
        }

        /// <summary>Whether an idle flow is still within the headroom's activity window.</summary>
        private bool Remembered(Flow flow, long now) => KeepTicks >= 0 && now - flow.LastArrival <= KeepTicks;

        public bool Remove(Waiter w)
        {
            if (w.Flow is not { } flow || w.FlowNode is not { List: not null } node || !ReferenceEquals(node.List, flow.Queue))
            {
                return false;
            }

            flow.Queue.Remove(node);
            w.FlowNode = null;
            _arrival.Remove(w.Node!);
            if (flow.Queue.Count == 0)
            {
                // Leaves the backlog (swap-remove: O(1)).
                var last = _backlog[^1];
                _backlog[flow.BacklogIndex] = last;
                last.BacklogIndex = flow.BacklogIndex;
                _backlog.RemoveAt(_backlog.Count - 1);
                flow.BacklogIndex = -1;
                _lastLeft = flow;
            }

            return true;
        }

        /// <summary>About how many waiters of this band start before a newcomer of <paramref name="key"/> (see <c>Ahead</c>).</summary>
        public double FairAhead(string key, double weight)
        {
            var own = _flows.TryGetValue(key, out var flow) ? flow.Queue.Count : 0;
            var total = flow is { BacklogIndex: >= 0 } ? 0 : weight;
            foreach (var f in _backlog)
            {
                total += f.Weight;
            }

            return Math.Min(Count, ((own + 1) * total / weight) - 1); // the newcomer itself is not ahead of itself
        }

        /// <summary>
        /// The queue is full and nothing less urgent can go: a newcomer whose key has fewer waiters here than the key
        /// with the most evicts that key's newest waiter (longest-queue drop, as fair queueing does), so one key's
        /// backlog cannot shut the others out. Returns whether it did (<paramref name="queued"/> is decremented).
        /// </summary>
        public bool TryEvictForFairness(string key, out int queued, int current)
        {
            queued = current;
            var own = _flows.TryGetValue(key, out var mine) ? mine.Queue.Count : 0;
            Flow? longest = null;
            foreach (var f in _backlog)
            {
                if (longest is null || f.Queue.Count > longest.Queue.Count)
                {
                    longest = f;
                }
            }

            if (longest is null || longest.Queue.Count <= own + 1 || ReferenceEquals(longest, mine))
            {
                return false;
            }

            var victim = longest.Queue.Last!.Value;
            Remove(victim);
            queued = current - 1;
            victim.Complete(new Grant(null, GatewayErrorCodes.Evicted, false));
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

        public List<Waiter> DrainAll()
        {
            var all = _arrival.ToList();
            foreach (var w in all)
            {
                Remove(w);
            }

            return all;
        }

        /// <summary>The lift of a key becoming backlogged: the smallest backlogged counter, else the last to leave.</summary>
        private double Floor()
        {
            if (_backlog.Count == 0)
            {
                // Its counter now (output tokens charged since it left count too), as in the paper.
                return _lastLeft?.Counter ?? 0;
            }

            var min = double.MaxValue;
            foreach (var f in _backlog)
            {
                min = Math.Min(min, f.Counter);
            }

            return min;
        }

        /// <summary>Forgets idle keys whose counters the floor has caught up with (they would be lifted to it anyway).</summary>
        private void Sweep(long now)
        {
            var floor = Floor();
            List<string>? gone = null;
            foreach (var (key, flow) in _flows)
            {
                if (flow.Idle && flow.Counter <= floor && !Remembered(flow, now))
                {
                    (gone ??= []).Add(key);
                }
            }

            if (gone is null && _flows.Count >= IdleSweep * 4)
            {
                // Many idle keys still above the floor: forget the idle ones all the same (bounded memory over exact credit),
                // but not those the headroom still counts as active (a flood of one-shot client keys must not make it
                // forget every key at once: SignalR.E.A.C.H#76), unless even they are too many: then the oldest go
                // first, down to half the bound.
                List<Flow>? remembered = null;
                foreach (var (key, flow) in _flows)
                {
                    if (flow.Idle)
                    {
                        if (Remembered(flow, now))
                        {
                            (remembered ??= []).Add(flow);
                        }
                        else
                        {
                            (gone ??= []).Add(key);
                        }
                    }
                }

                var excess = _flows.Count - (gone?.Count ?? 0) - (IdleSweep * 2);
                if (remembered is not null && _flows.Count - (gone?.Count ?? 0) >= IdleSweep * 4 && excess > 0)
                {
                    remembered.Sort(static (a, b) => a.LastArrival.CompareTo(b.LastArrival));
                    foreach (var flow in remembered.Take(excess))
                    {
                        (gone ??= []).Add(flow.Key);
                    }
                }
            }

            foreach (var key in gone ?? [])
            {
                _flows.Remove(key);
            }
        }

        /// <summary>Takes over a flow of a band being replaced (a reload that changes the classes), unless the key already has one here.</summary>
        public void Adopt(Flow flow)
        {
            if (_flows.TryAdd(flow.Key, flow))
            {
                flow.BacklogIndex = -1; // its waiters are re-enqueued after
            }
        }
    }
}
