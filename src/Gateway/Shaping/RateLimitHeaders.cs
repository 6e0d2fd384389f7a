using System.Globalization;
using Contracts.Wire;
using Gateway.Shaping.Policies;

namespace Gateway.Shaping;

/// <summary>
/// The <c>x-ratelimit-limit-*</c>, <c>x-ratelimit-remaining-*</c> and <c>x-ratelimit-reset-*</c> headers, in the form
/// LLM APIs use (OpenAI: <c>x-ratelimit-reset-requests: 1s</c>), for requests and for tokens; names and duration format from
/// <see cref="GatewayHeaders"/> and <see cref="GatewayDuration"/>, which the replay tool reads.
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

        headers[GatewayHeaders.RateLimitLimitPrefix + unit] = i.Limit.ToString(CultureInfo.InvariantCulture);
        headers[GatewayHeaders.RateLimitRemainingPrefix + unit] = i.Remaining.ToString(CultureInfo.InvariantCulture);
        headers[GatewayHeaders.RateLimitResetPrefix + unit] = GatewayDuration.Format(i.Reset);
    }

}
