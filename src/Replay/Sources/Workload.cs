namespace Replay.Sources;

/// <summary>Which client sends a <see cref="PlannedRequest"/>.</summary>
internal enum RequestProtocol
{
    /// <summary>HTTP/1.1 or HTTP/2 request/response; SSE when <see cref="PlannedRequest.Streamed"/>.</summary>
    Http,

    /// <summary>gRPC over HTTP/2 (unary, or server streaming when <see cref="PlannedRequest.Streamed"/>).</summary>
    Grpc,

    /// <summary>A WebSocket connection carrying <see cref="PlannedRequest.Turns"/> in order.</summary>
    WebSocket,
}

/// <summary>
/// One request (or one WebSocket connection with its turns) ready to send. Immutable and shared: amplified clones
/// reuse the same instance unless their session id had to be rewritten into it.
/// </summary>
internal sealed record PlannedRequest
{
    /// <summary>Which client sends it.</summary>
    public required RequestProtocol Protocol { get; init; }

    /// <summary>HTTP method (<c>POST</c> for gRPC, <c>GET</c> for a WebSocket upgrade).</summary>
    public string Method { get; init; } = "POST";

    /// <summary>Path and query, e.g. <c>/v1/chat/completions</c>.</summary>
    public required string PathAndQuery { get; init; }

    /// <summary>Headers to send (already filtered of hop-by-hop and redacted ones); content headers included.</summary>
    public IReadOnlyList<KeyValuePair<string, string>> Headers { get; init; } = [];

    /// <summary>The body as bytes (a gRPC body is framed: 5-byte prefix and message), or null.</summary>
    public ReadOnlyMemory<byte>? Body { get; init; }

    /// <summary>A body built at send time (so a trace of long prompts does not sit in memory), or null.</summary>
    public SyntheticPrompt? Prompt { get; init; }

    /// <summary>True when the response is a stream (SSE, gRPC server streaming); always true for a WebSocket.</summary>
    public bool Streamed { get; init; }

    /// <summary>Label for per-route figures: the recorded route id, a template's name, or <c>METHOD path</c>.</summary>
    public required string Route { get; init; }

    /// <summary>Milliseconds to wait, after the previous request of the session completed, before this one (think time, already scaled by speed).</summary>
    public double ThinkBeforeMs { get; init; }

    /// <summary>The WebSocket turns (client messages) in order; null unless <see cref="Protocol"/> is WebSocket.</summary>
    public IReadOnlyList<WebSocketTurn>? Turns { get; init; }

    /// <summary>Keep the answer's text in <see cref="Measurement.Outcome.Text"/> (generated conversations).</summary>
    public bool CaptureText { get; init; }

    /// <summary>The recorded response, for <c>--compare</c>; null when there is none (synthetic requests).</summary>
    public RecordedOutcome? Recorded { get; init; }

    /// <summary>
    /// WebSocket: how the client messages in <see cref="Turns"/> are sent. <see cref="WebSocketMode.Turns"/>: one
    /// request per message, each after the server's reply ended (a <c>"done"</c> or <c>"error"</c> message).
    /// <see cref="WebSocketMode.Frames"/>: the messages at their recorded offsets, the server's frames read as they
    /// come, then <see cref="Close"/>; the connection is one request.
    /// </summary>
    public WebSocketMode WebSocketMode { get; init; } = WebSocketMode.Turns;

    /// <summary>WebSocket in <see cref="WebSocketMode.Frames"/>: how the recorded connection ended; null when the recording holds no close frame.</summary>
    public WebSocketClose? Close { get; init; }

    /// <summary>Number of requests this item is at the target: 1, or the number of turns of a WebSocket connection in turn mode.</summary>
    public int RequestCount => Protocol != RequestProtocol.WebSocket ? 1 : WebSocketMode == WebSocketMode.Frames ? 1 : Turns?.Count ?? 0;
}

