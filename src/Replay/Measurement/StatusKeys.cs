using System.Globalization;

namespace Replay.Measurement;

/// <summary>Interned status labels, so classifying a response allocates nothing.</summary>
internal static class StatusKeys
{
    private static readonly string[] s_http = CreateHttp();
    private static readonly string[] s_grpc =
    [
        "grpc:OK", "grpc:CANCELLED", "grpc:UNKNOWN", "grpc:INVALID_ARGUMENT", "grpc:DEADLINE_EXCEEDED", "grpc:NOT_FOUND",
        "grpc:ALREADY_EXISTS", "grpc:PERMISSION_DENIED", "grpc:RESOURCE_EXHAUSTED", "grpc:FAILED_PRECONDITION", "grpc:ABORTED",
        "grpc:OUT_OF_RANGE", "grpc:UNIMPLEMENTED", "grpc:INTERNAL", "grpc:UNAVAILABLE", "grpc:DATA_LOSS", "grpc:UNAUTHENTICATED",
    ];

    /// <summary>A request that got no complete response in time.</summary>
    public const string Timeout = "timeout";

    /// <summary>A request whose connection failed.</summary>
    public const string ConnectionError = "connection_error";

    /// <summary>A WebSocket turn answered in full.</summary>
    public const string WebSocketOk = "ws:ok";

    /// <summary>A generated conversation's turn that its generator could not write (never sent).</summary>
    public const string GeneratorError = "generator_error";

    /// <summary>
    /// Whether a status label is a refusal in its protocol's terms: HTTP 429 or 503, gRPC RESOURCE_EXHAUSTED or
    /// UNAVAILABLE, a WebSocket closed with 1008 or 1013 (for reading a report's <c>by_status</c>, where the label is all
    /// that is left of a response).
    /// </summary>
    public static bool IsRefusal(string key) => key is "429" or "503" or "grpc:RESOURCE_EXHAUSTED" or "grpc:UNAVAILABLE" or "ws:1008" or "ws:1013";

    /// <summary>The label of an HTTP status.</summary>
    public static string Http(int status) => (uint)status < (uint)s_http.Length ? s_http[status] : status.ToString(CultureInfo.InvariantCulture);

    /// <summary>The label of a gRPC status code.</summary>
    public static string Grpc(int code) => (uint)code < (uint)s_grpc.Length ? s_grpc[code] : "grpc:" + code.ToString(CultureInfo.InvariantCulture);

    private static string[] CreateHttp()
    {
        var keys = new string[600];
        for (var i = 0; i < keys.Length; i++)
        {
            keys[i] = i.ToString(CultureInfo.InvariantCulture);
        }

        return keys;
    }
}
