using Contracts.Recording;
using TestSupport;

namespace Replay.Tests.EndToEnd;

/// <summary>A recording in Redis (a real redis-server on a free loopback port) replays like one in the file store.</summary>
[Collection(RealTimeGroup.Name)]
public sealed class RedisSourceTests
{
    [Fact(Timeout = 60_000)]
    public async Task A_recording_in_redis_is_replayed_and_listed()
    {
        var port = FreePort.Next();
        await using var redis = ChildProcess.Start("redis-server", ["--port", port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
        var source = $"redis://127.0.0.1:{port}";
        using var dir = TestHost.CreateTempDirectory();
        var recorded = await Recordings.WriteCaptureAsync(dir.Path, "capture");
        await using (var file = new FileRecordingStore(dir.Path))
        {
            RedisRecordingStore? store = null;
            await Eventually.TrueAsync(
                async () =>
                {
                    try
                    {
                        store ??= await RedisRecordingStore.ConnectAsync(source);
                        await store.ListAsync(CancellationToken.None);
                        return true;
                    }
                    catch (StackExchange.Redis.RedisException)
                    {
                        return false;
                    }
                },
                TimeSpan.FromSeconds(10),
                () => "redis-server did not start");
            await using (store!)
            {
                var exchanges = new List<ExchangeRecord>();
                await foreach (var x in file.ReadExchangesAsync("capture", CancellationToken.None))
                {
                    exchanges.Add(x.Record!);
                }

                await store!.StartAsync("capture", CancellationToken.None);
                await store.AppendAsync("capture", exchanges, Recordings.Sessions(exchanges), CancellationToken.None);
            }
        }

        await using var sim = await TestHost.StartSimAsync();
        var list = await TestHost.RunAsync(["list", "--source", source]);
        var run = await TestHost.RunAsync(["run", "--source", source, "--recording", "capture", "--speed", "4", .. TestHost.Targets(sim)]);
        var missing = await TestHost.RunAsync(["run", "--source", source, "--recording", "other", "--target", sim.HttpAddress.ToString()]);

        Assert.True(list.ExitCode == 0, list.ToString());
        Assert.Contains("capture", list.Output, StringComparison.Ordinal);
        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal(recorded, sim.Stats.Completed);
        Assert.True(missing.ExitCode == 2, missing.ToString());
        Assert.Contains("not found in the Redis", missing.Error, StringComparison.Ordinal);
    }
}
