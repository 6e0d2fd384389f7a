using System.Globalization;
using StackExchange.Redis;

namespace Gateway.Shaping.Policies;

/// <summary>
/// Fleet-wide policies, enforced in Redis with one atomic Lua script per decision, on Redis's own clock (<c>TIME</c>) so
/// gateways with skewed clocks agree. Keys are <c>rl:{POLICY}:PARTITION</c> (the policy's hash tag keeps a policy's keys
/// on one cluster slot) and expire by themselves. Algorithms: GCRA (<see cref="Gcra"/>) for TokenBucket and Tokens, an
/// exact fixed window for FixedWindow, and for SlidingWindow the two-window estimate
/// <c>count = previous·(1 − elapsed/window) + current</c> (the approximation Cloudflare describes in "How we built rate
/// limiting capable of scaling to millions of domains", 2017).
/// </summary>
internal static class RedisLimiter
{
    // ARGV[1] mode: 1 gcra, 2 fixed, 3 sliding, 4 refund fixed, 5 refund sliding.
    // Returns { admitted (0/1), retry_ms, remaining, reset_ms, mark }: mark is the window start a charge went to.
    // gcra:    ARGV[2] interval ms, ARGV[3] tolerance ms, ARGV[4] cost (negative: refund), ARGV[5] check (1) or adjust (0)
    // fixed:   ARGV[2] window ms, ARGV[3] limit, ARGV[4] cost; a hash {s = start, c = count}; a window starts with the
    //          first request after the previous one ended, so Retry-After is the time left in it
    // sliding: ARGV[2] window ms, ARGV[3] limit, ARGV[4] cost; windows aligned on Redis's clock, keys KEY:START
    // refunds: ARGV[2] mark, ARGV[3] cost; only the window the charge went to is decremented, never below 0
    private const string Script = """
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
        local mode = tonumber(ARGV[1])
        local key = KEYS[1]
        if mode == 1 then
          local interval = tonumber(ARGV[2])
          local tolerance = tonumber(ARGV[3])
          local cost = tonumber(ARGV[4])
          local tat = tonumber(redis.call('GET', key) or '0')
          if tat < now then tat = now end
          local new_tat = tat + cost * interval
          if tonumber(ARGV[5]) == 1 then
            local allow_at = new_tat - tolerance
            if now < allow_at then
              return { 0, tostring(allow_at - now), tostring(math.max(0, math.floor((now + tolerance - tat) / interval))), tostring(tat - now), '' }
            end
          end
          if new_tat < now then new_tat = now end
          redis.call('SET', key, tostring(new_tat), 'PX', math.ceil(new_tat - now + tolerance) + 1000)
          return { 1, '0', tostring(math.max(0, math.floor((now + tolerance - new_tat) / interval))), tostring(new_tat - now), '' }
        end
        if mode == 4 then
          if redis.call('HGET', key, 's') == ARGV[2] then
            local c = tonumber(redis.call('HGET', key, 'c') or '0')
            redis.call('HSET', key, 'c', math.max(0, c - tonumber(ARGV[3])))
          end
          return { 1, '0', '0', '0', '' }
        end
        if mode == 5 then
          local k = key .. ':' .. ARGV[2]
          local c = tonumber(redis.call('GET', k) or '0')
          if c > 0 then redis.call('DECRBY', k, math.min(c, tonumber(ARGV[3]))) end
          return { 1, '0', '0', '0', '' }
        end
        local window = tonumber(ARGV[2])
        local limit = tonumber(ARGV[3])
        local cost = tonumber(ARGV[4])
        if mode == 2 then
          local s = redis.call('HGET', key, 's')
          local c = tonumber(redis.call('HGET', key, 'c') or '0')
          if not s or now >= tonumber(s) + window then
            s = tostring(now)
            c = 0
          end
          local left = tonumber(s) + window - now
          if c + cost > limit then
            return { 0, tostring(left), '0', tostring(left), s }
          end
          c = c + cost
          redis.call('HSET', key, 's', s, 'c', c)
          redis.call('PEXPIRE', key, math.ceil(left) + 1000)
          return { 1, '0', tostring(limit - c), tostring(left), s }
        end
        local start = math.floor(now / window) * window
        local elapsed = now - start
        local current_key = key .. ':' .. tostring(start)
        local current = tonumber(redis.call('GET', current_key) or '0')
        local previous = tonumber(redis.call('GET', key .. ':' .. tostring(start - window)) or '0')
        local estimate = previous * (1 - elapsed / window) + current
        local reset = 0
        if current > 0 then reset = 2 * window - elapsed elseif previous > 0 then reset = window - elapsed end
        if estimate + cost > limit then
          -- the time until previous·(1 − e/window) + current + cost ≤ limit, solved for e
          local retry
          if current + cost > limit then
            local need = 0
            if current > 0 and limit - cost < current then need = window * (1 - (limit - cost) / current) end
            retry = window - elapsed + need
          else
            retry = window * (1 - (limit - current - cost) / previous) - elapsed
          end
          return { 0, tostring(math.max(1, retry)), '0', tostring(reset), '' }
        end
        redis.call('INCRBY', current_key, cost)
        redis.call('PEXPIRE', current_key, window * 2 + 1000)
        return { 1, '0', tostring(math.max(0, math.floor(limit - estimate - cost))), tostring(2 * window - elapsed), tostring(start) }
        """;

