using Gateway.Shaping;
using Gateway.Shaping.Admission;
using Gateway.Tenants;

namespace Gateway.Tests.Tenants;

/// <summary>The admission class of a request: <c>x-priority</c> capped at the tenant's own <c>Priority</c>; <c>KeyPriorities</c> without a tenant.</summary>
public sealed class TenantPriorityTests
{
    private static readonly AdmissionSettings s_settings = new(new AdmissionOptions()); // high, normal, low
    private const int High = 0, Normal = 1, Low = 2;

    private static Tenant TenantOf(string priority) => new("acme", new TenantOptions { Priority = priority }, Credential.ApiKey, "k1");

    [Theory]
    [InlineData("normal", "high", Normal)]  // asking above its own gets its own
    [InlineData("normal", "low", Low)]      // asking below is honoured
    [InlineData("normal", null, Normal)]
    [InlineData("low", "high", Low)]
    [InlineData("high", "high", High)]
    [InlineData("high", "normal", Normal)]
    [InlineData("high", "nonsense", High)]  // an unknown class name is ignored
    public void X_priority_is_capped_at_the_tenants_own_priority(string own, string? header, int expected)
    {
        var shaping = new ShapingOptions();
        Assert.Equal(expected, ClusterAdmission.PriorityOf(header, TenantOf(own), null, s_settings, shaping));
    }

    [Fact]
    public void KeyPriorities_still_apply_to_callers_without_a_tenant_and_not_to_a_tenant()
    {
        var shaping = new ShapingOptions();
        shaping.KeyPriorities["key:0123456789abcdef"] = "high";
        Assert.Equal(High, ClusterAdmission.PriorityOf(null, null, "key:0123456789abcdef", s_settings, shaping));
        Assert.Equal(Low, ClusterAdmission.PriorityOf("low", null, "key:0123456789abcdef", s_settings, shaping));
        Assert.Equal(Normal, ClusterAdmission.PriorityOf(null, null, "ip:127.0.0.1", s_settings, shaping));

        // A tenant's class is its own, whatever its client key's entry says.
        Assert.Equal(Low, ClusterAdmission.PriorityOf(null, TenantOf("low"), null, s_settings, shaping));
    }
}
