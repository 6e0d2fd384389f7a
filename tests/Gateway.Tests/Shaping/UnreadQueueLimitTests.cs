using Gateway.Configuration;
using Microsoft.Extensions.Configuration;
using TestSupport;

namespace Gateway.Tests.Shaping;

/// <summary>
/// Issue 12, "strict key checking must catch any key that nothing reads" (found by a stranger's review): a QueueLimit on
/// a shadow policy or on a fleet-wide rate policy started silently and made no request wait.
/// </summary>
public sealed class UnreadQueueLimitTests
{
    [Theory]
    [InlineData("Shadow", "true", "Local", "a shadow policy never makes a request wait")]
    [InlineData("Scope", "Global", "Global", "a fleet-wide decision is made at once")]
    public void A_queue_limit_nothing_reads_is_an_error_naming_the_key(string key, string value, string scope, string why)
    {
        var configuration = new ConfigurationBuilder()
            .AddJsonFile(RepoPaths.Combine("appsettings.json"))
            .AddInMemoryCollection(new Dictionary<string, string?>
            {
                ["Gateway:Shaping:Redis"] = "127.0.0.1:6390",
                ["Gateway:Shaping:Policies:q:Kind"] = "FixedWindow",
                ["Gateway:Shaping:Policies:q:PermitLimit"] = "3",
                ["Gateway:Shaping:Policies:q:Window"] = "00:00:03",
                ["Gateway:Shaping:Policies:q:QueueLimit"] = "2",
                ["Gateway:Shaping:Policies:q:Scope"] = scope,
                [$"Gateway:Shaping:Policies:q:{key}"] = value,
            })
            .Build();
        var error = Assert.Single(ConfigurationValidator.Validate(configuration, startup: false).Errors);
        Assert.Contains("Gateway:Shaping:Policies:q:QueueLimit", error, StringComparison.Ordinal);
        Assert.Contains(why, error, StringComparison.Ordinal);
    }
}
