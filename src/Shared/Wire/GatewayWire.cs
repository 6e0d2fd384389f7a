using System.Globalization;
using System.Text;

namespace Contracts.Wire;

/// <summary>
/// Header names on the wire between clients, the gateway and the replay tool. Values are lower case (HTTP/2 and HTTP/3
/// send header names in lower case; HTTP/1.1 names are case-insensitive).
/// </summary>
public static class GatewayHeaders
{
    /// <summary>Response header naming the <see cref="GatewayErrorCodes">error code</see> of an answer the gateway gave itself (every such answer has it).</summary>
    public const string Error = "x-gateway-error";

    /// <summary>Response header (or gRPC trailer) naming the limit that refused a request: a policy name, or <c>admission:{cluster}</c> (<see cref="GatewayLimits"/>).</summary>
    public const string Limit = "x-gateway-limit";

    /// <summary>
    /// Request header the gateway sends to the backend naming the authenticated tenant (issue 13); a client's own is
    /// removed when authentication is on, so a backend can trust it.
    /// </summary>
    public const string Tenant = "x-gateway-tenant";

    /// <summary>Default request header carrying a priority class name (configurable: <c>Gateway:Shaping:Admission:{cluster}:PriorityHeader</c>).</summary>
    public const string Priority = "x-priority";

    /// <summary>Default request header carrying the session id (configurable on the gateway's session sources and replay's <c>--session-header</c>).</summary>
    public const string SessionId = "x-session-id";

    /// <summary>Request header with an API key, one of the sources of the client key.</summary>
    public const string ApiKey = "x-api-key";

    /// <summary><c>Retry-After</c> (RFC 9110 §10.2.3), whole seconds, at least 1, on every refusal.</summary>
    public const string RetryAfter = "retry-after";

    /// <summary>Prefix of the admitted responses' limit headers: <c>x-ratelimit-limit-{unit}</c>, unit <see cref="RateLimitUnitRequests"/> or <see cref="RateLimitUnitTokens"/>.</summary>
    public const string RateLimitLimitPrefix = "x-ratelimit-limit-";

    /// <summary>Prefix of <c>x-ratelimit-remaining-{unit}</c>.</summary>
    public const string RateLimitRemainingPrefix = "x-ratelimit-remaining-";

    /// <summary>Prefix of <c>x-ratelimit-reset-{unit}</c>; the value is a <see cref="GatewayDuration">duration</see> (<c>250ms</c>, <c>1.5s</c>, <c>6m0s</c>).</summary>
    public const string RateLimitResetPrefix = "x-ratelimit-reset-";

    /// <summary>The unit of request-counting limits in the <c>x-ratelimit-*</c> headers.</summary>
    public const string RateLimitUnitRequests = "requests";

    /// <summary>The unit of token-counting limits in the <c>x-ratelimit-*</c> headers.</summary>
    public const string RateLimitUnitTokens = "tokens";
}

/// <summary>How the gateway names a limit in <see cref="GatewayHeaders.Limit"/> and in a WebSocket close reason.</summary>
public static class GatewayLimits
{
    /// <summary>Prefix of a cluster's admission limit (in-flight cap, queue, breaker): <c>admission:{cluster}</c>.</summary>
    public const string AdmissionPrefix = "admission:";

    /// <summary>The limit of failed authentication attempts per client address (<c>Gateway:Auth:FailedAttemptsLimit</c>).</summary>
    public const string FailedAttempts = "auth:failed_attempts";

    /// <summary>The limit name of cluster <paramref name="cluster"/>'s admission.</summary>
    public static string Admission(string cluster) => AdmissionPrefix + cluster;

    /// <summary>The cluster of an admission limit name, or null when <paramref name="limit"/> names a policy.</summary>
    public static string? ClusterOf(string limit) =>
        limit is not null && limit.StartsWith(AdmissionPrefix, StringComparison.Ordinal) ? limit[AdmissionPrefix.Length..] : null;
}

/// <summary>
/// The <c>code</c> of the gateway's own JSON error body (<c>{"error":{"message","type","code"}}</c>), also sent in
/// <see cref="GatewayHeaders.Error"/>, and the first part of a WebSocket close reason. Documented in docs/configuration.md.
/// </summary>
public static class GatewayErrorCodes
{
    /// <summary>404: no route matches on this listener (gRPC UNIMPLEMENTED).</summary>
    public const string RouteNotFound = "route_not_found";

