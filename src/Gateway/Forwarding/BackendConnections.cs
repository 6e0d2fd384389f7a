using System.Diagnostics.Metrics;
using System.Net;
using System.Net.Sockets;
using Gateway.Telemetry;

namespace Gateway.Forwarding;

/// <summary>
/// The gateway's side of its connections to backends: opens each one (<see cref="SocketsHttpHandler.ConnectCallback"/>),
/// counts open connections and in-flight forwards per cluster (<c>gateway.backend.connections</c>,
/// <c>gateway.backend.streams</c>), and keeps a backend's early answer (<see cref="EarlyResponseStream"/>).
/// </summary>
internal sealed class BackendConnections
{
    private readonly UpDownCounter<long> _connections;
    private readonly UpDownCounter<long> _streams;

    public BackendConnections(GatewayMetrics metrics)
    {
        _connections = metrics.Meter.CreateUpDownCounter<long>("gateway.backend.connections", "{connection}",
            "Open connections from the gateway to backends, by cluster (HTTP/1.1: one per request in flight or idle in the pool; HTTP/2: shared).");
        _streams = metrics.Meter.CreateUpDownCounter<long>("gateway.backend.streams", "{stream}",
            "Forwards in flight to backends, by cluster: requests, streams and WebSocket sessions from the moment they are forwarded until they end.");
    }

    /// <summary>Counts a forward to <paramref name="cluster"/> that starts (+1) or ends (-1).</summary>
    public void Stream(string cluster, int delta)
    {
        if (_streams.Enabled)
        {
            _streams.Add(delta, new KeyValuePair<string, object?>("cluster", cluster));
        }
    }

    /// <summary>A connect callback for the handler of <paramref name="cluster"/>: a TCP connection with Nagle off, counted while open.</summary>
    public Func<SocketsHttpConnectionContext, CancellationToken, ValueTask<Stream>> ConnectCallback(string cluster) => async (context, cancellationToken) =>
    {
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await socket.ConnectAsync(context.DnsEndPoint, cancellationToken);
        }
        catch
        {
            socket.Dispose();
            throw;
        }

        var tag = new KeyValuePair<string, object?>("cluster", cluster);
        _connections.Add(1, tag);
        return new EarlyResponseStream(socket, () => _connections.Add(-1, tag));
    };
}

/// <summary>
/// A backend connection that keeps the backend's early answer. A server may answer before it has read the whole request
/// body (a 400 or 413 for a request too large) and close the connection (RFC 9112 §9.6 lets it); HttpClient sends an
/// HTTP/1.1 body before it reads the response, so the write that meets the closed connection fails the whole call and
/// the client would get an empty 502 instead of the backend's answer (dotnet/runtime#57186); with
/// <c>Expect: 100-continue</c> HttpClient reads the answer while it sends, then fails the call on the write all the same.
/// Here a write that fails on the socket is absorbed: the rest of the body is discarded and HttpClient goes on to read
/// the answer. If the backend answered, the client gets that answer; if it did not, the read fails and the call fails
/// as a backend failure, as it would have (the connection is not reused: its next read fails).
/// </summary>
internal sealed class EarlyResponseStream(Socket socket, Action onClosed) : NetworkStream(socket, ownsSocket: true)
{
    private bool _discarding;
    private int _closed;

    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (_discarding)
        {
            return;
        }

        try
        {
            await base.WriteAsync(buffer, cancellationToken);
        }
        catch (IOException ex) when (ex.InnerException is SocketException)
        {
            _discarding = true;
        }
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        if (_discarding)
        {
            return;
        }

        try
        {
            base.Write(buffer);
        }
        catch (IOException ex) when (ex.InnerException is SocketException)
        {
            _discarding = true;
        }
    }

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    public override Task FlushAsync(CancellationToken cancellationToken) => _discarding ? Task.CompletedTask : base.FlushAsync(cancellationToken);

    protected override void Dispose(bool disposing)
    {
        if (disposing && Interlocked.Exchange(ref _closed, 1) == 0)
        {
            onClosed();
        }

        base.Dispose(disposing);
    }
}
