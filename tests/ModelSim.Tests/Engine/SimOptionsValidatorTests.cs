using ModelSim.Engine;

namespace ModelSim.Tests.Engine;

public sealed class SimOptionsValidatorTests
{
    private static readonly SimOptionsValidator s_validator = new();

    [Fact]
    public void DefaultsAreValid() => Assert.True(s_validator.Validate(null, new SimOptions()).Succeeded);

    [Fact]
    public void EveryFailureIsReportedWithItsKeyAndValue()
    {
        var bad = new SimOptions
        {
            Model = " ",
            Slots = -1,
            Queue = -2,
            PrefillMs = -1,
            PrefillPerTokenMs = double.NaN,
            PerTokenMs = -0.5,
            BatchSlowdown = -1,
            DefaultMaxTokens = 0,
            MaxTokensLimit = 0,
            CollapseQueue = -1,
            CollapseMs = 0,
            Http = new SimListenerOptions { Address = "nowhere", Port = 70000 },
            Grpc = new SimListenerOptions { Address = "127.0.0.1", Port = -1 },
        };
        var failures = s_validator.Validate(null, bad).Failures!.ToList();

        Assert.Contains("Sim:Slots must be > 0 (was -1).", failures);
        Assert.Contains("Sim:Queue must be >= 0 (was -2).", failures);
        Assert.Contains("Sim:PrefillMs must be a finite number >= 0 (was -1).", failures);
        Assert.Contains("Sim:PrefillPerTokenMs must be a finite number >= 0 (was NaN).", failures);
        Assert.Contains("Sim:PerTokenMs must be a finite number >= 0 (was -0.5).", failures);
        Assert.Contains("Sim:BatchSlowdown must be a finite number >= 0 (was -1).", failures);
        Assert.Contains("Sim:DefaultMaxTokens must be > 0 (was 0).", failures);
        Assert.Contains("Sim:MaxTokensLimit must be > 0 (was 0).", failures);
        Assert.Contains("Sim:CollapseQueue must be >= 0 (was -1).", failures);
        Assert.Contains("Sim:CollapseMs must be > 0 (was 0).", failures);
        Assert.Contains("Sim:Http:Address must be an IP address, 'localhost' or '*' (was 'nowhere').", failures);
        Assert.Contains("Sim:Http:Port must be between 0 and 65535 (was 70000).", failures);
        Assert.Contains("Sim:Grpc:Port must be between 0 and 65535 (was -1).", failures);
        Assert.Contains(failures, f => f.StartsWith("Sim:Model must not be empty", StringComparison.Ordinal));
        Assert.Equal(14, failures.Count);
    }

    [Fact]
    public void CrossFieldRulesAreChecked()
    {
        var failures = s_validator.Validate(null, new SimOptions
        {
            Queue = 10,
            CollapseQueue = 10,
            DefaultMaxTokens = 100,
            MaxTokensLimit = 50,
            Http = new SimListenerOptions { Port = 9100 },
            Grpc = new SimListenerOptions { Port = 9100 },
        }).Failures!.ToList();

        Assert.Contains("Sim:CollapseQueue must be < Sim:Queue (10) to ever trigger, or 0 to disable (was 10).", failures);
        Assert.Contains("Sim:DefaultMaxTokens must be <= 50 (was 100).", failures);
        Assert.Contains("Sim:Grpc:Port must differ from Sim:Http:Port (both were 9100).", failures);
    }
}