    /// <summary>504: the route's timeout passed (gRPC DEADLINE_EXCEEDED).</summary>
    public const string RouteTimeout = "route_timeout";

    /// <summary>504: the backend was silent for longer than the cluster's activity timeout.</summary>
    public const string BackendTimeout = "backend_timeout";

    /// <summary>502: the backend could not be reached or answered invalidly (gRPC UNAVAILABLE).</summary>
    public const string BackendUnreachable = "backend_unreachable";

    /// <summary>503 with Retry-After: no healthy destination in the cluster.</summary>
    public const string NoAvailableDestination = "no_available_destination";

    /// <summary>413: the request body is over <c>Gateway:Limits:MaxRequestBodyBytes</c>; 429: a request's token estimate is over a Tokens policy's whole budget (no Retry-After: waiting would not help).</summary>
    public const string RequestTooLarge = "request_too_large";

    /// <summary>
    /// 431 (gRPC RESOURCE_EXHAUSTED): the request headers are over <c>Gateway:Limits:MaxRequestHeadersTotalBytes</c> or
    /// <c>MaxRequestHeaderCount</c>.
    /// </summary>
    public const string RequestHeadersTooLarge = "request_headers_too_large";

    /// <summary>400: the client sent an invalid or incomplete body.</summary>
    public const string BadRequestBody = "bad_request_body";

    /// <summary>400: a request header value cannot be forwarded (non-ASCII).</summary>
    public const string InvalidHeader = "invalid_header";

    /// <summary>400: the body of a request that must be inspected is not valid JSON.</summary>
    public const string InvalidJson = "invalid_json";

    /// <summary>405 on the admin listener.</summary>
    public const string MethodNotAllowed = "method_not_allowed";

    /// <summary>401 on the admin listener without the admin token.</summary>
    public const string AdminTokenRequired = "admin_token_required";

    /// <summary>401 (gRPC UNAUTHENTICATED, a WebSocket upgrade answered 401): no credential, or an API key or JWT the gateway does not accept (an expired token says so in the message). OpenAI's code.</summary>
    public const string InvalidApiKey = "invalid_api_key";

    /// <summary>403 (gRPC PERMISSION_DENIED): the tenant may not call the model it named (<c>Gateway:Tenants:{tenant}:Models</c>).</summary>
    public const string ModelNotAllowed = "model_not_allowed";

    /// <summary>400 (gRPC INVALID_ARGUMENT): the request names two different models (the <c>x-model</c> header and the body's <c>model</c>, or <c>?model=</c> twice); the model checked must be the one the backend sees.</summary>
    public const string ModelMismatch = "model_mismatch";

    /// <summary>413 (gRPC RESOURCE_EXHAUSTED) or 400: a tenant with a model allow-list sent a body whose model the gateway cannot check (longer than <c>Gateway:Shaping:MaxInspectBytes</c>, or not a JSON object).</summary>
    public const string ModelUncheckable = "model_uncheckable";

    /// <summary>Refusal, 429 with Retry-After (gRPC RESOURCE_EXHAUSTED): the client address failed authentication <c>Gateway:Auth:FailedAttemptsLimit</c> times in its window (limit <see cref="GatewayLimits.FailedAttempts"/>).</summary>
    public const string TooManyFailedAttempts = "too_many_failed_attempts";

    /// <summary>503 with Retry-After (gRPC UNAVAILABLE): a JWT could not be checked because the identity provider's signing keys (<c>Gateway:Auth:Jwt:Authority</c>) could not be read.</summary>
    public const string IdentityProviderUnavailable = "identity_provider_unavailable";

    /// <summary>500: the gateway itself failed while handling the request (the failure is logged).</summary>
    public const string InternalError = "internal_error";

    /// <summary>Refusal, 429: a request-rate limit (WebSocket close 1008).</summary>
    public const string RateLimited = "rate_limited";

    /// <summary>Refusal, 429: a token limit.</summary>
    public const string TokensExhausted = "tokens_exhausted";

