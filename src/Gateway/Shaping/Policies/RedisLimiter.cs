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
    // ARGV[1] mode: 1 gcra, 2 fixed, 3 sliding. Returns { admitted (0/1), retry_ms, remaining, reset_ms }.
    // gcra:    ARGV[2] interval ms, ARGV[3] tolerance ms, ARGV[4] cost, ARGV[5] check (1) or adjust (0)
    // fixed:   ARGV[2] window ms, ARGV[3] limit, ARGV[4] cost
    // sliding: ARGV[2] window ms, ARGV[3] limit, ARGV[4] cost
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
              return { 0, tostring(allow_at - now), tostring(math.max(0, math.floor((now + tolerance - tat) / interval))), tostring(tat - now) }
            end
          end
          if new_tat < now then new_tat = now end
          redis.call('SET', key, tostring(new_tat), 'PX', math.ceil(new_tat - now + tolerance) + 1000)
          return { 1, '0', tostring(math.max(0, math.floor((now + tolerance - new_tat) / interval))), tostring(new_tat - now) }
        end
        local window = tonumber(ARGV[2])
        local limit = tonumber(ARGV[3])
        local cost = tonumber(ARGV[4])
        local start = math.floor(now / window) * window
        local current_key = key .. ':' .. tostring(start)
        local current = tonumber(redis.call('GET', current_key) or '0')
        local estimate = current
        if mode == 3 then
          local previous = tonumber(redis.call('GET', key .. ':' .. tostring(start - window)) or '0')
          estimate = previous * (1 - (now - start) / window) + current
        end
        if estimate + cost > limit then
          local retry = start + window - now
          if mode == 3 and current + cost <= limit then retry = math.max(1, retry / 10) end
          return { 0, tostring(retry), '0', tostring(start + window - now) }
        end
        redis.call('INCRBY', current_key, cost)
        redis.call('PEXPIRE', current_key, window * 2 + 1000)
        return { 1, '0', tostring(math.max(0, math.floor(limit - estimate - cost))), tostring(start + window - now) }
        """;

    /// <summary>Runs one decision (or, with <paramref name="check"/> false, an unconditional GCRA adjustment).</summary>
    /// <exception cref="RedisException">Redis is unreachable or failed.</exception>
    public static async Task<(bool Admitted, TimeSpan RetryAfter, long Remaining, TimeSpan Reset)> EvaluateAsync(
        IDatabase db, string policy, string partition, PolicyOptions o, long cost, bool check)
    {
        RedisKey key = $"rl:{{{policy}}}:{partition}";
        RedisValue[] args = o.Kind switch
        {
            PolicyKind.TokenBucket => Gcra(o.TokensPerPeriod / o.ReplenishmentPeriod.TotalSeconds, o.TokenLimit, cost, check),
            PolicyKind.Tokens => Gcra(o.TokensPerMinute / 60.0, o.TokensPerMinute, cost, check),
            PolicyKind.FixedWindow => [2, o.Window.TotalMilliseconds, o.PermitLimit, cost],
            PolicyKind.SlidingWindow => [3, o.Window.TotalMilliseconds, o.PermitLimit, cost],
            _ => throw new ArgumentOutOfRangeException(nameof(o), o.Kind, "not a global kind"),
        };

        var result = (RedisResult[])(await db.ScriptEvaluateAsync(Script, [key], args))!;
        return ((long)result[0] == 1, Ms(result[1]), (long)Math.Floor(Parse(result[2])), Ms(result[3]));

        static RedisValue[] Gcra(double ratePerSecond, double burst, long cost, bool check)
        {
            var interval = 1000.0 / ratePerSecond;
            return [1, interval.ToString("R", CultureInfo.InvariantCulture), (burst * interval).ToString("R", CultureInfo.InvariantCulture), cost, check ? 1 : 0];
        }

        static double Parse(RedisResult r) => double.Parse((string)r!, NumberStyles.Float, CultureInfo.InvariantCulture);

        static TimeSpan Ms(RedisResult r) => TimeSpan.FromMilliseconds(Math.Max(0, Parse(r)));
    }
}
