using System.Buffers;
using System.Globalization;
using System.Net.Security;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Security.Cryptography;
using System.Text;

namespace Replay.Clients;

/// <summary>
/// Opens a client WebSocket over a plain socket (TLS for <c>wss://</c>): the RFC 6455 §4.1 opening handshake written
/// by hand, then <see cref="WebSocket.CreateFromStream(Stream, WebSocketCreationOptions)"/>. Unlike
/// <see cref="ClientWebSocket"/> over <see cref="SocketsHttpHandler"/>, an open session then holds only the socket,
/// its stream and the WebSocket — no HTTP connection with its read and write buffers — which is what lets 10,000
/// sessions stay small.
/// </summary>
internal static class WebSocketHandshake
{
    private const int MaxResponseHeaderBytes = 16 * 1024;
    private static ReadOnlySpan<byte> HeaderEnd => "\r\n\r\n"u8;

    /// <summary>Connects, sends the upgrade request with <paramref name="headers"/>, checks the 101 answer and its <c>Sec-WebSocket-Accept</c>.</summary>
    /// <exception cref="WebSocketException">The server refused the upgrade (the message holds its status line).</exception>
    /// <exception cref="SocketException">The connection failed.</exception>
    /// <exception cref="IOException">The connection broke during the handshake.</exception>
    public static async Task<WebSocket> ConnectAsync(Uri uri, IReadOnlyList<KeyValuePair<string, string>> headers, bool insecure, CancellationToken cancellationToken)
    {
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        Stream? stream = null;
        try
        {
            await socket.ConnectAsync(uri.Host, uri.Port, cancellationToken).ConfigureAwait(false);
            stream = new NetworkStream(socket, ownsSocket: true);
            if (uri.Scheme is "wss" or "https")
            {
                var ssl = new SslStream(stream, leaveInnerStreamOpen: false);
                stream = ssl;
                var options = new SslClientAuthenticationOptions { TargetHost = uri.IdnHost };
                if (insecure)
                {
#pragma warning disable CA5359 // --insecure is an explicit opt-in for self-signed test targets.
                    options.RemoteCertificateValidationCallback = static (_, _, _, _) => true;
#pragma warning restore CA5359
                }

                await ssl.AuthenticateAsClientAsync(options, cancellationToken).ConfigureAwait(false);
            }

            Span<byte> nonce = stackalloc byte[16];
            RandomNumberGenerator.Fill(nonce);
            var key = Convert.ToBase64String(nonce);
            var request = new StringBuilder(256)
                .Append("GET ").Append(uri.PathAndQuery).Append(" HTTP/1.1\r\n")
                .Append("Host: ").Append(uri.IsDefaultPort ? uri.IdnHost : uri.IdnHost + ":" + uri.Port.ToString(CultureInfo.InvariantCulture)).Append("\r\n")
                .Append("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n")
                .Append("Sec-WebSocket-Key: ").Append(key).Append("\r\n");
            foreach (var (name, value) in headers)
            {
                request.Append(name).Append(": ").Append(value).Append("\r\n");
            }

            request.Append("\r\n");
            await stream.WriteAsync(Encoding.ASCII.GetBytes(request.ToString()), cancellationToken).ConfigureAwait(false);

            byte[]? leftover = null;
            var buffer = ArrayPool<byte>.Shared.Rent(1024);
            try
            {
                var length = 0;
                int end;
                while ((end = buffer.AsSpan(0, length).IndexOf(HeaderEnd)) < 0)
                {
                    if (length == buffer.Length)
                    {
                        if (length >= MaxResponseHeaderBytes)
                        {
                            throw new WebSocketException(WebSocketError.HeaderError, "the upgrade response headers are too large");
                        }

                        var bigger = ArrayPool<byte>.Shared.Rent(length * 2);
                        buffer.AsSpan(0, length).CopyTo(bigger);
                        ArrayPool<byte>.Shared.Return(buffer);
                        buffer = bigger;
                    }

                    // Reading one byte at a time would be slow; what is read past the headers is kept (leftover).
                    var read = await stream.ReadAsync(buffer.AsMemory(length), cancellationToken).ConfigureAwait(false);
                    if (read == 0)
                    {
                        throw new WebSocketException(WebSocketError.ConnectionClosedPrematurely, "the server closed the connection during the WebSocket handshake");
                    }

                    length += read;
                }

                var head = Encoding.ASCII.GetString(buffer, 0, end);
                var statusLine = head.Split("\r\n", 2)[0];
                if (!statusLine.StartsWith("HTTP/1.1 101", StringComparison.Ordinal))
                {
                    throw new WebSocketUpgradeRefusedException(statusLine, head);
                }

#pragma warning disable CA5350 // RFC 6455 §4.2.2 defines Sec-WebSocket-Accept with SHA-1; it is not used for security here.
                var expected = Convert.ToBase64String(SHA1.HashData(Encoding.ASCII.GetBytes(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")));
#pragma warning restore CA5350
                if (!head.Contains("Sec-WebSocket-Accept: " + expected, StringComparison.OrdinalIgnoreCase))
                {
                    throw new WebSocketException(WebSocketError.HeaderError, "the server's Sec-WebSocket-Accept does not match the key");
                }

                if (end + HeaderEnd.Length != length)
                {
                    // Frames sent right after the 101 (a gateway refusing the session closes it at once, with its
                    // reason): hand them to the WebSocket before anything else is read.
                    leftover = buffer.AsSpan(end + HeaderEnd.Length, length - end - HeaderEnd.Length).ToArray();
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }

            return WebSocket.CreateFromStream(leftover is null ? stream : new PrefixedStream(stream, leftover), new WebSocketCreationOptions { IsServer = false, KeepAliveInterval = Timeout.InfiniteTimeSpan });
        }
        catch
        {
            if (stream is not null)
            {
                await stream.DisposeAsync().ConfigureAwait(false);
            }
            else
            {
                socket.Dispose();
            }

            throw;
        }
    }
}

/// <summary>
/// The server answered the WebSocket upgrade with a status other than 101: a refusal with an HTTP status (a gateway's
/// 429 or 503 naming its limit) rather than a failed connection.
/// </summary>
internal sealed class WebSocketUpgradeRefusedException : IOException
{
    public WebSocketUpgradeRefusedException(string statusLine, string head)
        : base($"the server refused the WebSocket upgrade: {statusLine}")
    {
        var parts = statusLine.Split(' ', 3);
        Status = parts.Length > 1 && int.TryParse(parts[1], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var status) ? status : 0;
        foreach (var line in head.Split("\r\n"))
        {
            var colon = line.IndexOf(':', StringComparison.Ordinal);
            if (colon <= 0)
            {
                continue;
            }

            var name = line[..colon].Trim();
            var value = line[(colon + 1)..].Trim();
            if (name.Equals(Contracts.Wire.GatewayHeaders.Limit, StringComparison.OrdinalIgnoreCase))
            {
                Limit = value;
            }
            else if (name.Equals(Contracts.Wire.GatewayHeaders.Error, StringComparison.OrdinalIgnoreCase))
            {
                GatewayError = value;
            }
        }
    }

    /// <summary>The HTTP status of the answer (0 when the status line could not be read).</summary>
    public int Status { get; }

    /// <summary>The limit a gateway named (<c>x-gateway-limit</c>), or null.</summary>
    public string? Limit { get; }

    /// <summary>The gateway's error code (<c>x-gateway-error</c>), or null.</summary>
    public string? GatewayError { get; }

    /// <summary>Whether the answer is a refusal by a limit: 429, or 503 with a gateway error code (as for HTTP).</summary>
    public bool IsRefusal => Status == 429 || (Status == 503 && GatewayError is not null);
}
