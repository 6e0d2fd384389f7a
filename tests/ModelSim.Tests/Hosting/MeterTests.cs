using System.Diagnostics.Metrics;
using Microsoft.Extensions.DependencyInjection;
using ModelSim.Engine;
using ModelSim.Tests.Support;

namespace ModelSim.Tests.Hosting;

/// <summary>The same counters as observable instruments on the instance's own <c>ModelSim</c> meter.</summary>
public sealed class MeterTests
{
    [Fact]
    public async Task ObservableInstrumentsReportThisInstanceExactly()
    {
        await using var sim = await Sims.StartAsync(("PrefillMs", 1), ("PerTokenMs", 1));
        await using var other = await Sims.StartAsync(("PrefillMs", 1), ("PerTokenMs", 1));
        using var client = Sims.Client(sim);
        using var otherClient = Sims.Client(other);
        await Sims.GenerateAsync(client, "one", 4);
        await Sims.GenerateAsync(client, "two", 6);
        await Sims.GenerateAsync(otherClient, "elsewhere", 9);

        var meter = sim.Services.GetRequiredService<ModelSimMetrics>().Meter;
        Assert.Equal(ModelSimMetrics.MeterName, meter.Name);
        var values = new Dictionary<string, long>();
        var units = new Dictionary<string, string?>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (ReferenceEquals(instrument.Meter, meter))
            {
                units[instrument.Name] = instrument.Unit;
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((instrument, value, _, _) => values[instrument.Name] = value);
        listener.SetMeasurementEventCallback<int>((instrument, value, _, _) => values[instrument.Name] = value);
        listener.Start();
        listener.RecordObservableInstruments();

        Assert.Equal(2, values["modelsim.requests"]);
        Assert.Equal(2, values["modelsim.completed"]);
        Assert.Equal(10, values["modelsim.generated_tokens"]);
        Assert.Equal(sim.Stats.PromptTokens, values["modelsim.prompt_tokens"]);
        Assert.Equal(0, values["modelsim.inflight"]);
        Assert.Equal(0, values["modelsim.queue.depth"]);
        Assert.Equal(32, values["modelsim.slots"]);
        Assert.Equal("{request}", units["modelsim.requests"]);
        Assert.Equal("{token}", units["modelsim.generated_tokens"]);
        foreach (var name in new[] { "modelsim.rejected", "modelsim.cancelled", "modelsim.failed", "modelsim.bad_requests", "modelsim.collapses", "modelsim.stalls", "modelsim.queue.depth.max" })
        {
            Assert.Equal(0, values[name]);
        }
    }
}
