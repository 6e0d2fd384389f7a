using System.Buffers;
using System.Net.WebSockets;
using System.Text.Json;
using System.Threading.Channels;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using ModelSim.Engine;

namespace ModelSim.Api;

/// <summary>
/// <c>GET /v1/stream</c> (WebSocket upgrade on the HTTP listener): a long chat session carrying many requests in turn.
/// </summary>
/// <remarks>
/// <para>Protocol, all text frames of JSON:</para>
/// <list type="number">
/// <item>client → <c>{"prompt": "...", "max_tokens": N, "session_id": "..."?, "model": "..."?}</c> (<c>max_tokens</c> absent →
/// <c>Sim:DefaultMaxTokens</c>; a <c>model</c> other than <c>Sim:Model</c> → a <c>model_not_found</c> error frame);</item>
/// <item>server → one <c>{"token":" foo","index":i}</c> per token as it is produced, then
/// <c>{"done":true,"tokens":N,"prompt_tokens":P,"finish_reason":"length"}</c>;</item>
/// <item>a malformed or refused request → <c>{"error":"...","code":"..."}</c> (codes as in HTTP: <c>invalid_json</c>,
/// <c>invalid_max_tokens</c>, <c>queue_full</c>, <c>server_collapsed</c>…); the connection stays usable.</item>
/// </list>
/// <para>The upgrade request may name the model as <c>?model=</c> (or the <c>x-model</c> header): another model than
/// <c>Sim:Model</c> is refused with 404 <c>model_not_found</c> before the upgrade.</para>
/// <para>Requests are served one at a time, in order. A receive loop runs beside the generation so that a client that
/// closes (or drops) the connection mid-generation frees its slot at once.</para>
/// </remarks>
internal sealed partial class WebSocketEndpoint(GenerationEngine engine, IHostApplicationLifetime lifetime, ILogger<WebSocketEndpoint> logger)
{
    /// <summary>Largest request message accepted, in bytes; a larger one is answered with an error frame and skipped.</summary>
    public const int MaxMessageBytes = 1 << 20;

    private static ReadOnlySpan<byte> TokenStart => "{\"token\":\""u8;
    private static ReadOnlySpan<byte> TokenIndex => "\",\"index\":"u8;

    private readonly SimOptions _options = engine.Options;
    private readonly int _blockTokens = RequestParsing.BlockTokens(engine.Options);

    /// <summary>One parsed client message: a request, or the error frame to answer instead.</summary>
    private readonly record struct Inbound(GenerationRequest Request, WebSocketError? Error);

    public async Task HandleAsync(HttpContext context)
    {
        if (!context.WebSockets.IsWebSocketRequest)
        {
            engine.CountBadRequest();
            await OpenAiApi.WriteErrorAsync(context, ApiError.BadRequest("/v1/stream expects a WebSocket upgrade request.", "websocket_required")).ConfigureAwait(false);
            return;
        }

        var named = context.Request.Query["model"].ToString();
        if (named.Length == 0)
        {
            named = context.Request.Headers["x-model"].ToString();
        }

        if (!RequestParsing.TryResolveModel(named, _options, out _, out var notFound))
        {
            engine.CountBadRequest();
            await OpenAiApi.WriteErrorAsync(context, notFound).ConfigureAwait(false);
            return;
        }

        using var socket = await context.WebSockets.AcceptWebSocketAsync().ConfigureAwait(false);
        using var closing = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted, lifetime.ApplicationStopping);
        var inbox = Channel.CreateBounded<Inbound>(new BoundedChannelOptions(16)
        {
            SingleReader = true,
            SingleWriter = true,
            FullMode = BoundedChannelFullMode.Wait,
        });
        var receiving = ReceiveLoopAsync(socket, inbox.Writer, closing);
        var frame = new byte[256];
        try
        {
            while (await inbox.Reader.WaitToReadAsync(closing.Token).ConfigureAwait(false))
            {
                while (inbox.Reader.TryRead(out var message))
                {
                    if (message.Error is { } error)
                    {
                        await SendJsonAsync(socket, error, closing.Token).ConfigureAwait(false);
                        continue;
                    }

                    await ServeAsync(socket, message.Request, frame, closing.Token).ConfigureAwait(false);
                }
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or WebSocketException or ObjectDisposedException)
        {
            // Closed by the client, dropped, or the server is stopping.
        }
        finally
        {
            await closing.CancelAsync().ConfigureAwait(false);
            await receiving.ConfigureAwait(false);
        }

        await CloseAsync(socket).ConfigureAwait(false);
    }

