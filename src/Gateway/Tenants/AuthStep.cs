using Contracts.Wire;
using Gateway.Exchange;
using Gateway.Telemetry;
using Grpc.Core;
using Microsoft.Extensions.Primitives;

namespace Gateway.Tenants;

/// <summary>
/// The authentication step, first of the proxy pipeline (after routing, before classification reads any body): per
/// <c>Gateway:Auth:Mode</c> and the route's <c>Metadata:Auth</c>, the caller's credential names a configured tenant
/// (<see cref="ExchangeContext.Caller"/>, which classification makes <see cref="Classification.Tenant"/>), or the
/// request ends here, before any work and without reaching a backend:
/// <list type="number">
/// <item>A client address over <c>FailedAttemptsLimit</c> failures in its window: 429 <c>too_many_failed_attempts</c>
/// with <c>Retry-After</c>, no credential checked.</item>
/// <item>The credential: <c>Authorization: Bearer</c> (gRPC metadata <c>authorization</c> is the same header),
/// <c>x-api-key</c> or <c>api-key</c>. None: 401 <c>invalid_api_key</c> on a route that requires one; a route with
/// <c>Auth: Optional</c> passes with no tenant.</item>
/// <item>An API key is hashed (SHA-256, on the stack) and looked up in the <see cref="KeyTable"/> (constant-time
/// comparison); a JWT (mode <c>Jwt</c>, or a bearer that looks like one in <c>ApiKeyOrJwt</c>) is validated by
/// <see cref="JwtValidator"/> and its tenant claim must name a configured tenant. Refused: 401 <c>invalid_api_key</c>
/// (an expired token says so), gRPC UNAUTHENTICATED, a WebSocket upgrade answered 401 (not accepted).</item>
/// </list>
/// With <c>Mode: None</c> the step is one comparison. The model allow-list is checked where the model is resolved
/// (<see cref="ClassifyStep"/>, 403 <c>model_not_allowed</c>).
/// </summary>
internal sealed partial class AuthStep(RequestDelegate next, TenantDirectory directory, FailedAttempts failed, AuthMetrics metrics, TimeProvider time, ILogger<AuthStep> logger)
{
    private readonly LogThrottle _throttle = new(time, TimeSpan.FromSeconds(10));

    public Task InvokeAsync(HttpContext context)
    {
        var state = directory.Current;
        if (state.Mode == AuthMode.None)
        {
            return next(context);
        }

        var route = context.GetReverseProxyFeature().Route.Config;
        var required = TenantDirectory.RouteAuthOf(route);
        if (required == RouteAuth.None)
        {
            return next(context);
        }

        var exchange = context.GetExchange()!;
        if (context.Request.Headers.TryGetValue(Hosting.Warmup.MarkerHeader, out var warmup) && Hosting.Warmup.IsMarker(warmup.ToString()))
        {
            return next(context); // the gateway's own start-up warm-up (Hosting/Warmup), as no tenant
        }

        var sent = TryReadCredential(context.Request.Headers, out var source, out var range, out var fromAuthorization);
        var conflicting = Conflicting(context.Request.Headers);
        if (!sent && !fromAuthorization && !conflicting && required == RouteAuth.Optional)
        {
            return next(context);
        }

        var options = state.Options;
        if (failed.IsBlocked(context.Connection.RemoteIpAddress, options.FailedAttemptsLimit, options.FailedAttemptsWindow, out var retryAfter))
        {
            Refuse(context, exchange, route.RouteId, AuthFailure.RateLimited, new GatewayAnswer(StatusCodes.Status429TooManyRequests, StatusCode.ResourceExhausted,
                GatewayErrorTypes.RateLimited, GatewayErrorCodes.TooManyFailedAttempts,
                $"Too many failed authentication attempts from this address ({options.FailedAttemptsLimit} per {options.FailedAttemptsWindow}); try again later.",
                retryAfter, GatewayLimits.FailedAttempts, RefuseUpgrade: true));
            return Task.CompletedTask;
        }

        if (conflicting)
        {
            // Stranger review R1: which credential wins would be a guess; a backend or another proxy might pick another.
            Fail(context, exchange, route.RouteId, AuthFailure.Conflicting,
                "The request carries conflicting credentials (two Authorization headers, or Authorization, x-api-key and api-key with different values); send one.");
            return Task.CompletedTask;
        }

        if (!sent)
        {
            Fail(context, exchange, route.RouteId, AuthFailure.Missing, fromAuthorization
                ? "The Authorization header must be 'Bearer' and an API key or token."
                : "This gateway needs an API key: send 'Authorization: Bearer KEY' (or 'x-api-key: KEY').");
            return Task.CompletedTask;
        }

        var credential = source.AsSpan()[range];
        if (state.AcceptsJwt && (state.Mode == AuthMode.Jwt || JwtValidator.LooksLikeJwt(credential)))
        {
            return JwtAsync(context, exchange, state, route.RouteId, credential.ToString());
        }

        if (!state.AcceptsApiKeys)
        {
            Fail(context, exchange, route.RouteId, AuthFailure.Invalid, "This gateway accepts JWT bearer tokens only, and the credential is not one.");
            return Task.CompletedTask;
        }

        Span<byte> hash = stackalloc byte[ApiKeyHash.Size];
        if (!ApiKeyHash.TryHash(credential, hash) || state.Keys.Find(hash) is not { } key)
        {
            Fail(context, exchange, route.RouteId, AuthFailure.Invalid, "Incorrect API key provided.");
            return Task.CompletedTask;
        }

        exchange.Caller = key.Caller;
        metrics.Success(Tenants.Credential.ApiKey);
        return next(context);
    }

