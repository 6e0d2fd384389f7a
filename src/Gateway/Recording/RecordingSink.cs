using System.Threading.Channels;
using Contracts.Recording;
using Gateway.Recording.Capture;
using Microsoft.Extensions.Options;
using Polly;
using Polly.Retry;

namespace Gateway.Recording;

/// <summary>
/// Between the proxy and the store: a bounded in-memory queue that the request path writes to without ever waiting
/// (a full queue drops the exchange and counts it), read by one background writer that builds records, batches them
/// and appends each batch to the store. While the store is down the writer retries the batch it holds (with
/// back-off) for <c>Gateway:Recording:RetryFor</c>, then drops it (counted); the queue meanwhile fills and sheds load
/// at its bound. When the store is back, writing resumes by itself. On shutdown the queue is drained.
/// </summary>
internal sealed partial class RecordingSink : BackgroundService
{
    private readonly Channel<CapturedExchange> _queue;
    private readonly RecordingStoreHolder _store;
    private readonly RecordBuilder _builder;
    private readonly RecordingMetrics _metrics;
    private readonly RecordingManager _manager;
    private readonly RecordingOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger<RecordingSink> _logger;
    private static readonly ResiliencePropertyKey<long> s_started = new("recording.batch.started");

    private readonly ResiliencePipeline _retry;
    private readonly Telemetry.LogThrottle _failures;
    private volatile bool _storeUp = true;

    public RecordingSink(RecordingStoreHolder store, RecordBuilder builder, RecordingMetrics metrics, RecordingManager manager,
        IOptions<RecordingOptions> options, TimeProvider time, ILogger<RecordingSink> logger, Telemetry.GatewayMetrics gatewayMetrics)
    {
        _options = options.Value;
        _queue = Channel.CreateBounded<CapturedExchange>(new BoundedChannelOptions(_options.QueueCapacity)
        {
            FullMode = BoundedChannelFullMode.Wait, // with TryWrite: returns false when full, never blocks
            SingleReader = true,
            SingleWriter = false,
        });
        _store = store;
        _builder = builder;
        _metrics = metrics;
        _manager = manager;
        _time = time;
        _logger = logger;
        _failures = new Telemetry.LogThrottle(time, TimeSpan.FromSeconds(10));
        _retry = BuildRetry();
        RecordingMetrics.Observe(gatewayMetrics, () => _queue.Reader.Count, () => _storeUp);
    }

    /// <summary>Exchanges waiting to be written.</summary>
    public int QueueDepth => _queue.Reader.Count;

    /// <summary>Whether the last store write succeeded.</summary>
    public bool StoreUp => _storeUp;

