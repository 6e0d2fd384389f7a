using System.Net.Http.Json;
using System.Text.Json;
using Contracts.Recording;
using TestSupport;

namespace Gateway.Tests.Recording;

/// <summary>
/// A gateway that records to a real store (a temporary file store directory, or a real redis-server), with the
/// admin calls and read-back helpers the recording tests share.
/// </summary>
internal sealed class RecordingHarness : IAsyncDisposable
{
    private readonly string _dir;

    private RecordingHarness(GatewayHarness h, IRecordingStore store, string dir)
    {
        H = h;
        Store = store;
        _dir = dir;
        Admin = new HttpClient { BaseAddress = h.Admin, Timeout = TimeSpan.FromSeconds(30) };
    }

    public GatewayHarness H { get; }

    public IRecordingStore Store { get; }

    public HttpClient Admin { get; }

    /// <summary>Starts a gateway recording to <paramref name="redis"/> when given, else to a temporary file store.</summary>
    public static async Task<RecordingHarness> StartAsync(RedisServer? redis, GatewayHarness.Options? options = null)
    {
        options ??= new GatewayHarness.Options();
        var dir = Directory.CreateTempSubdirectory("gw-rec-").FullName;
        if (redis is not null)
        {
            options.Gateway["Gateway:Recording:Redis"] = redis.ConnectionString;
        }
        else
        {
            options.Gateway["Gateway:Recording:Directory"] = dir;
        }

        var h = await GatewayHarness.StartAsync(options);
        IRecordingStore store = redis is not null ? await RedisRecordingStore.ConnectAsync(redis.ConnectionString) : new FileRecordingStore(dir);
        return new RecordingHarness(h, store, dir);
    }

    public async Task StartRecordingAsync(string name)
    {
        using var r = await Admin.PostAsync($"/admin/recordings/{name}/start", null);
        r.EnsureSuccessStatusCode();
    }

    public async Task StopRecordingAsync(string name)
    {
        using var r = await Admin.PostAsync($"/admin/recordings/{name}/stop", null);
        r.EnsureSuccessStatusCode();
    }

    /// <summary>The admin API's view of recording (written/dropped totals, queue depth).</summary>
    public async Task<JsonElement> StatusAsync()
    {
        using var doc = JsonDocument.Parse(await Admin.GetStringAsync("/admin/recordings"));
        return doc.RootElement.Clone();
    }

    /// <summary>Waits until the writer has accounted for <paramref name="exchanges"/> exchanges (written or dropped) and its queue is empty.</summary>
    public async Task WaitAccountedAsync(long exchanges, TimeSpan within)
    {
        await Eventually.TrueAsync(async () =>
        {
            var s = await StatusAsync();
            return s.GetProperty("queue_depth").GetInt32() == 0
                && s.GetProperty("written").GetInt64() + s.GetProperty("dropped").GetInt64() >= exchanges;
        }, within, () => $"the recording writer did not account for {exchanges} exchanges: {StatusAsync().GetAwaiter().GetResult()}");
    }

    public async Task<List<ExchangeRecord>> ReadAsync(string name)
    {
        var list = new List<ExchangeRecord>();
        await foreach (var x in Store.ReadExchangesAsync(name, CancellationToken.None))
        {
            Assert.Null(x.Error);
            list.Add(x.Record!);
        }

        return list;
    }

    public async ValueTask DisposeAsync()
    {
        Admin.Dispose();
        await H.DisposeAsync();
        await Store.DisposeAsync();
        try
        {
            Directory.Delete(_dir, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}

/// <summary>One redis-server for a test class.</summary>
public sealed class RedisFixture : IAsyncLifetime
{
    public RedisServer Server { get; private set; } = null!;

    public async Task InitializeAsync() => Server = await RedisServer.StartAsync();

    public async Task DisposeAsync() => await Server.DisposeAsync();
}