    /// <summary>Runs one decision (or, with <paramref name="check"/> false, an unconditional GCRA adjustment).</summary>
    /// <exception cref="RedisException">Redis is unreachable or failed.</exception>
    public static async Task<(bool Admitted, TimeSpan RetryAfter, long Remaining, TimeSpan Reset, string? Mark)> EvaluateAsync(
        IDatabase db, string policy, string partition, PolicyOptions o, long cost, bool check)
    {
        RedisValue[] args = o.Kind switch
        {
            PolicyKind.TokenBucket => Gcra(o.TokensPerPeriod / o.ReplenishmentPeriod.TotalSeconds, o.TokenLimit, cost, check),
            PolicyKind.Tokens => Gcra(o.TokenBudget / o.EffectiveWindow.TotalSeconds, o.TokenBudget, cost, check),
            PolicyKind.FixedWindow => [2, o.EffectiveWindow.TotalMilliseconds, o.PermitLimit, cost],
            PolicyKind.SlidingWindow => [3, o.EffectiveWindow.TotalMilliseconds, o.PermitLimit, cost],
            _ => throw new ArgumentOutOfRangeException(nameof(o), o.Kind, "not a global kind"),
        };

        var result = (RedisResult[])(await db.ScriptEvaluateAsync(Script, [Key(policy, partition)], args))!;
        var mark = (string?)result[4];
        return ((long)result[0] == 1, Ms(result[1]), (long)Math.Floor(Parse(result[2])), Ms(result[3]), string.IsNullOrEmpty(mark) ? null : mark);

        static RedisValue[] Gcra(double ratePerSecond, double burst, long cost, bool check)
        {
            var interval = 1000.0 / ratePerSecond;
            return [1, interval.ToString("R", CultureInfo.InvariantCulture), (burst * interval).ToString("R", CultureInfo.InvariantCulture), cost, check ? 1 : 0];
        }

        static double Parse(RedisResult r) => double.Parse((string)r!, NumberStyles.Float, CultureInfo.InvariantCulture);

        static TimeSpan Ms(RedisResult r) => TimeSpan.FromMilliseconds(Math.Max(0, Parse(r)));
    }

    /// <summary>Gives back a window policy's charge (<paramref name="mark"/>: the window it went to); GCRA refunds are adjustments.</summary>
    /// <exception cref="RedisException">Redis is unreachable or failed.</exception>
    public static Task RefundWindowAsync(IDatabase db, string policy, string partition, PolicyOptions o, long cost, string mark) =>
        db.ScriptEvaluateAsync(Script, [Key(policy, partition)], [o.Kind == PolicyKind.FixedWindow ? 4 : 5, mark, cost]);

    private static RedisKey Key(string policy, string partition) => $"rl:{{{policy}}}:{partition}";
}
