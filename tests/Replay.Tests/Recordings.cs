using System.Buffers.Binary;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Contracts.Recording;
using Google.Protobuf;
using Inference.V1;

namespace Replay.Tests;

/// <summary>Builds recordings as the gateway would write them, straight into a <see cref="FileRecordingStore"/>.</summary>
internal static class Recordings
{
    public const long Origin = 1_700_000_000_000_000; // Unix µs

    /// <summary>
    /// A 10 s capture: 6 HTTP chat sessions of 3 exchanges (every other one streamed over SSE), 2 gRPC sessions
    /// (unary then server streaming) and 2 WebSocket sessions of 3 turns on one connection. 28 requests in all,
    /// session starts spread over 0–9 s, think time 400 ms.
    /// </summary>
    public static async Task<int> WriteCaptureAsync(string directory, string name)
    {
        await using var store = new FileRecordingStore(directory);
        await store.StartAsync(name, CancellationToken.None);
        var exchanges = new List<ExchangeRecord>();
        var sessionIndex = 0;
        for (var s = 0; s < 6; s++)
        {
            var id = $"http-{s}";
            var start = Origin + (sessionIndex++ * 900_000L);
            for (var k = 1; k <= 3; k++)
            {
                var streamed = s % 2 == 0;
                exchanges.Add(Http(name, id, k, start, streamed, $"session {id} turn {k}"));
                start += 50_000 + 400_000;
            }
        }

        for (var s = 0; s < 2; s++)
        {
            var id = $"grpc-{s}";
            var start = Origin + (sessionIndex++ * 900_000L);
            exchanges.Add(Grpc(name, id, 1, start, streamed: false));
            exchanges.Add(Grpc(name, id, 2, start + 450_000, streamed: true));
        }

        for (var s = 0; s < 2; s++)
        {
            var id = $"ws-{s}";
            exchanges.Add(WebSocket(name, id, Origin + (sessionIndex++ * 900_000L), turns: 3));
        }

        exchanges.Sort(static (a, b) => a.Timing.StartUnixMicros.CompareTo(b.Timing.StartUnixMicros));
        await store.AppendAsync(name, exchanges, Sessions(exchanges), CancellationToken.None);
        await store.StopAsync(name, CancellationToken.None);
        return 28;
    }

    public static List<SessionRecord> Sessions(IEnumerable<ExchangeRecord> exchanges) =>
        [.. exchanges.GroupBy(static x => x.SessionId).Select(static g => new SessionRecord
        {
            SessionId = g.Key,
            FirstSeenUnixMicros = g.Min(static x => x.Timing.StartUnixMicros),
            LastSeenUnixMicros = g.Max(static x => x.Timing.StartUnixMicros),
            Count = g.Count(),
        })];

    public static ExchangeRecord Http(string recording, string session, long sequence, long startMicros, bool streamed, string content, int maxTokens = 4)
    {
        var body = $"{{\"model\":\"sim-llm\",\"messages\":[{{\"role\":\"user\",\"content\":\"{content}\"}}],\"max_tokens\":{maxTokens}{(streamed ? ",\"stream\":true" : string.Empty)},\"session_id\":\"{session}\"}}";
        return new ExchangeRecord
        {
            Recording = recording,
            Id = $"{session}-{sequence}",
            SessionId = session,
            Sequence = sequence,
            Protocol = Protocols.Http,
            Streamed = streamed,
            Listener = "http",
            Route = "chat",
            Request = new RecordedRequest
            {
                Method = "POST",
                Path = "/v1/chat/completions",
                Headers = [new("Host", "gateway"), new("Content-Type", "application/json"), new("x-session-id", session), new("Authorization", Redaction.Marker)],
                Body = Body(body),
            },
            Response = new RecordedResponse { Status = 200, Body = streamed ? null : Body("{}") },
            Timing = new RecordedTiming { StartUnixMicros = startMicros, FirstByteMs = 20, DurationMs = 50 },
        };
    }

    public static ExchangeRecord Grpc(string recording, string session, long sequence, long startMicros, bool streamed)
    {
        var message = new GenerateRequest { Prompt = $"session {session} call {sequence}", MaxTokens = 4, SessionId = session };
        var framed = Frame(message);
        return new ExchangeRecord
        {
            Recording = recording,
            Id = $"{session}-{sequence}",
            SessionId = session,
            Sequence = sequence,
            Protocol = Protocols.Grpc,
            Streamed = streamed,
            Listener = "grpc",
            Route = streamed ? "generate-stream" : "generate",
            Request = new RecordedRequest
            {
                Method = "POST",
                Path = streamed ? "/inference.v1.Generation/GenerateStream" : "/inference.v1.Generation/Generate",
                HttpVersion = "HTTP/2",
                Headers = [new("content-type", "application/grpc"), new("te", "trailers"), new("x-session-id", session)],
                Body = new RecordedBody { Length = framed.Length, Sha256 = Sha(framed), Base64 = Convert.ToBase64String(framed) },
            },
            Response = new RecordedResponse { Status = 200, GrpcStatus = 0 },
            Timing = new RecordedTiming { StartUnixMicros = startMicros, FirstByteMs = 20, DurationMs = 50 },
        };
    }

    public static ExchangeRecord WebSocket(string recording, string session, long startMicros, int turns)
    {
        var units = new List<StreamUnit>();
        double t = 10;
        for (var k = 1; k <= turns; k++)
        {
            var text = $"{{\"prompt\":\"session {session} turn {k}\",\"max_tokens\":3,\"session_id\":\"{session}\"}}";
            units.Add(new StreamUnit { Dir = Directions.ToServer, OffsetMs = t, Kind = UnitKinds.Text, Text = text, Length = text.Length });
            for (var i = 0; i < 3; i++)
            {
                units.Add(new StreamUnit { Dir = Directions.ToClient, OffsetMs = t + 10 + i, Kind = UnitKinds.Text, Text = $"{{\"token\":\" x\",\"index\":{i}}}", Length = 20 });
            }

            units.Add(new StreamUnit { Dir = Directions.ToClient, OffsetMs = t + 15, Kind = UnitKinds.Text, Text = "{\"done\":true,\"tokens\":3}", Length = 24 });
            t += 15 + 400;
        }

        return new ExchangeRecord
        {
            Recording = recording,
            Id = $"{session}-1",
            SessionId = session,
            Sequence = 1,
            Protocol = Protocols.WebSocket,
            Streamed = true,
            Listener = "websocket",
            Route = "ws",
            Request = new RecordedRequest { Method = "GET", Path = "/v1/stream", Headers = [new("Upgrade", "websocket"), new("Sec-WebSocket-Key", "abc"), new("x-session-id", session)] },
            Response = new RecordedResponse { Status = 101 },
            Timing = new RecordedTiming { StartUnixMicros = startMicros, FirstByteMs = 1, DurationMs = t },
            Units = units,
        };
    }

    public static RecordedBody Body(string text)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        return new RecordedBody { Length = bytes.Length, Sha256 = Sha(bytes), Text = text };
    }

    public static byte[] Frame(IMessage message)
    {
        var payload = message.ToByteArray();
        var framed = new byte[5 + payload.Length];
        BinaryPrimitives.WriteUInt32BigEndian(framed.AsSpan(1), (uint)payload.Length);
        payload.CopyTo(framed, 5);
        return framed;
    }

    public static string Sha(byte[] bytes) => Convert.ToHexStringLower(SHA256.HashData(bytes));

    public static string Micros(long value) => value.ToString(CultureInfo.InvariantCulture);
}
