using System.Security.Cryptography;
using System.Text;

namespace Gateway.Admin;

/// <summary>The admin API's protection, bound from <c>Gateway:Admin</c>.</summary>
internal sealed record AdminOptions
{
    /// <summary>Configuration section.</summary>
    public const string Section = "Gateway:Admin";

    /// <summary>
    /// Token required by <c>/admin/*</c> (the dashboard's data, recordings' start and stop, export, import), as
    /// <c>Authorization: Bearer TOKEN</c> or <c>X-Admin-Token: TOKEN</c>. Required when the admin listener is bound to anything
    /// but loopback; optional on loopback (when set, it is required there too). <c>/healthz</c>, <c>/readyz</c>,
    /// <c>/metrics</c> and the dashboard page itself stay open.
    /// </summary>
    public string? Token { get; set; }

    /// <summary>
    /// Requests sent through each route on the Http listener at start-up, before <c>/readyz</c> reports ready, so that
    /// JIT compilation and the first backend connections do not fall on the first real traffic
    /// (<see cref="Hosting.Warmup"/>). Default 200; 0 turns warm-up off; must be 0 to 10,000.
    /// </summary>
    [System.ComponentModel.DataAnnotations.Range(0, 10_000)]
    public int WarmupRequests { get; set; } = 200;

    /// <summary>
    /// Seconds of per-second history the dashboard keeps (<see cref="Stats.TrafficHistory"/>), from start-up on: its
    /// charts reach this far back. About 1.6 KB per second that had traffic (at most about 6 MB for the default hour).
    /// Read at start-up (a reload does not resize the ring). Default 3600; must be 60 to 86,400.
    /// </summary>
    [System.ComponentModel.DataAnnotations.Range(60, 86_400)]
    public int HistorySeconds { get; set; } = 3600;

    /// <summary>Whether the request carries the token (compared in constant time). True when no token is configured.</summary>
    public bool Allows(HttpRequest request)
    {
        if (string.IsNullOrEmpty(Token))
        {
            return true;
        }

        string? given = null;
        if (request.Headers.Authorization is { Count: > 0 } auth && auth[0] is { } a && a.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
        {
            given = a[7..].Trim();
        }
        else if (request.Headers.TryGetValue("X-Admin-Token", out var x) && x.Count > 0)
        {
            given = x[0];
        }

        return given is not null && CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(given), Encoding.UTF8.GetBytes(Token));
    }
}

/// <summary>
/// Endpoint filter that refuses an admin call without the token (401, JSON). Stranger review R7: a wrong or missing
/// token counts against the client's address in the same failed-attempt table as the proxy's credentials
/// (<c>Gateway:Auth:FailedAttemptsLimit</c> per <c>FailedAttemptsWindow</c>); past the limit the address is answered 429
/// with <c>Retry-After</c> without its token being compared. Counted as <c>gateway_auth_failures_total{reason="admin_token"}</c>
/// (and <c>rate_limited</c>).
/// </summary>
internal sealed class AdminTokenFilter(AdminOptions options, Tenants.FailedAttempts failed, Tenants.TenantDirectory directory, Tenants.AuthMetrics metrics) : IEndpointFilter
{
    public ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        if (string.IsNullOrEmpty(options.Token))
        {
            return next(context);
        }

        var http = context.HttpContext;
        var auth = directory.Current.Options;
        var address = http.Connection.RemoteIpAddress;
        if (failed.IsBlocked(address, auth.FailedAttemptsLimit, auth.FailedAttemptsWindow, out var retryAfter))
        {
            metrics.Failure(Tenants.AuthFailure.RateLimited);
            http.Response.Headers.RetryAfter = Math.Max(1, (int)Math.Ceiling(retryAfter.TotalSeconds)).ToString(System.Globalization.CultureInfo.InvariantCulture);
            return ValueTask.FromResult<object?>(Results.Json(
                new { error = new { message = $"Too many failed admin token attempts from this address ({auth.FailedAttemptsLimit} per {auth.FailedAttemptsWindow}); try again later.", type = Contracts.Wire.GatewayErrorTypes.RateLimited, code = Contracts.Wire.GatewayErrorCodes.TooManyFailedAttempts } },
                statusCode: StatusCodes.Status429TooManyRequests));
        }

        if (options.Allows(http.Request))
        {
            return next(context);
        }

        if (!failed.Fail(address, auth.FailedAttemptsWindow))
        {
            metrics.Untracked();
        }

        metrics.Failure(Tenants.AuthFailure.AdminToken);
        http.Response.Headers.WWWAuthenticate = "Bearer realm=\"gateway-admin\"";
        return ValueTask.FromResult<object?>(Results.Json(
            new { error = new { message = "This admin call needs the admin token (Authorization: Bearer TOKEN or X-Admin-Token), configured as Gateway:Admin:Token.", type = "unauthorized", code = "admin_token_required" } },
            statusCode: StatusCodes.Status401Unauthorized));
    }
}
