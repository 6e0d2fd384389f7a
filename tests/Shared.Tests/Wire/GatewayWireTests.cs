using Contracts.Wire;

namespace Contracts.Tests.Wire;

/// <summary>The gateway-replay wire contract: close reasons and durations round-trip.</summary>
public sealed class GatewayWireTests
{
    [Theory]
    [InlineData("250ms", 250)]
    [InlineData("1.5s", 1500)]
    [InlineData("6m0s", 360_000)]
    [InlineData("1m30.5s", 90_500)]
    [InlineData("2m", 120_000)]
    public void Durations_parse(string text, double ms)
    {
        Assert.True(GatewayDuration.TryParse(text, out var t));
        Assert.Equal(ms, t.TotalMilliseconds, 3);
    }

    [Theory]
    [InlineData(0.2504)]
    [InlineData(1.5)]
    [InlineData(59.123)]
    [InlineData(360)]
    public void Durations_round_trip(double seconds)
    {
        var text = GatewayDuration.Format(TimeSpan.FromSeconds(seconds));
        Assert.True(GatewayDuration.TryParse(text, out var back), text);
        Assert.True(Math.Abs((back - TimeSpan.FromSeconds(seconds)).TotalMilliseconds) < 1, text);
    }

    [Theory]
    [InlineData("x")]
    [InlineData("1.5")]
    [InlineData("ms")]
    [InlineData("am1s")]
    public void Bad_durations_do_not_parse(string text) => Assert.False(GatewayDuration.TryParse(text, out _));

    [Fact]
    public void A_close_reason_round_trips_in_the_shape_the_gateway_writes_today()
    {
        var reason = new GatewayCloseReason(GatewayErrorCodes.QueueFull, GatewayLimits.Admission("model-http"), TimeSpan.FromMilliseconds(1500));
        Assert.Equal("queue_full: admission:model-http; retry after 1.5s", reason.Format());
        Assert.True(GatewayCloseReason.TryParse(reason.Format(), out var back));
        Assert.Equal(reason, back);
        Assert.Equal("model-http", GatewayLimits.ClusterOf(back!.Limit!));
        Assert.Equal(GatewayCloseReason.TryAgainLater, GatewayCloseReason.StatusFor(back.Code));
        Assert.Equal(GatewayCloseReason.PolicyViolation, GatewayCloseReason.StatusFor(GatewayErrorCodes.RateLimited));
    }

    [Theory]
    [InlineData("rate_limited: per-key", "rate_limited", "per-key", null)]
    [InlineData("circuit_open", "circuit_open", null, null)]
    [InlineData("tokens_exhausted: tpm; retry after 250ms", "tokens_exhausted", "tpm", 250.0)]
    [InlineData("queue_timeout: admission:c; retry after soon", "queue_timeout", "admission:c", null)]
    public void Close_reasons_parse(string text, string code, string? limit, double? retryMs)
    {
        Assert.True(GatewayCloseReason.TryParse(text, out var r));
        Assert.Equal(code, r!.Code);
        Assert.Equal(limit, r.Limit);
        Assert.Equal(retryMs, r.RetryAfter?.TotalMilliseconds);
    }

    [Theory]
    [InlineData("")]
    [InlineData("message limit 3 per connection reached (policy ws)")]
    [InlineData("Queue Full: x")]
    public void Other_close_reasons_do_not_parse(string text) => Assert.False(GatewayCloseReason.TryParse(text, out _));

    [Fact]
    public void A_long_reason_is_cut_to_123_bytes_on_a_character_boundary_and_still_parses()
    {
        var reason = new GatewayCloseReason(GatewayErrorCodes.RateLimited, new string('漢', 60), TimeSpan.FromSeconds(2));
        var text = reason.Format();
        Assert.True(System.Text.Encoding.UTF8.GetByteCount(text) <= GatewayCloseReason.MaxReasonBytes);
        Assert.DoesNotContain('\uFFFD', text);
        Assert.True(GatewayCloseReason.TryParse(text, out var back));
        Assert.Equal(GatewayErrorCodes.RateLimited, back!.Code);
    }

    [Fact]
    public void Refusal_codes_are_classified()
    {
        Assert.True(GatewayErrorCodes.IsRefusal(GatewayErrorCodes.QueueFull));
        Assert.True(GatewayErrorCodes.IsRefusal(GatewayErrorCodes.Concurrency));
        Assert.False(GatewayErrorCodes.IsRefusal(GatewayErrorCodes.RouteNotFound));
        Assert.False(GatewayErrorCodes.IsOverload(GatewayErrorCodes.RateLimited));
        Assert.True(GatewayCloseReason.IsRefusalStatus(1013));
    }
}
