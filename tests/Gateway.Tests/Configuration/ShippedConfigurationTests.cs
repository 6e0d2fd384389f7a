using Gateway.Configuration;
using Microsoft.Extensions.Configuration;
using TestSupport;

namespace Gateway.Tests.Configuration;

/// <summary>The configuration that ships (appsettings.json and every profile in config/) passes the gateway's own validation.</summary>
public sealed class ShippedConfigurationTests
{
    public static TheoryData<string> Profiles() => [.. Directory.GetFiles(RepoPaths.Combine("config"), "*.json").Select(f => Path.GetFileName(f)!).Order()];

    [Fact]
    public void Appsettings_json_is_valid()
    {
        var configuration = new ConfigurationBuilder().AddJsonFile(RepoPaths.Combine("appsettings.json")).Build();
        Assert.Empty(ConfigurationValidator.Validate(configuration).Errors);
    }

    [Theory]
    [MemberData(nameof(Profiles))]
    public void Each_profile_in_config_is_valid_over_appsettings_json(string profile)
    {
        var configuration = new ConfigurationBuilder()
            .AddJsonFile(RepoPaths.Combine("appsettings.json"))
            .AddJsonFile(RepoPaths.Combine("config", profile))
            .Build();
        Assert.Empty(ConfigurationValidator.Validate(configuration).Errors);
    }
}
