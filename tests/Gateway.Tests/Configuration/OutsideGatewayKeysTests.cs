using Gateway.Configuration;
using Microsoft.Extensions.Configuration;
using TestSupport;

namespace Gateway.Tests.Configuration;

/// <summary>
/// Settings outside Gateway and ReverseProxy that the gateway would ignore or that crashed start-up (found by a
/// newcomer's review of issue 11: Logging:Console:MaxQueueLength=-1 and TimestampFormat=%%% ended in exit 134 with a
/// stack trace; Kestrel:Limits:* was accepted and silently ignored; Logging:LogLevel:Default=Loud named no key).
/// </summary>
public sealed class OutsideGatewayKeysTests
{
    [Theory]
    [InlineData("Logging:Console:MaxQueueLength", "-1")]
    [InlineData("Logging:Console:MaxQueueLength", "0")]
    [InlineData("Logging:Console:QueueFullMode", "Sometimes")]
    [InlineData("Logging:Console:TimestampFormat", "%%%")]
    [InlineData("Logging:LogLevel:Default", "Loud")]
    [InlineData("Logging:Console:LogLevel:Gateway", "Huge")]
    [InlineData("Kestrel:Limits:MaxRequestHeadersTotalSize", "1000")]
    public void A_value_the_gateway_would_ignore_or_crash_on_is_an_error_naming_its_key(string key, string value)
    {
        var configuration = new ConfigurationBuilder()
            .AddJsonFile(RepoPaths.Combine("appsettings.json"))
            .AddInMemoryCollection(new Dictionary<string, string?> { [key] = value })
            .Build();
        var error = Assert.Single(ConfigurationValidator.Validate(configuration).Errors);
        Assert.Contains(key.StartsWith("Kestrel", StringComparison.Ordinal) ? "Kestrel:Limits" : key, error, StringComparison.Ordinal);
    }
}
