using ModelSim.Engine;

namespace ModelSim.Tests.Engine;

public sealed class LatencyModelTests
{
    [Fact]
    public void FormulasGiveTheDocumentedNumbers()
    {
        // The worked example of docs/modelsim.md: the defaults with a 500-token prompt and 100 output tokens.
        var defaults = new SimOptions();
        Assert.Equal(45, LatencyModel.PrefillMs(defaults, 500), 9);
        Assert.Equal(10, LatencyModel.StepMs(defaults, 1), 9);
        Assert.Equal(15, LatencyModel.StepMs(defaults, 32), 9);
        Assert.Equal(1045, LatencyModel.UnloadedLatencyMs(defaults, 500, 100), 9);
        Assert.Equal(1545, LatencyModel.SaturatedSlotMs(defaults, 500, 100), 9);
        Assert.Equal(20.71, LatencyModel.CapacityPerSecond(defaults, 500, 100), 2);
    }

    [Fact]
    public void OneSlotNeverSlowsDownAndOccupancyIsClamped()
    {
        var one = new SimOptions { Slots = 1, PerTokenMs = 4, BatchSlowdown = 3 };
        Assert.Equal(4, LatencyModel.StepMs(one, 1), 9);
        var eight = new SimOptions { Slots = 8, PerTokenMs = 4, BatchSlowdown = 3 };
        Assert.Equal(4 * (1 + (3.0 * 3 / 7)), LatencyModel.StepMs(eight, 4), 9);
        Assert.Equal(16, LatencyModel.StepMs(eight, 8), 9);
        Assert.Equal(16, LatencyModel.StepMs(eight, 50), 9);
    }

    [Fact]
    public void ZeroCostModelHasInfiniteCapacity()
    {
        var free = new SimOptions { PrefillMs = 0, PrefillPerTokenMs = 0, PerTokenMs = 0 };
        Assert.True(double.IsPositiveInfinity(LatencyModel.CapacityPerSecond(free, 10, 10)));
    }
}
