using Contracts.Wire;
using StackExchange.Redis;

namespace Gateway.Shaping.Policies;

/// <summary>
/// A fleet-wide policy (<c>Scope: Global</c>): every decision is made in Redis (<see cref="RedisLimiter"/>), so N gateways
/// together admit the configured rate, not N times it. While Redis is unreachable it follows its <see cref="FailMode"/>:
/// its local share (limit / <c>Gateway:Shaping:Instances</c>, the default), open, or closed; it tries Redis again a
/// second after a failure and recovers by itself.
/// </summary>
internal sealed class GlobalPolicy : ShapingPolicy
{
    private readonly ShapingRedis _redis;
    private readonly ShapingPolicy _localShare;

    public GlobalPolicy(string name, PolicyOptions options, PartitionKey partition, ShapingRedis redis, ShapingPolicy localShare)
        : base(name, options, partition)
    {
        _redis = redis;
        _localShare = localShare;
    }

    public override bool CountsTokens => Options.Kind == PolicyKind.Tokens;

    public override async ValueTask<PolicyDecision> AcquireAsync(string partition, long cost, CancellationToken cancellationToken)
    {
        if (CountsTokens && cost > Limit)
        {
            // More than the whole budget: no wait would admit it (decided before Redis, the same way as locally).
            return PolicyDecision.Refuse(GatewayErrorCodes.RequestTooLarge, null, new RateInfo(Limit, 0, TimeSpan.Zero));
        }

        if (_redis.Database is { } db)
        {
            try
            {
                var (admitted, retryAfter, remaining, reset, mark) = await RedisLimiter.EvaluateAsync(db, Name, partition, Options, cost, check: true).WaitAsync(cancellationToken);
                _redis.Succeeded();
                var info = new RateInfo(Limit, admitted ? remaining : 0, reset);
                return admitted
                    ? PolicyDecision.Admit(info, charge: new PolicyCharge(this, partition, cost, mark))
                    : PolicyDecision.Refuse(CountsTokens ? GatewayErrorCodes.TokensExhausted : GatewayErrorCodes.RateLimited, retryAfter, info);
            }
            catch (Exception ex) when (ex is RedisException or TimeoutException)
            {
                _redis.Failed(ex);
            }
        }

        return Options.FailMode switch
        {
            FailMode.Open => PolicyDecision.Admit(null),
            FailMode.Closed => PolicyDecision.Refuse(GatewayErrorCodes.RedisUnavailable, TimeSpan.FromSeconds(1), null),
            _ => await _localShare.AcquireAsync(partition, cost, cancellationToken),
        };
    }

    public override async ValueTask AdjustAsync(string partition, long delta, CancellationToken cancellationToken)
    {
        if (!CountsTokens)
        {
            return;
        }

        if (_redis.Database is { } db)
        {
            try
            {
                await RedisLimiter.EvaluateAsync(db, Name, partition, Options, delta, check: false).WaitAsync(cancellationToken);
                return;
            }
            catch (Exception ex) when (ex is RedisException or TimeoutException)
            {
                _redis.Failed(ex);
            }
        }

        await _localShare.AdjustAsync(partition, delta, cancellationToken);
    }

    public override async ValueTask RefundAsync(PolicyCharge charge, CancellationToken cancellationToken)
    {
        if (_redis.Database is not { } db)
        {
            return; // a lost refund errs on the side of the limit
        }

        try
        {
            if (Options.Kind is PolicyKind.FixedWindow or PolicyKind.SlidingWindow)
            {
                if (charge.Mark is { } mark)
                {
                    await RedisLimiter.RefundWindowAsync(db, Name, charge.Partition, Options, charge.Cost, mark).WaitAsync(cancellationToken);
                }
            }
            else
            {
                await RedisLimiter.EvaluateAsync(db, Name, charge.Partition, Options, -charge.Cost, check: false).WaitAsync(cancellationToken);
            }
        }
        catch (Exception ex) when (ex is RedisException or TimeoutException)
        {
            _redis.Failed(ex);
        }
    }

    private long Limit => Options.Kind switch
    {
        PolicyKind.TokenBucket => Options.TokenLimit,
        PolicyKind.Tokens => Options.TokenBudget,
        _ => Options.PermitLimit,
    };

    protected override ValueTask ReleaseLimitersAsync() => _localShare.DisposeAsync();
}

/// <summary>
/// The Redis connection of global policies (<c>Gateway:Shaping:Redis</c>): connects in the background and reconnects by
/// itself; a decision waits at most 250 ms for Redis. After a failure, Redis is skipped for a second (decisions fall back
/// at once instead of each waiting), then tried again. The fallback state is a metric and one log line per change.
/// </summary>
internal sealed partial class ShapingRedis : IAsyncDisposable
{
    private static readonly TimeSpan s_retryAfterFailure = TimeSpan.FromSeconds(1);
    private readonly ConnectionMultiplexer? _connection;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private long _failedAt;
    private int _fallingBack;

    public ShapingRedis(string? configuration, TimeProvider time, ILogger logger)
    {
        _time = time;
        _logger = logger;
        if (!string.IsNullOrWhiteSpace(configuration))
        {
            var options = Contracts.Recording.RedisConnection.Parse(configuration);
            options.AsyncTimeout = 250;
            options.SyncTimeout = 250;
            options.ConnectTimeout = Math.Min(options.ConnectTimeout, 1000);
            options.ConnectRetry = 1;
            _connection = ConnectionMultiplexer.Connect(options);
        }
    }

    /// <summary>Whether global policies are falling back now (1) or not (0).</summary>
    public bool FallingBack => Volatile.Read(ref _fallingBack) == 1;

    /// <summary>The database to use now, or null while connecting, disconnected or within a second of a failure.</summary>
    public IDatabase? Database
    {
        get
        {
            if (_connection is null || !_connection.IsConnected)
            {
                MarkFallback(null);
                return null;
            }

            var failedAt = Interlocked.Read(ref _failedAt);
            return failedAt != 0 && _time.GetElapsedTime(failedAt) < s_retryAfterFailure ? null : _connection.GetDatabase();
        }
    }

    public void Succeeded()
    {
        Interlocked.Exchange(ref _failedAt, 0);
        if (Interlocked.Exchange(ref _fallingBack, 0) == 1)
        {
            Log.Recovered(_logger);
        }
    }

    public void Failed(Exception ex)
    {
        Interlocked.Exchange(ref _failedAt, _time.GetTimestamp());
        MarkFallback(ex.Message);
    }

    private void MarkFallback(string? reason)
    {
        if (Interlocked.Exchange(ref _fallingBack, 1) == 0)
        {
            Log.FallingBack(_logger, reason ?? "not connected");
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_connection is not null)
        {
            await _connection.DisposeAsync();
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 4101, Level = LogLevel.Warning, Message = "Redis for fleet-wide limits is unreachable ({Reason}); global policies follow their FailMode (local share by default) until it is back.")]
        public static partial void FallingBack(ILogger logger, string reason);

        [LoggerMessage(EventId = 4102, Level = LogLevel.Information, Message = "Redis for fleet-wide limits is back; global policies are enforced fleet-wide again.")]
        public static partial void Recovered(ILogger logger);
    }
}
