using System.Buffers;
using Contracts.Wire;
using Gateway.Configuration;
using Grpc.Core;
using Microsoft.Extensions.Primitives;

namespace Gateway.Exchange;

/// <summary>
/// The request header limits of <c>Gateway:Limits</c> (<c>MaxRequestHeadersTotalBytes</c>, <c>MaxRequestHeaderCount</c>),
/// and header values the forwarder cannot send (not ASCII: 400 <c>invalid_header</c>), checked in one pass by
/// <see cref="ExchangeMiddleware"/> before routing. A request over them gets 431
/// <c>request_headers_too_large</c> (gRPC RESOURCE_EXHAUSTED) from <see cref="ExchangeCompletion"/>, on HTTP/2 on its
/// own stream.
/// </summary>
/// <remarks>
/// Kestrel enforces its own limits while it parses, and on HTTP/2 a header block over them (or one field over
/// <c>Http2.MaxRequestHeaderFieldSize</c>) can end the whole connection with GOAWAY, since HPACK state cannot be
/// resynchronised half-way (dotnet/aspnetcore#17861). So Kestrel's limits are set to <see cref="KestrelLimit"/>,
/// twice the configured ones: Kestrel decodes every header block up to that, and this check answers. What lies beyond
/// Kestrel's limits is Kestrel's (docs/configuration.md, "Request header limits").
/// </remarks>
internal sealed class RequestHeaderLimit
{
    private readonly int _maxBytes;
    private readonly int _maxCount;

    public RequestHeaderLimit(GatewayLimitsOptions limits)
    {
        _maxBytes = limits.MaxRequestHeadersTotalBytes;
        _maxCount = limits.MaxRequestHeaderCount;
    }

    /// <summary>The limit Kestrel is given for a configured limit: twice it, so that Kestrel parses what we answer.</summary>
    public static int KestrelLimit(int configured) => configured > int.MaxValue / 2 ? int.MaxValue : configured * 2;

    /// <summary>The answer for headers over the limits, or null when they are within them.</summary>
    /// <remarks>Allocation-free for headers within the limits: the pairs are copied into a pooled array and summed.</remarks>
    public GatewayAnswer? Check(IHeaderDictionary headers)
    {
        var count = headers.Count;
        if (count > _maxCount)
        {
            return TooLarge($"The request has {count} headers; the gateway accepts at most {_maxCount} (Gateway:Limits:MaxRequestHeaderCount).");
        }

        var bytes = TotalBytes(headers, out var notAscii);
        if (bytes > _maxBytes)
        {
            return TooLarge($"The request headers total {bytes} bytes (names and values); the gateway accepts at most {_maxBytes} (Gateway:Limits:MaxRequestHeadersTotalBytes).");
        }

        // SocketsHttpHandler sends header values as ASCII only: refused here, before anything is counted against a limit
        // or the backend, instead of the forward failing as a 502.
        return notAscii is null ? null : GatewayAnswer.BadRequest(GatewayErrorCodes.InvalidHeader,
            $"The value of request header '{notAscii}' has non-ASCII characters, which cannot be forwarded; encode it (for example percent-encoding, RFC 8187).");
    }

    /// <summary>The sum of every header's name length and value lengths (each value of a repeated header counted), in chars.</summary>
    /// <remarks>
    /// Enumerating an <see cref="IHeaderDictionary"/> through its interface boxes the enumerator; copying into a pooled
    /// array does not (Kestrel's headers copy without allocating).
    /// </remarks>
    public static long TotalBytes(IHeaderDictionary headers) => TotalBytes(headers, out _);

    /// <summary>The sum of <see cref="TotalBytes(IHeaderDictionary)"/>, and the first header whose value is not ASCII (or null), in one pass.</summary>
    public static long TotalBytes(IHeaderDictionary headers, out string? notAscii)
    {
        notAscii = null;
        var count = headers.Count;
        if (count == 0)
        {
            return 0;
        }

        var pairs = ArrayPool<KeyValuePair<string, StringValues>>.Shared.Rent(count);
        try
        {
            headers.CopyTo(pairs, 0);
            long total = 0;
            for (var i = 0; i < count; i++)
            {
                var (name, values) = pairs[i];
                total += name.Length;
                for (var v = 0; v < values.Count; v++)
                {
                    var value = values[v];
                    total += value?.Length ?? 0;
                    if (notAscii is null && value is not null && !System.Text.Ascii.IsValid(value))
                    {
                        notAscii = name;
                    }
                }
            }

            return total;
        }
        finally
        {
            Array.Clear(pairs, 0, count); // no request's strings kept alive by the pool
            ArrayPool<KeyValuePair<string, StringValues>>.Shared.Return(pairs);
        }
    }

    private static GatewayAnswer TooLarge(string message) =>
        new(StatusCodes.Status431RequestHeaderFieldsTooLarge, StatusCode.ResourceExhausted, GatewayErrorTypes.InvalidRequest,
            GatewayErrorCodes.RequestHeadersTooLarge, message);
}