    /// <summary>Refusal, 429: a concurrency limit policy.</summary>
    public const string Concurrency = "concurrency";

    /// <summary>Refusal, 503: a fleet-wide policy with <c>FailMode: Closed</c> while Redis is down (WebSocket close 1013).</summary>
    public const string RedisUnavailable = "redis_unavailable";

    /// <summary>Refusal, 503: the cluster's admission queue is full.</summary>
    public const string QueueFull = "queue_full";

    /// <summary>Refusal, 503: the request waited in the admission queue longer than allowed (or was predicted to).</summary>
    public const string QueueTimeout = "queue_timeout";

    /// <summary>Refusal, 503: a queued request was evicted by a higher-priority one.</summary>
    public const string Evicted = "evicted";

    /// <summary>Refusal, 503: the cluster's circuit breaker is open.</summary>
    public const string CircuitOpen = "circuit_open";

    /// <summary>
    /// WebSocket close 1001 (<see cref="GatewayCloseReason.GoingAway"/>), not a refusal: the connection was silent in both
    /// directions for <c>Gateway:Limits:WebSocketIdleTimeout</c> (<see cref="GatewayCloseReasons.IdleTimeout"/>).
    /// </summary>
    public const string IdleTimeout = "idle_timeout";

    /// <summary>Whether <paramref name="code"/> is a refusal by a limit (429 or 503 with <see cref="GatewayHeaders.Limit"/>), not an error.</summary>
    public static bool IsRefusal(string? code) => code is RateLimited or TokensExhausted or Concurrency or RedisUnavailable or TooManyFailedAttempts
        or QueueFull or QueueTimeout or Evicted or CircuitOpen;

    /// <summary>Whether a refusal with <paramref name="code"/> is an overload (503, gRPC UNAVAILABLE, WebSocket 1013) rather than a rate limit (429, RESOURCE_EXHAUSTED, 1008).</summary>
    public static bool IsOverload(string? code) => code is RedisUnavailable or QueueFull or QueueTimeout or Evicted or CircuitOpen;
}

/// <summary>The <c>type</c> of the gateway's own JSON error body.</summary>
public static class GatewayErrorTypes
{
    /// <summary>404s.</summary>
    public const string NotFound = "not_found";

    /// <summary>504s.</summary>
    public const string Timeout = "timeout";

    /// <summary>400, 405, 413.</summary>
    public const string InvalidRequest = "invalid_request_error";

    /// <summary>502.</summary>
    public const string BadGateway = "bad_gateway";

    /// <summary>503 without a refusal (no healthy destination).</summary>
    public const string Unavailable = "unavailable";

    /// <summary>429 refusals.</summary>
    public const string RateLimited = "rate_limited";

    /// <summary>503 refusals.</summary>
    public const string Overloaded = "overloaded";

    /// <summary>401 on the admin listener (the admin token).</summary>
    public const string Unauthorized = "unauthorized";

    /// <summary>403: an authenticated tenant may not do this (<see cref="GatewayErrorCodes.ModelNotAllowed"/>). OpenAI's type for 403s.</summary>
    public const string PermissionDenied = "permission_error";

    /// <summary>500: the gateway's own failure (<see cref="GatewayErrorCodes.InternalError"/>).</summary>
    public const string GatewayError = "gateway_error";
}

/// <summary>
/// Durations the way LLM APIs write them in rate-limit headers and the gateway in close reasons: <c>250ms</c> (under a
/// second, milliseconds rounded up), <c>1.5s</c> (under a minute, seconds to 3 decimals), <c>6m0s</c>.
/// </summary>
public static class GatewayDuration
{
    /// <summary>Formats <paramref name="t"/>.</summary>
    public static string Format(TimeSpan t) =>
        t < TimeSpan.FromSeconds(1) ? $"{Math.Ceiling(t.TotalMilliseconds).ToString(CultureInfo.InvariantCulture)}ms"
        : t < TimeSpan.FromMinutes(1) ? $"{Math.Round(t.TotalSeconds, 3).ToString(CultureInfo.InvariantCulture)}s"
        : $"{(int)t.TotalMinutes}m{t.Seconds}s";