    /// <summary>Hands an exchange to the writer; never waits. A full queue drops it (counted <c>queue_full</c>).</summary>
    public void Enqueue(CapturedExchange exchange)
    {
        if (exchange.UnitsDropped > 0)
        {
            _metrics.UnitsDropped(exchange.UnitsDropped);
        }

        if (!_queue.Writer.TryWrite(exchange))
        {
            exchange.Release();
            _metrics.Dropped(RecordingMetrics.QueueFull);
        }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var reader = _queue.Reader;
        var batch = new List<CapturedExchange>(_options.BatchSize);
        try
        {
            while (await reader.WaitToReadAsync(stoppingToken))
            {
                while (batch.Count < _options.BatchSize && reader.TryRead(out var item))
                {
                    batch.Add(item);
                }

                await WriteAsync(batch, stoppingToken);
                batch.Clear();
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Shutdown: drain what is queued below.
        }

        // Drain on shutdown, with a bound: a store that is down must not hold the process.
        using var drain = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        _queue.Writer.TryComplete();
        while (reader.TryRead(out var item))
        {
            batch.Add(item);
            if (batch.Count == _options.BatchSize)
            {
                await WriteAsync(batch, drain.Token, retry: false);
                batch.Clear();
            }
        }

        await WriteAsync(batch, drain.Token, retry: false);
    }

    private async Task WriteAsync(List<CapturedExchange> batch, CancellationToken cancellationToken, bool retry = true)
    {
        if (batch.Count == 0)
        {
            return;
        }

        // Build records (redaction happens here, before anything leaves the process) and group them by recording.
        var byRecording = new Dictionary<string, (List<ExchangeRecord> Exchanges, HashSet<string> Sessions)>(StringComparer.Ordinal);
        foreach (var captured in batch)
        {
            try
            {
                foreach (var record in _builder.Build(captured))
                {
                    if (!byRecording.TryGetValue(record.Recording, out var group))
                    {
                        group = ([], new HashSet<string>(StringComparer.Ordinal));
                        byRecording[record.Recording] = group;
                    }

                    group.Exchanges.Add(record);
                    group.Sessions.Add(record.SessionId);
                }
            }
            finally
            {
                captured.Release();
            }
        }

        foreach (var (recording, group) in byRecording)
        {
            var sessions = _manager.Tracker(recording).TakeChanged(group.Sessions);
            await AppendWithRetryAsync(recording, group.Exchanges, sessions, retry, cancellationToken);
        }
    }

    private async Task AppendWithRetryAsync(string recording, List<ExchangeRecord> exchanges, List<SessionRecord> sessions, bool retry, CancellationToken cancellationToken)
    {
        var context = ResilienceContextPool.Shared.Get(cancellationToken);
        context.Properties.Set(s_started, _time.GetTimestamp());
        try
        {
            var pipeline = retry ? _retry : ResiliencePipeline.Empty;
            var outcome = await pipeline.ExecuteOutcomeAsync(static async (ctx, s) =>
            {
                try
                {
                    var t0 = s.Sink._time.GetTimestamp();
                    await s.Sink._store.Store.AppendAsync(s.Recording, s.Exchanges, s.Sessions, ctx.CancellationToken);
                    s.Sink._metrics.Batch(s.Sink._time.GetElapsedTime(t0).TotalSeconds);
                    return Outcome.FromResult(true);
                }
                catch (Exception ex)
                {
                    s.Sink.StoreFailed(ex);
                    return Outcome.FromException<bool>(ex);
                }
            }, context, (Sink: this, Recording: recording, Exchanges: exchanges, Sessions: sessions));

            if (outcome.Exception is not null)
            {
                _metrics.Dropped(RecordingMetrics.StoreUnavailable, exchanges.Count);
                return;
            }

            _metrics.Written(exchanges.Count);
            _manager.Written(recording, exchanges.Count);
            if (!_storeUp)
            {
                _storeUp = true;
                Log.StoreRecovered(_logger, _store.Store.Kind);
            }
        }
        finally
        {
            ResilienceContextPool.Shared.Return(context);
        }
    }

    /// <summary>
    /// Retries a batch the store refused (exponential back-off from 100 ms, at most 2 s apart) until
    /// <c>Gateway:Recording:RetryFor</c> has passed since its first try, unless the writer is stopping.
    /// </summary>
    private ResiliencePipeline BuildRetry() => new ResiliencePipelineBuilder { TimeProvider = _time }
        .AddRetry(new RetryStrategyOptions
        {
            MaxRetryAttempts = int.MaxValue,
            BackoffType = DelayBackoffType.Exponential,
            Delay = TimeSpan.FromMilliseconds(100),
            MaxDelay = TimeSpan.FromSeconds(2),
            UseJitter = false,
            ShouldHandle = args => ValueTask.FromResult(
                args.Outcome.Exception is { } ex && !(ex is OperationCanceledException && args.Context.CancellationToken.IsCancellationRequested)
                && _time.GetElapsedTime(args.Context.Properties.GetValue(s_started, 0L)) < _options.RetryFor),
        })
        .Build();

    private void StoreFailed(Exception ex)
    {
        _storeUp = false;
        if (ex is OperationCanceledException)
        {
            return;
        }

        // At most one line every 10 seconds while the store is down.
        if (_failures.ShouldLog(_store.Store.Kind, out _))
        {
            Log.StoreFailed(_logger, _store.Store.Kind, ex.Message);
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 3101, Level = LogLevel.Warning, Message = "Recording store ({Store}) unavailable: {Reason}. Exchanges queue, and drop (counted in recording_dropped_total) when the queue is full or the retry time runs out.")]
        public static partial void StoreFailed(ILogger logger, string store, string reason);

        [LoggerMessage(EventId = 3102, Level = LogLevel.Information, Message = "Recording store ({Store}) is back; recording resumes.")]
        public static partial void StoreRecovered(ILogger logger, string store);
    }
}
