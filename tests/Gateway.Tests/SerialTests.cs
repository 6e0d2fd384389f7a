namespace Gateway.Tests;

/// <summary>
/// Tests that measure rates or time under load run in this collection: alone, after the parallel ones, so that the
/// rest of the suite does not take the CPU they measure with (the CI machine has 2 cores).
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class SerialTests
{
    public const string Name = "timing-sensitive, run alone";
}