    /// <summary>Parses what <see cref="Format"/> writes (also <c>1m30.5s</c>, <c>2m</c>); false for anything else.</summary>
    public static bool TryParse(ReadOnlySpan<char> text, out TimeSpan value)
    {
        value = default;
        text = text.Trim();
        if (text.EndsWith("ms", StringComparison.Ordinal))
        {
            if (double.TryParse(text[..^2], NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var ms))
            {
                value = TimeSpan.FromMilliseconds(ms);
                return true;
            }

            return false;
        }

        var total = TimeSpan.Zero;
        var m = text.IndexOf('m');
        if (m >= 0)
        {
            if (!int.TryParse(text[..m], NumberStyles.None, CultureInfo.InvariantCulture, out var minutes))
            {
                return false;
            }

            total = TimeSpan.FromMinutes(minutes);
            text = text[(m + 1)..];
            if (text.IsEmpty)
            {
                value = total;
                return true;
            }
        }

        if (text.Length < 2 || text[^1] != 's'
            || !double.TryParse(text[..^1], NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var seconds))
        {
            return false;
        }

        value = total + TimeSpan.FromSeconds(seconds);
        return true;
    }
}

/// <summary>
/// How the gateway refuses a WebSocket (it accepts the upgrade, then closes at once, since a client cannot read a refused
/// handshake's body): close status <see cref="PolicyViolation"/> for a rate limit, <see cref="TryAgainLater"/> for an
/// overload, and a reason <c>{code}: {limit}</c> or <c>{code}: {limit}; retry after {duration}</c>, at most
/// <see cref="MaxReasonBytes"/> bytes of UTF-8 (RFC 6455 §5.5: a control frame's payload is at most 125 bytes, 2 of
/// them the status code).
/// </summary>
/// <param name="Code">The <see cref="GatewayErrorCodes">error code</see>, e.g. <c>rate_limited</c>.</param>
/// <param name="Limit">The limit that refused (a policy name, or <c>admission:{cluster}</c>); null when the reason names none.</param>
/// <param name="RetryAfter">When the client may try again; null when not given.</param>
public sealed record GatewayCloseReason(string Code, string? Limit, TimeSpan? RetryAfter)
{
    /// <summary>1001 going away (RFC 6455 §7.4.1): the gateway closed an idle WebSocket or is shutting down.</summary>
    public const int GoingAway = 1001;

    /// <summary>1008 policy violation (RFC 6455 §7.4.1): refused by a rate, token or connection limit, or a per-connection message limit.</summary>
    public const int PolicyViolation = 1008;

    /// <summary>1013 try again later (IANA WebSocket Close Code registry): refused by an overload (queue, breaker, Redis down).</summary>
    public const int TryAgainLater = 1013;

    /// <summary>Largest close reason, in UTF-8 bytes (RFC 6455 §5.5: 125 minus the 2-byte status code).</summary>
    public const int MaxReasonBytes = 123;

    private const string RetryAfterMarker = "; retry after ";

    private static readonly System.Buffers.SearchValues<char> s_codeChars = System.Buffers.SearchValues.Create("abcdefghijklmnopqrstuvwxyz0123456789_");

    /// <summary>The close status the gateway uses for a refusal with <paramref name="code"/>: 1013 for an overload, else 1008.</summary>
    public static int StatusFor(string code) => GatewayErrorCodes.IsOverload(code) ? TryAgainLater : PolicyViolation;

    /// <summary>Whether <paramref name="closeStatus"/> is one the gateway refuses a WebSocket with (1008 or 1013).</summary>
    public static bool IsRefusalStatus(int closeStatus) => closeStatus is PolicyViolation or TryAgainLater;

    /// <summary>
    /// The reason text, cut to <see cref="MaxReasonBytes"/> UTF-8 bytes on a character boundary when longer. A shortened
    /// text still parses (the retry time, which comes last, may be lost).
    /// </summary>
    public string Format()
    {
        var text = Limit is null ? Code : $"{Code}: {Limit}";
        if (RetryAfter is { } ra)
        {
            text += RetryAfterMarker + GatewayDuration.Format(ra);
        }

        if (Encoding.UTF8.GetByteCount(text) <= MaxReasonBytes)
        {
            return text;
        }

        var chars = text.Length;
        while (chars > 0 && Encoding.UTF8.GetByteCount(text.AsSpan(0, chars)) > MaxReasonBytes)
        {
            chars--;
        }

        if (chars > 0 && char.IsHighSurrogate(text[chars - 1]))
        {
            chars--;
        }

        return text[..chars];
    }