/// <summary>One client message of a WebSocket session: in turn mode sent after the previous turn's reply ended plus the think time, in frames mode at its offset.</summary>
/// <param name="Payload">The message's bytes, intact (a text message's UTF-8).</param>
/// <param name="Binary">True for a binary message, false for text.</param>
/// <param name="ThinkBeforeMs">Turn mode: ms after the server's previous frame before this message is sent (scaled by speed).</param>
/// <param name="OffsetMs">Frames mode: the message's recorded offset from the start of the connection, ms (scaled by speed).</param>
internal sealed record WebSocketTurn(ReadOnlyMemory<byte> Payload, bool Binary, double ThinkBeforeMs, double OffsetMs = 0);

/// <summary>How a WebSocket connection is replayed (<c>--ws-mode</c>).</summary>
internal enum WebSocketMode
{
    /// <summary>Request/response turns: each client message waits for the server's reply to end with a <c>"done"</c> or <c>"error"</c> message.</summary>
    Turns,

    /// <summary>Any server: client messages at their recorded offsets, server frames read as they come, the recorded close sent.</summary>
    Frames,
}

/// <summary>How a recorded WebSocket connection ended.</summary>
/// <param name="Code">The close status the client sent (1000 when the recording has none the client may send).</param>
/// <param name="Reason">The close reason, or null.</param>
/// <param name="OffsetMs">When the first close frame was recorded, ms from the start of the connection (scaled by speed).</param>
/// <param name="ByServer">True when the server closed first: the replay waits for the server's close and answers it.</param>
internal sealed record WebSocketClose(int Code, string? Reason, double OffsetMs, bool ByServer);

/// <summary>What the recording says the response was, for comparison.</summary>
/// <param name="Status">HTTP status (0 when none).</param>
/// <param name="GrpcStatus">gRPC status, for gRPC exchanges.</param>
/// <param name="BodySha256">Lower-case hex SHA-256 of the full response body, when recorded and not streamed.</param>
internal sealed record RecordedOutcome(int Status, int? GrpcStatus, string? BodySha256);

/// <summary>
/// An OpenAI chat completion whose prompt is exactly <see cref="PromptTokens"/> cl100k tokens
/// (<see cref="Contracts.Tokens.TokenCounter.BuildPrompt"/>'s text), written at send time into a pooled buffer.
/// </summary>
/// <param name="PromptTokens">Prompt length in tokens, ≥ 0.</param>
/// <param name="MaxTokens">Requested output tokens, ≥ 1.</param>
/// <param name="Model">The <c>model</c> field.</param>
/// <param name="Stream">Ask for SSE with usage (<c>stream_options.include_usage</c>).</param>
internal sealed record SyntheticPrompt(int PromptTokens, int MaxTokens, string Model, bool Stream)
{
    private byte[]? _model;

    /// <summary>
    /// Where the prompt's text comes from: null for <see cref="Contracts.Tokens.TokenCounter.BuildPrompt"/>'s
    /// <c>hello hello …</c> (the same for every request); otherwise a shared prefix (<c>--prefix-groups</c>) and text
    /// distinct for every request (<see cref="PromptText"/>), <see cref="PromptTokens"/> being the own part's length.
    /// </summary>
    public PromptText? Text { get; init; }

    /// <summary>The model name as escaped JSON string content (UTF-8), computed once.</summary>
    public ReadOnlySpan<byte> ModelJson => _model ??= System.Text.Json.JsonEncodedText.Encode(Model).EncodedUtf8Bytes.ToArray();
}

/// <summary>A conversation whose user turns a model writes: how many, the pause before each, and the target's request shape.</summary>
/// <param name="Turns">User turns (requests) per conversation.</param>
/// <param name="ThinkMs">Pause after an answer before the next turn is sent, ms.</param>
/// <param name="Path">The target's chat completions path.</param>
/// <param name="Model">The model field sent to the target.</param>
/// <param name="MaxTokens">max_tokens of each target request.</param>
/// <param name="Stream">Whether target requests stream (SSE).</param>
internal sealed record ConversationPlan(int Turns, double ThinkMs, string Path, string Model, int MaxTokens, bool Stream)
{
    /// <summary>Whether user turns come from a generator model (<c>--generate-with</c>); false: scripted synthetic turns.</summary>
    public bool Generated { get; init; }
}

