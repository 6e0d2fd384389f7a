using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace ModelSim.Tests.Support;

/// <summary>A small JSON-over-WebSocket client for <c>/v1/stream</c>.</summary>
internal sealed class WebSocketClient : IAsyncDisposable
{
    private readonly ClientWebSocket _socket = new();

    public WebSocket Socket => _socket;

    public static async Task<WebSocketClient> ConnectAsync(ModelSimServer sim)
    {
        var client = new WebSocketClient();
        using var cts = new CancellationTokenSource(Sims.Timeout);
        await client._socket.ConnectAsync(sim.WebSocketAddress, cts.Token);
        return client;
    }

    public Task SendAsync(object message) => SendTextAsync(JsonSerializer.Serialize(message));

    public async Task SendTextAsync(string text)
    {
        using var cts = new CancellationTokenSource(Sims.Timeout);
        await _socket.SendAsync(Encoding.UTF8.GetBytes(text), WebSocketMessageType.Text, true, cts.Token);
    }

    /// <summary>Receives one text message as JSON, or null when the server closed.</summary>
    public async Task<JsonNode?> ReceiveAsync()
    {
        using var cts = new CancellationTokenSource(Sims.Timeout);
        var buffer = new byte[4096];
        using var message = new MemoryStream();
        WebSocketReceiveResult result;
        do
        {
            result = await _socket.ReceiveAsync(buffer, cts.Token);
            if (result.MessageType == WebSocketMessageType.Close)
            {
                return null;
            }

            message.Write(buffer, 0, result.Count);
        }
        while (!result.EndOfMessage);

        Assert.Equal(WebSocketMessageType.Text, result.MessageType);
        return JsonNode.Parse(message.ToArray());
    }

    /// <summary>Sends a request and reads its token frames and final frame.</summary>
    public async Task<(List<JsonNode> Tokens, JsonNode Final)> RequestAsync(object request)
    {
        await SendAsync(request);
        var tokens = new List<JsonNode>();
        while (true)
        {
            var frame = await ReceiveAsync() ?? throw new InvalidOperationException("The server closed the connection.");
            if (frame["token"] is not null)
            {
                tokens.Add(frame);
                continue;
            }

            return (tokens, frame);
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_socket.State == WebSocketState.Open)
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(2));
            try
            {
                await _socket.CloseAsync(WebSocketCloseStatus.NormalClosure, null, cts.Token);
            }
            catch (Exception ex) when (ex is WebSocketException or OperationCanceledException)
            {
                // The test may have broken the connection on purpose.
            }
        }

        _socket.Dispose();
    }
}
