using System.Text;
using Contracts.Recording;

namespace Contracts.Tests.Recording;

/// <summary>The file store: append-only lines, crash-tolerant reading, several writers at once.</summary>
public sealed class FileRecordingStoreTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("rec-file-").FullName;

    internal static ExchangeRecord Exchange(string recording, string session, long sequence, string body) => new()
    {
        Recording = recording,
        Id = Guid.NewGuid().ToString("N"),
        SessionId = session,
        Sequence = sequence,
        Protocol = Protocols.Http,
        Listener = "http",
        Request = new RecordedRequest { Method = "POST", Path = "/v1/generate", Body = new RecordedBody { Length = body.Length, Sha256 = "00", Text = body } },
        Response = new RecordedResponse { Status = 200 },
        Timing = new RecordedTiming { StartUnixMicros = 1_700_000_000_000_000 + sequence, DurationMs = 1 },
    };

    [Fact]
    public async Task Two_writers_appending_to_one_recording_lose_nothing_and_corrupt_nothing()
    {
        // Two stores over one directory stand for two gateways sharing a file store: each batch must land whole.
        await using var a = new FileRecordingStore(_dir);
        await using var b = new FileRecordingStore(_dir);
        await a.StartAsync("shared", CancellationToken.None);
        var body = new string('x', 2000);

        // Many batches of 20 records of 2 KB from two writers at once: unlocked, they would overwrite each other's bytes.
        async Task Write(FileRecordingStore store, string who)
        {
            for (var i = 0; i < 150; i++)
            {
                await store.AppendAsync("shared", [.. Enumerable.Range(1, 20).Select(k => Exchange("shared", who, (20 * i) + k, body))], [], CancellationToken.None);
            }
        }

        await Task.WhenAll(Task.Run(() => Write(a, "a")), Task.Run(() => Write(b, "b")));

        var read = new List<StoredExchange>();
        await foreach (var x in a.ReadExchangesAsync("shared", CancellationToken.None))
        {
            read.Add(x);
        }

        Assert.All(read, x => Assert.Null(x.Error));
        Assert.Equal(6000, read.Count);
        Assert.Equal(3000, read.Count(x => x.Record!.SessionId == "a"));
        Assert.Equal(Enumerable.Range(1, 3000).Select(i => (long)i), read.Where(x => x.Record!.SessionId == "b").Select(x => x.Record!.Sequence));
    }

    [Fact]
    public async Task A_partial_last_line_is_not_read_and_a_corrupt_line_is_reported_by_position()
    {
        await using var store = new FileRecordingStore(_dir);
        await store.AppendAsync("r", [Exchange("r", "s", 1, "one"), Exchange("r", "s", 2, "two")], [], CancellationToken.None);
        var path = store.PathOf("r");
        await File.AppendAllTextAsync(path, "{ this is not json }\n", Encoding.UTF8);
        await store.AppendAsync("r", [Exchange("r", "s", 3, "three")], [], CancellationToken.None);
        await File.AppendAllTextAsync(path, "{\"type\":\"exchange\",\"exch", Encoding.UTF8); // a crash mid-write

        var read = new List<StoredExchange>();
        await foreach (var x in store.ReadExchangesAsync("r", CancellationToken.None))
        {
            read.Add(x);
        }

        Assert.Equal(4, read.Count);
        Assert.Equal(["one", "two", null, "three"], read.Select(x => x.Record?.Request.Body!.Text));
        Assert.Equal("line 3", read[2].Position);
        Assert.StartsWith("not valid JSON", read[2].Error, StringComparison.Ordinal);
        Assert.Equal(3, (await store.GetAsync("r", CancellationToken.None))!.Count);
    }

    [Fact]
    public void Records_round_trip_through_the_serializer_with_every_field()
    {
        var x = Exchange("r", "s", 7, "héllo \"quoted\"") with
        {
            Streamed = true,
            Route = "openai",
            Cluster = "c",
            ClientKey = "key:0123456789abcdef",
            Units = [new StreamUnit { Dir = Directions.ToClient, OffsetMs = 12.5, Kind = UnitKinds.Sse, Text = "data: {}", Length = 8 }],
            Response = new RecordedResponse { Status = 200, Headers = [new RecordedHeader("content-type", "text/event-stream")], GrpcStatus = 0, Trailers = [new RecordedHeader("grpc-status", "0")] },
            Outcome = Outcomes.ClientAbort,
        };

        var json = RecordingSerializer.Serialize(x);
        var back = RecordingSerializer.DeserializeExchange(json);

        Assert.Equal(Encoding.UTF8.GetString(json), Encoding.UTF8.GetString(RecordingSerializer.Serialize(back)));
        Assert.Contains("héllo \\\"quoted\\\"", Encoding.UTF8.GetString(json), StringComparison.Ordinal); // quotes escaped once, non-ASCII kept
        Assert.Contains("[\"content-type\",\"text/event-stream\"]", Encoding.UTF8.GetString(json), StringComparison.Ordinal);
        Assert.Throws<RecordingFormatException>(() => RecordingSerializer.DeserializeExchange(Encoding.UTF8.GetBytes("{\"v\":99,\"recording\":\"r\"}")));
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);
}