/// <summary>A session: requests sent one after another (each after the previous response plus its think time).</summary>
internal sealed record PlannedSession
{
    /// <summary>The session id sent (a fresh one for an amplified clone).</summary>
    public required string Id { get; init; }

    /// <summary>The recorded id this session was planned from (equal to <see cref="Id"/> unless cloned).</summary>
    public required string OriginalId { get; init; }

    /// <summary>Intended start of the first request, milliseconds from the start of the run (after speed).</summary>
    public double StartOffsetMs { get; init; }

    /// <summary>The requests in order.</summary>
    public required IReadOnlyList<PlannedRequest> Requests { get; init; }

    /// <summary>A generated conversation (<c>--generate-with</c>): its turns are written as the session runs; <see cref="Requests"/> holds its first turn only.</summary>
    public ConversationPlan? Conversation { get; init; }

    /// <summary>Requests at the target (WebSocket turns counted one each).</summary>
    public int RequestCount
    {
        get
        {
            if (Conversation is { } c)
            {
                return c.Turns;
            }

            var n = 0;
            foreach (var r in Requests)
            {
                n += r.RequestCount;
            }

            return n;
        }
    }
}

/// <summary>What a source produced: sessions in start order, plus what it had to skip.</summary>
internal sealed class Workload
{
    /// <summary>Creates a workload.</summary>
    public Workload(string description, IReadOnlyList<PlannedSession> sessions, IReadOnlyList<SkippedRecord> skipped, long skippedTotal)
    {
        Description = description;
        Sessions = sessions;
        Skipped = skipped;
        SkippedTotal = skippedTotal;
    }

    /// <summary>A short description for the console and the report (e.g. <c>file store /tmp/rec, recording demo</c>).</summary>
    public string Description { get; }

    /// <summary>Sessions, ordered by <see cref="PlannedSession.StartOffsetMs"/>.</summary>
    public IReadOnlyList<PlannedSession> Sessions { get; }

    /// <summary>The first skipped records with their reason (at most <see cref="SkippedRecord.MaxKept"/>).</summary>
    public IReadOnlyList<SkippedRecord> Skipped { get; }

    /// <summary>How many records were skipped in all.</summary>
    public long SkippedTotal { get; }

    /// <summary>Records the source stored out of time order (sorted before planning), or null when it had none.</summary>
    public OutOfOrder? OutOfOrder { get; init; }

    /// <summary>Source time, ms, removed by <c>--max-gap</c> (idle stretches shortened); 0 without it.</summary>
    public double SourceTimeRemovedMs { get; init; }

    /// <summary>
    /// Source time, ms, from the first request's recorded start to the last one's (after <c>--max-gap</c>, before
    /// <c>--speed</c>): how long the source took to send what it holds. 0 for a source without timing (a template,
    /// synthetic requests).
    /// </summary>
    public double SpanMs { get; init; }

    /// <summary>Requests at the target over all sessions.</summary>
    public long RequestCount
    {
        get
        {
            long n = 0;
            foreach (var s in Sessions)
            {
                n += s.RequestCount;
            }

            return n;
        }
    }
}

/// <summary>A record a source could not use, and why.</summary>
/// <param name="Position">Where it was (<c>line 7</c>, a stream id, a CSV row).</param>
/// <param name="Reason">Why it was skipped.</param>
internal sealed record SkippedRecord(string Position, string Reason)
{
    /// <summary>How many skipped records are kept with their reason (the rest are only counted).</summary>
    public const int MaxKept = 20;
}

/// <summary>An input problem the user must fix (bad source, unknown recording, malformed file): exit code 2.</summary>
internal sealed class InputException : Exception
{
    public InputException(string message)
        : base(message)
    {
    }

    public InputException(string message, Exception inner)
        : base(message, inner)
    {
    }

    public InputException()
    {
    }
}