    /// <inheritdoc cref="Format"/>
    public override string ToString() => Format();

    /// <summary>
    /// Reads a close reason <c>{code}</c>, <c>{code}: {limit}</c> or <c>{code}: {limit}; retry after {duration}</c>.
    /// A retry time that does not parse is left out (null), not an error.
    /// </summary>
    /// <param name="reason">The close frame's reason (<c>WebSocket.CloseStatusDescription</c>).</param>
    /// <param name="value">The parts, when the reason has the gateway's shape.</param>
    /// <returns>False when <paramref name="reason"/> is empty or its code is not a single word of <c>[a-z0-9_]</c>.</returns>
    public static bool TryParse(string? reason, out GatewayCloseReason? value)
    {
        value = null;
        if (string.IsNullOrWhiteSpace(reason))
        {
            return false;
        }

        var text = reason.AsSpan().Trim();
        TimeSpan? retryAfter = null;
        var retry = text.IndexOf(RetryAfterMarker, StringComparison.Ordinal);
        if (retry >= 0)
        {
            if (GatewayDuration.TryParse(text[(retry + RetryAfterMarker.Length)..].TrimEnd('.'), out var ra))
            {
                retryAfter = ra;
            }

            text = text[..retry];
        }

        var colon = text.IndexOf(": ", StringComparison.Ordinal);
        var code = (colon < 0 ? text : text[..colon]).Trim();
        if (code.IsEmpty || code.ContainsAnyExcept(s_codeChars))
        {
            return false;
        }

        var limit = colon < 0 ? default : text[(colon + 2)..].Trim();
        value = new GatewayCloseReason(code.ToString(), limit.IsEmpty ? null : limit.ToString(), retryAfter);
        return true;
    }
}

/// <summary>
/// The close reasons the gateway writes into a proxied WebSocket connection that it ends itself (not a refusal of the
/// upgrade, which is a <see cref="GatewayCloseReason"/> with a refusal code). Each fits a close frame
/// (<see cref="GatewayCloseReason.MaxReasonBytes"/>) for any sane setting; longer texts are cut by the writer.
/// </summary>
public static class GatewayCloseReasons
{
    /// <summary>The configuration key of the WebSocket idle timeout, named in <see cref="IdleTimeout"/>.</summary>
    public const string IdleTimeoutKey = "Gateway:Limits:WebSocketIdleTimeout";

    /// <summary>
    /// With close status 1001 (<see cref="GatewayCloseReason.GoingAway"/>), sent to both the client and the backend: the
    /// connection was silent in both directions for <paramref name="idleTimeout"/>. Shaped like a refusal reason
    /// (<c>idle_timeout: Gateway:Limits:WebSocketIdleTimeout 00:00:30</c>), so <see cref="GatewayCloseReason.TryParse"/>
    /// reads its code (<see cref="GatewayErrorCodes.IdleTimeout"/>).
    /// </summary>
    /// <param name="idleTimeout">The configured idle timeout, written as <c>[d.]hh:mm:ss[.fffffff]</c> (the configuration's own form).</param>
    public static string IdleTimeout(TimeSpan idleTimeout) =>
        $"{GatewayErrorCodes.IdleTimeout}: {IdleTimeoutKey} {idleTimeout.ToString("c", CultureInfo.InvariantCulture)}";

    /// <summary>
    /// With close status 1008 (<see cref="GatewayCloseReason.PolicyViolation"/>), sent to the client: a WebSocket
    /// policy's <c>MessagesPerConnection</c> was reached. Not a refusal reason: the connection had been admitted.
    /// </summary>
    /// <param name="limit">The policy's <c>MessagesPerConnection</c>.</param>
    /// <param name="policy">The policy's name.</param>
    public static string MessageLimit(int limit, string policy) =>
        $"message limit {limit.ToString(CultureInfo.InvariantCulture)} per connection reached (policy {policy})";
}
