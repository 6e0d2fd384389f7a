using Gateway.Configuration;
using Microsoft.Extensions.Configuration;

namespace Gateway.Tests.Tenants;

/// <summary>The start-up (and reload) check of the tenant-shaping keys: every message names the key.</summary>
public sealed class TenantShapingConfigTests
{
    private static IReadOnlyList<string> Errors(params (string Key, string Value)[] settings)
    {
        var values = new Dictionary<string, string?>
        {
            ["ReverseProxy:Routes:r:ClusterId"] = "gpu",
            ["ReverseProxy:Routes:r:Match:Path"] = "/v1/{**rest}",
            ["ReverseProxy:Clusters:gpu:Destinations:d:Address"] = "http://127.0.0.1:9/",
        };
        foreach (var (k, v) in settings)
        {
            values[k] = v;
        }

        return ConfigurationValidator.Validate(new ConfigurationBuilder().AddInMemoryCollection(values).Build(), startup: false).Errors;
    }

    [Fact]
    public void MaxStarvation_at_or_above_the_queue_timeout_is_an_error_naming_the_key()
    {
        var errors = Errors(("Gateway:Shaping:Admission:gpu:QueueTimeout", "00:00:02"), ("Gateway:Shaping:Admission:gpu:MaxStarvation", "00:00:05"));
        Assert.Contains(errors, e => e.StartsWith("Gateway:Shaping:Admission:gpu:MaxStarvation must be below Gateway:Shaping:Admission:gpu:QueueTimeout", StringComparison.Ordinal));

        Assert.Empty(Errors(("Gateway:Shaping:Admission:gpu:QueueTimeout", "00:00:02"), ("Gateway:Shaping:Admission:gpu:MaxStarvation", "00:00:01")));
        Assert.Empty(Errors(("Gateway:Shaping:Admission:gpu:MaxStarvation", "00:00:00"))); // strict priority
    }

    [Fact]
    public void Token_weights_both_zero_and_a_tenant_priority_that_is_no_class_are_errors_naming_the_keys()
    {
        var errors = Errors(("Gateway:Shaping:Admission:gpu:InputTokenWeight", "0"), ("Gateway:Shaping:Admission:gpu:OutputTokenWeight", "0"),
            ("Gateway:Tenants:acme:Priority", "urgent"));
        Assert.Contains(errors, e => e.Contains("Gateway:Shaping:Admission:gpu:InputTokenWeight and Gateway:Shaping:Admission:gpu:OutputTokenWeight are both 0", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.StartsWith("Gateway:Tenants:acme:Priority must name a priority class", StringComparison.Ordinal) && e.Contains("'urgent'", StringComparison.Ordinal));
    }

    [Fact]
    public void FairShareHeadroom_at_or_above_MaxInFlight_and_a_window_of_zero_are_errors_naming_the_keys()
    {
        var errors = Errors(("Gateway:Shaping:Admission:gpu:MaxInFlight", "16"), ("Gateway:Shaping:Admission:gpu:FairShareHeadroom", "16"));
        Assert.Contains(errors, e => e.StartsWith("Gateway:Shaping:Admission:gpu:FairShareHeadroom must be below Gateway:Shaping:Admission:gpu:MaxInFlight (was 16 >= 16)", StringComparison.Ordinal));
        Assert.Contains(Errors(("Gateway:Shaping:Admission:gpu:FairShareHeadroom", "-1")), e => e.Contains("Gateway:Shaping:Admission:gpu:FairShareHeadroom", StringComparison.Ordinal));
        Assert.Contains(Errors(("Gateway:Shaping:Admission:gpu:FairShareWindow", "00:00:00")), e => e.Contains("Gateway:Shaping:Admission:gpu:FairShareWindow", StringComparison.Ordinal));
        Assert.Empty(Errors(("Gateway:Shaping:Admission:gpu:MaxInFlight", "16"), ("Gateway:Shaping:Admission:gpu:FairShareHeadroom", "3")));

        // Stranger review: an adaptive MaxLimit at or below the headroom, and a bare number for the window (read as days).
        Assert.Contains(Errors(("Gateway:Shaping:Admission:gpu:MaxInFlight", "8"), ("Gateway:Shaping:Admission:gpu:FairShareHeadroom", "7"),
                ("Gateway:Shaping:Admission:gpu:Adaptive:Enabled", "true"), ("Gateway:Shaping:Admission:gpu:Adaptive:MaxLimit", "4")),
            e => e.StartsWith("Gateway:Shaping:Admission:gpu:FairShareHeadroom must be below Gateway:Shaping:Admission:gpu:Adaptive:MaxLimit (was 7 >= 4)", StringComparison.Ordinal));
        foreach (var key in new[] { "FairShareWindow", "QueueTimeout", "MaxStarvation" })
        {
            Assert.Contains(Errors(($"Gateway:Shaping:Admission:gpu:{key}", "3")),
                e => e.Contains($"Gateway:Shaping:Admission:gpu:{key}", StringComparison.Ordinal) && e.Contains("a bare number would be read as days", StringComparison.Ordinal));
        }
    }
}
