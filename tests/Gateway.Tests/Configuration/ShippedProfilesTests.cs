using Gateway.Configuration;
using Microsoft.Extensions.Configuration;
using TestSupport;

namespace Gateway.Tests.Configuration;

/// <summary>
/// Every gateway profile shipped in config/, layered over appsettings.json as <c>--config FILE</c> layers it, passes the
/// start-up validation (every key known, every value valid): a renamed option or a tightened check cannot leave a
/// shipped profile that no longer starts.
/// </summary>
public sealed class ShippedProfilesTests
{
    private static readonly string[] s_profiles = ["protect-sim.json", "global-limit.json", "recording-redis.json"];

    public static TheoryData<string> Profiles() => [.. s_profiles];

    [Theory]
    [MemberData(nameof(Profiles))]
    public void A_shipped_profile_passes_start_up_validation(string profile)
    {
        var configuration = new ConfigurationBuilder()
            .AddJsonFile(RepoPaths.Combine("appsettings.json"))
            .AddJsonFile(RepoPaths.Combine("config", profile))
            .Build();

        var result = StartupValidation.Validate(configuration);

        Assert.True(result.Errors.Count == 0, $"config/{profile}:\n{string.Join('\n', result.Errors)}");
    }

    [Fact]
    public void Every_gateway_profile_in_config_is_checked()
    {
        var shipped = Directory.GetFiles(RepoPaths.Combine("config"), "*.json").Select(Path.GetFileName)
            .Where(static f => f != "demo-sessions.json"); // a replay template, not a gateway profile
        Assert.Equal(shipped.Order(StringComparer.Ordinal), s_profiles.Order(StringComparer.Ordinal));
    }
}
