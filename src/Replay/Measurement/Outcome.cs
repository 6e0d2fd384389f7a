namespace Replay.Measurement;

/// <summary>Why a request failed, for <c>failures_by_kind</c>.</summary>
internal enum FailureKind
{
    /// <summary>Succeeded.</summary>
    None,

    /// <summary>An error status: HTTP ≥ 400 (other than a refusal), a gRPC status other than OK, a WebSocket error message.</summary>
    Status,

    /// <summary>No complete response within <c>--timeout</c>.</summary>
    Timeout,

    /// <summary>The connection could not be made or broke (refused, reset, TLS, protocol error).</summary>
    Connection,

    /// <summary>
    /// Refused by a limit: HTTP 429, or 503 with an <c>x-gateway-error</c> header (the gateway's shaping), gRPC
    /// RESOURCE_EXHAUSTED or UNAVAILABLE, or a WebSocket error whose code says the server is full or limited.
    /// </summary>
    Refused,

    /// <summary>
    /// Generated conversations: the <c>--generate-with</c> model could not write the user's turn, so the turn (and the
    /// conversation's later ones) was never sent. Not the target's fault, but the run did not do what it was asked.
    /// </summary>
    Generator,
}

/// <summary>How one request ended, as the client saw it. Times are <see cref="TimeProvider"/> timestamps (0 = never).</summary>
internal struct Outcome
{
    /// <summary>The status label for <c>by_status</c>: <c>200</c>, <c>grpc:OK</c>, <c>ws:ok</c>, <c>timeout</c>, <c>connection_error</c>.</summary>
    public string StatusKey;

    /// <summary>The HTTP status (0 when none).</summary>
    public int HttpStatus;

    /// <summary>The gRPC status, for gRPC requests (-1 when none).</summary>
    public int GrpcStatus;

    /// <summary>Failure classification.</summary>
    public FailureKind Failure;

    /// <summary>When the first response byte (non-streamed) or the first token (streamed) arrived.</summary>
    public long FirstTokenTimestamp;

    /// <summary>When the last token arrived (streamed), for per-stream tokens/s.</summary>
    public long LastTokenTimestamp;

    /// <summary>When the response was complete (or the failure known).</summary>
    public long EndTimestamp;

    /// <summary>Output tokens (stream units, or <c>usage.completion_tokens</c> when the server reported it).</summary>
    public int Tokens;

    /// <summary>True when the response was a token stream (TTFT and inter-token time are meaningful).</summary>
    public bool Streamed;

    /// <summary>Comparison with the recorded response: 0 not compared, 1 same, 2 differs.</summary>
    public byte StatusComparison;

    /// <summary>Body comparison with the recorded response: 0 not compared, 1 same, 2 differs.</summary>
    public byte BodyComparison;

    /// <summary>
    /// For a refusal, the limit that refused it: the gateway's <c>x-gateway-limit</c> header (a policy name, or
    /// <c>admission:CLUSTER</c>), or for a WebSocket the limit named in the close reason; null when not named.
    /// </summary>
    public string? Limit;

    /// <summary>Error detail for the request log (null on success).</summary>
    public string? Error;

    /// <summary>WebSocket messages this request sent (1 per turn; a frames-mode connection's client messages).</summary>
    public int MessagesSent;

    /// <summary>WebSocket messages this request received from the server (whole messages, not fragments).</summary>
    public int MessagesReceived;

    /// <summary>Streamed responses: events that could not be parsed (neither JSON nor <c>[DONE]</c>); they count as no token.</summary>
    public int UnparseableEvents;

    /// <summary>The first unparseable event's data (shortened), or null.</summary>
    public string? FirstUnparseable;

    /// <summary>The answer's text, when the request asked for it (<see cref="Sources.PlannedRequest.CaptureText"/>).</summary>
    public string? Text;
}