    private async Task JwtAsync(HttpContext context, ExchangeContext exchange, AuthState state, string routeId, string token)
    {
        var result = await state.Jwt!.ValidateAsync(token, exchange.ClientAborted);
        if (result.ProviderUnavailable)
        {
            // Not the caller's failure: not counted against its address.
            Refuse(context, exchange, routeId, AuthFailure.ProviderUnavailable, new GatewayAnswer(StatusCodes.Status503ServiceUnavailable, StatusCode.Unavailable,
                GatewayErrorTypes.Unavailable, GatewayErrorCodes.IdentityProviderUnavailable, result.Message!, TimeSpan.FromSeconds(5), RefuseUpgrade: true));
            return;
        }

        if (result.Tenant is null)
        {
            Fail(context, exchange, routeId, result.Failure!, result.Message!);
            return;
        }

        if (!state.Tenants.TryGetValue(result.Tenant, out var tenant))
        {
            Fail(context, exchange, routeId, AuthFailure.UnknownTenant,
                $"The bearer token's '{state.Options.Jwt.TenantClaim}' claim names no tenant of this gateway.");
            return;
        }

        exchange.Caller = tenant.JwtCaller;
        metrics.Success(Tenants.Credential.Jwt);
        await next(context);
    }

    /// <summary>
    /// The credential sent: the <c>Authorization</c> bearer value, else <c>x-api-key</c>, else <c>api-key</c>, as the
    /// header string that holds it and the range of the credential in it (no copy is made); false when none (or when
    /// <c>Authorization</c> is not a bearer: <paramref name="fromAuthorization"/> is then true).
    /// </summary>
    internal static bool TryReadCredential(IHeaderDictionary headers, out string source, out Range range, out bool fromAuthorization)
    {
        fromAuthorization = false;
        range = default;
        source = "";
        var authorization = headers.Authorization;
        if (authorization.Count > 0 && authorization[0] is { Length: > 0 } a)
        {
            if (a.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
            {
                var start = 7;
                var end = a.Length;
                while (start < end && char.IsWhiteSpace(a[start]))
                {
                    start++;
                }

                while (end > start && char.IsWhiteSpace(a[end - 1]))
                {
                    end--;
                }

                if (end > start)
                {
                    source = a;
                    range = start..end;
                    return true;
                }
            }

            fromAuthorization = true;
            return false;
        }

        if (headers.TryGetValue(GatewayHeaders.ApiKey, out var x) && x.Count > 0 && x[0] is { Length: > 0 } xKey)
        {
            source = xKey;
            range = Range.All;
            return true;
        }

        if (headers.TryGetValue("api-key", out var k) && k.Count > 0 && k[0] is { Length: > 0 } key)
        {
            source = key;
            range = Range.All;
            return true;
        }

        return false;
    }

    /// <summary>
    /// Whether the credential headers disagree: more than one <c>Authorization</c> value, or two of
    /// <c>Authorization: Bearer</c>, <c>x-api-key</c>, <c>api-key</c> (each possibly repeated) with different values.
    /// </summary>
    internal static bool Conflicting(IHeaderDictionary headers)
    {
        var authorization = headers.Authorization;
        if (authorization.Count > 1)
        {
            return true;
        }

        string? seen = null;
        if (authorization.Count == 1 && authorization[0] is { Length: > 7 } a && a.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
        {
            if (a.Contains(',', StringComparison.Ordinal))
            {
                return true; // two Authorization headers joined by a client or proxy ("Bearer a, Bearer b")
            }

            seen = a[7..].Trim();
        }

        return Disagrees(headers, GatewayHeaders.ApiKey, ref seen) || Disagrees(headers, "api-key", ref seen);
    }

    private static bool Disagrees(IHeaderDictionary headers, string name, ref string? seen)
    {
        if (!headers.TryGetValue(name, out var values))
        {
            return false;
        }

        for (var i = 0; i < values.Count; i++)
        {
            // A repeated header may arrive joined by commas (HTTP/1.1 clients do): each part is a value.
            foreach (var part in (values[i] ?? "").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
            {
                if (seen is null)
                {
                    seen = part;
                }
                else if (!string.Equals(seen, part, StringComparison.Ordinal))
                {
                    return true;
                }
            }
        }

        return false;
    }

    private void Fail(HttpContext context, ExchangeContext exchange, string routeId, string reason, string message)
    {
        if (!failed.Fail(context.Connection.RemoteIpAddress, directory.Current.Options.FailedAttemptsWindow))
        {
            metrics.Untracked();
        }

        Refuse(context, exchange, routeId, reason, new GatewayAnswer(StatusCodes.Status401Unauthorized, StatusCode.Unauthenticated,
            GatewayErrorTypes.InvalidRequest, GatewayErrorCodes.InvalidApiKey, message, RefuseUpgrade: true));
    }

    private void Refuse(HttpContext context, ExchangeContext exchange, string routeId, string reason, GatewayAnswer answer)
    {
        metrics.Failure(reason);
        if (_throttle.ShouldLog(reason, out var suppressed))
        {
            // The client's address and the route, never the credential.
            Log.Refused(logger, reason, context.Connection.RemoteIpAddress?.ToString() ?? "unknown", routeId, suppressed);
        }

        exchange.Refuse(answer);
    }
}
