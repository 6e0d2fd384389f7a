using System.Globalization;
using Gateway.Shaping.Policies;

namespace Gateway.Shaping;

/// <summary>
/// The <c>x-ratelimit-limit-*</c>, <c>x-ratelimit-remaining-*</c> and <c>x-ratelimit-reset-*</c> headers, in the form
/// LLM APIs use (OpenAI: <c>x-ratelimit-reset-requests: 1s</c>), for requests and for tokens.
/// </summary>
internal static class RateLimitHeaders
{
    /// <summary>The tighter of two figures (fewer remaining); null stays null.</summary>
    public static RateInfo? Tighter(RateInfo? current, RateInfo? next) =>
        next is null ? current : current is null || next.Value.Remaining < current.Value.Remaining ? next : current;

    /// <summary>Sets the three headers of <paramref name="unit"/> (<c>requests</c> or <c>tokens</c>) when <paramref name="info"/> is known.</summary>
    public static void Set(IHeaderDictionary headers, RateInfo? info, string unit)
    {
        if (info is not { } i)
        {
            return;
        }

        headers[$"x-ratelimit-limit-{unit}"] = i.Limit.ToString(CultureInfo.InvariantCulture);
        headers[$"x-ratelimit-remaining-{unit}"] = i.Remaining.ToString(CultureInfo.InvariantCulture);
        headers[$"x-ratelimit-reset-{unit}"] = Duration(i.Reset);
    }

    /// <summary>A duration the way LLM APIs write it in rate-limit headers: <c>250ms</c>, <c>1.5s</c>, <c>6m0s</c>.</summary>
    public static string Duration(TimeSpan t) =>
        t < TimeSpan.FromSeconds(1) ? $"{Math.Ceiling(t.TotalMilliseconds).ToString(CultureInfo.InvariantCulture)}ms"
        : t < TimeSpan.FromMinutes(1) ? $"{Math.Round(t.TotalSeconds, 3).ToString(CultureInfo.InvariantCulture)}s"
        : $"{(int)t.TotalMinutes}m{t.Seconds}s";
}