    private async Task ServeAsync(WebSocket socket, GenerationRequest request, byte[] frame, CancellationToken cancellationToken)
    {
        var result = engine.TryAdmit(request, streaming: true, out var sequence);
        if (result != AdmissionResult.Accepted)
        {
            var refusal = ApiError.ForRefusal(result, _options);
            await SendJsonAsync(socket, new WebSocketError(refusal.Message, refusal.Code), cancellationToken).ConfigureAwait(false);
            return;
        }

        using var registration = cancellationToken.UnsafeRegister(static state => ((Sequence)state!).Cancel(), sequence);
        var reader = sequence!.Tokens;
        try
        {
            while (await reader.WaitToReadAsync(CancellationToken.None).ConfigureAwait(false))
            {
                while (reader.TryRead(out var index))
                {
                    var length = FormatToken(frame, TextGenerator.Utf8(sequence.TextKey, index), index);
                    await socket.SendAsync(frame.AsMemory(0, length), WebSocketMessageType.Text, endOfMessage: true, cancellationToken).ConfigureAwait(false);
                }
            }
        }
        catch
        {
            sequence.Cancel();
            throw;
        }

        switch (await sequence.Completion.ConfigureAwait(false))
        {
            case SequenceOutcome.Completed:
                await SendJsonAsync(socket, new WebSocketDone(true, sequence.MaxTokens, sequence.PromptTokens, "length"), cancellationToken).ConfigureAwait(false);
                break;
            case SequenceOutcome.Failed:
                var collapsed = ApiError.Collapsed();
                await SendJsonAsync(socket, new WebSocketError(collapsed.Message, collapsed.Code), cancellationToken).ConfigureAwait(false);
                break;
            case SequenceOutcome.Shutdown:
                var stopping = ApiError.ShuttingDown();
                await SendJsonAsync(socket, new WebSocketError(stopping.Message, stopping.Code), cancellationToken).ConfigureAwait(false);
                break;
            default:
                // Cancelled: the client is gone or closing.
                cancellationToken.ThrowIfCancellationRequested();
                break;
        }
    }

    /// <summary>Reads whole messages, parses them and posts them in order; on close or error cancels <paramref name="closing"/>.</summary>
    private async Task ReceiveLoopAsync(WebSocket socket, ChannelWriter<Inbound> inbox, CancellationTokenSource closing)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(4096);
        var message = new ArrayBufferWriter<byte>(1024);
        try
        {
            while (true)
            {
                message.ResetWrittenCount();
                var tooLarge = false;
                ValueWebSocketReceiveResult received;
                do
                {
                    received = await socket.ReceiveAsync(buffer.AsMemory(), closing.Token).ConfigureAwait(false);
                    if (received.MessageType == WebSocketMessageType.Close)
                    {
                        return;
                    }

                    if (!tooLarge && message.WrittenCount + received.Count <= MaxMessageBytes)
                    {
                        message.Write(buffer.AsSpan(0, received.Count));
                    }
                    else
                    {
                        tooLarge = true;
                    }
                }
                while (!received.EndOfMessage);

                var inbound = received.MessageType == WebSocketMessageType.Binary
                    ? Reject("Binary messages are not supported; send a JSON text message.", "invalid_message")
                    : tooLarge
                        ? Reject($"The message is larger than {MaxMessageBytes} bytes.", "message_too_large")
                        : Parse(message.WrittenSpan);
                await inbox.WriteAsync(inbound, closing.Token).ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or WebSocketException or ObjectDisposedException)
        {
            // The connection ended; the main loop sees the cancellation below.
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
            inbox.TryComplete();
            Log.ReceiveEnded(logger, socket.State);
            await closing.CancelAsync().ConfigureAwait(false);
        }
    }

    private Inbound Parse(ReadOnlySpan<byte> json)
    {
        WebSocketRequestBody? body;
        try
        {
            body = JsonSerializer.Deserialize(json, SimJsonContext.Default.WebSocketRequestBody);
        }
        catch (JsonException ex)
        {
            var invalid = OpenAiApi.InvalidJson(ex);
            return Reject(invalid.Message, invalid.Code);
        }

        if (body is null)
        {
            return Reject("The message must be a JSON object.", "invalid_json");
        }

        if (!RequestParsing.TryResolveModel(body.Model, _options, out _, out var error))
        {
            return Reject(error.Message, error.Code);
        }

        if (body.Prompt is null)
        {
            return Reject("prompt is required and must be a string.", "missing_prompt");
        }

        if (!RequestParsing.TryResolveMaxTokens(body.MaxTokens, null, _options, required: false, out var maxTokens, out error))
        {
            return Reject(error.Message, error.Code);
        }

        return new Inbound(RequestParsing.MeasurePrompt(body.Prompt, _blockTokens).ToRequest(maxTokens, _options.Seed), null);
    }

    private Inbound Reject(string message, string code)
    {
        engine.CountBadRequest();
        return new Inbound(default, new WebSocketError(message, code));
    }

    /// <summary>Formats <c>{"token":"…","index":i}</c> into <paramref name="frame"/>; returns its length.</summary>
    private static int FormatToken(byte[] frame, ReadOnlySpan<byte> token, int index)
    {
        var span = frame.AsSpan();
        TokenStart.CopyTo(span);
        var length = TokenStart.Length;
        token.CopyTo(span[length..]);
        length += token.Length;
        TokenIndex.CopyTo(span[length..]);
        length += TokenIndex.Length;
        System.Buffers.Text.Utf8Formatter.TryFormat(index, span[length..], out var written);
        length += written;
        span[length++] = (byte)'}';
        return length;
    }

    private static Task SendJsonAsync(WebSocket socket, WebSocketError error, CancellationToken cancellationToken) =>
        socket.SendAsync(JsonSerializer.SerializeToUtf8Bytes(error, SimJsonContext.Default.WebSocketError), WebSocketMessageType.Text, true, cancellationToken);

    private static Task SendJsonAsync(WebSocket socket, WebSocketDone done, CancellationToken cancellationToken) =>
        socket.SendAsync(JsonSerializer.SerializeToUtf8Bytes(done, SimJsonContext.Default.WebSocketDone), WebSocketMessageType.Text, true, cancellationToken);

    private static async Task CloseAsync(WebSocket socket)
    {
        try
        {
            if (socket.State is WebSocketState.Open or WebSocketState.CloseReceived)
            {
                await socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None).ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or WebSocketException or ObjectDisposedException)
        {
            // Best effort: the peer may already be gone.
        }
    }
}
