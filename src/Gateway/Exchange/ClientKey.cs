using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Primitives;

namespace Gateway.Exchange;

/// <summary>
/// The client key of a request: who is calling, never a secret. An API key (a bearer token or an
/// <c>x-api-key</c> / <c>api-key</c> header) becomes <c>key:</c> plus the first 16 hex digits of its SHA-256, so that
/// recordings, logs and limits can tell tenants apart without holding their credentials; without one, the client
/// address (<c>ip:127.0.0.1</c>).
/// </summary>
internal static class ClientKey
{
    /// <summary>The API key as sent (bearer token or key header), or null.</summary>
    public static string? ApiKey(HttpRequest request)
    {
        var headers = request.Headers;
        if (headers.Authorization is { Count: > 0 } auth && auth[0] is { } a && a.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) && a.Length > 7)
        {
            return a[7..].Trim();
        }

        if (headers.TryGetValue("x-api-key", out var x) && !StringValues.IsNullOrEmpty(x))
        {
            return x[0];
        }

        return headers.TryGetValue("api-key", out var k) && !StringValues.IsNullOrEmpty(k) ? k[0] : null;
    }

    /// <summary>The client key of the request (see the type's remarks).</summary>
    public static string Of(HttpContext context)
    {
        var apiKey = ApiKey(context.Request);
        return apiKey is not null ? Hash(apiKey) : "ip:" + (context.Connection.RemoteIpAddress?.ToString() ?? "unknown");
    }

    /// <summary><c>key:</c> and the first 16 hex digits of the key's SHA-256.</summary>
    public static string Hash(string apiKey)
    {
        Span<byte> hash = stackalloc byte[32];
        SHA256.HashData(Encoding.UTF8.GetBytes(apiKey), hash);
        return "key:" + Convert.ToHexStringLower(hash[..8]);
    }
}
