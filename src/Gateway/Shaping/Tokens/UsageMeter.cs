using System.Buffers;
using System.IO.Pipelines;
using Contracts.Streams;
using Inference.V1;
using Microsoft.AspNetCore.Http.Features;

namespace Gateway.Shaping.Tokens;

/// <summary>
/// Watches a response for the token usage the backend reports, so a token-aware limit can correct its up-front charge,
/// through the shared parsers: the <c>usage</c> of a JSON answer (<see cref="OpenAiChunk.TryReadUsage"/>); in a
/// server-sent event stream (<see cref="SseEventReader"/>, each event's data read by <see cref="OpenAiChunk.Parse"/>),
/// the usage and the number of content chunks delivered (what a stream cut short is charged for); for
/// <c>inference.v1</c> gRPC (<see cref="GrpcMessageReader"/>), <c>GenerateReply.tokens</c> or the number of
/// <c>TokenChunk</c> messages. For the GenAI metrics it also notes when the first output token passed (the first SSE
/// event with content, the first message of a gRPC stream) and the <c>model</c> the backend named in its answer.
/// </summary>
/// <remarks>
/// When the gateway itself asked a stream for usage (the client did not), every <c>usage</c> the client did not ask for
/// is removed from what it sees: the usage-only chunk is dropped, and a running-total <c>usage</c> that some backends put
/// on content chunks is removed from the chunk (<see cref="OpenAiChunk.RemoveUsage"/>), the event rewritten with its
/// other fields as they were. Only then are SSE bytes held, each until its event is complete; otherwise every write
/// passes through at once and the events are read on the side.
/// </remarks>
internal sealed class UsageMeter : IHttpResponseBodyFeature, IDisposable, ISseHandler, IGrpcMessageHandler
{
    private const int MaxJsonCapture = 256 * 1024;
    private const int MaxGrpcMessage = 64 * 1024;

    private readonly IHttpResponseBodyFeature _inner;
    private readonly HttpContext _context;
    private readonly bool _stripUsage;
    private readonly Stream _stream;
    private readonly TimeProvider _time;
    private PipeWriter? _writer;
    private Mode _mode;
    private bool _modelRead;

    // SSE
    private SseEventReader? _sse;
    private PooledBytes _held;          // strip mode: the bytes of the event in progress (and what precedes it)
    private long _heldStart;          // stream offset of _held's first byte
    private int _heldDone;            // bytes of _held already decided (forwarded to _forward or dropped)
    private ArrayBufferWriter<byte>? _forward;
    private ArrayBufferWriter<byte>? _rewritten;

    // JSON
    private PooledBytes _json;
    private bool _jsonTooLarge;

    // gRPC
    private GrpcMessageReader? _grpc;
    private bool _unaryGenerate;

    private enum Mode
    {
        Unknown,
        Sse,
        Json,
        Grpc,
        Other,
    }

    public UsageMeter(HttpContext context, IHttpResponseBodyFeature inner, bool stripUsage, TimeProvider time)
    {
        _context = context;
        _inner = inner;
        _stripUsage = stripUsage;
        _time = time;
        _stream = new MeterStream(this);
    }

    /// <summary>
    /// Monotonic timestamp (<see cref="TimeProvider.GetTimestamp"/>) when the first output token passed on its way to
    /// the client: the first SSE event with content, or the first message of a gRPC server stream; 0 when none did (a
    /// non-streamed answer, or a stream that carried no content).
    /// </summary>
    public long FirstTokenTimestamp { get; private set; }

    /// <summary>Whether the answer was a stream of tokens (server-sent events, or a gRPC server stream such as <c>GenerateStream</c>).</summary>
    public bool IsTokenStream => _mode == Mode.Sse || (_mode == Mode.Grpc && !_unaryGenerate);

    /// <summary>
    /// The <c>model</c> the backend named at the top of its JSON answer or of its first SSE chunk, as sent; null when
    /// it named none (gRPC <c>inference.v1</c> has no such field). Unbounded: a caller that tags with it must bound it.
    /// </summary>
    public string? ResponseModel { get; private set; }

    /// <summary>Prompt tokens the backend reported, if it did.</summary>
    public int? PromptTokens { get; private set; }

    /// <summary>Completion tokens the backend reported, if it did.</summary>
    public int? CompletionTokens { get; private set; }

    /// <summary>Content chunks (SSE) or token messages (gRPC streaming) delivered to the client.</summary>
    public int Delivered { get; private set; }

    /// <summary>Told of each chunk as it is delivered (the admission queue's fair share charges output as it is generated); found once, from the exchange.</summary>
    private IOutputTokenSink? _sink;
    private bool _sinkLooked;

    private void TellSink()
    {
        if (!_sinkLooked)
        {
            _sinkLooked = true;
            _sink = Exchange.ExchangeContextExtensions.GetExchange(_context)?.OutputTokens;
        }

        _sink?.Generated(1);
    }

    public Stream Stream => _stream;

    public PipeWriter Writer => _writer ??= PipeWriter.Create(_stream, new StreamPipeWriterOptions(leaveOpen: true));

    public void DisableBuffering() => _inner.DisableBuffering();

    public void Dispose()
    {
        _sse?.Dispose();
        _grpc?.Dispose();
        _held.Release();
        _json.Release();
        _stream.Dispose();
    }

    public Task StartAsync(CancellationToken cancellationToken = default) => _inner.StartAsync(cancellationToken);

    public Task SendFileAsync(string path, long offset, long? count, CancellationToken cancellationToken = default) =>
        SendFileFallback.SendFileAsync(_stream, path, offset, count, cancellationToken);

    public async Task CompleteAsync()
    {
        if (_writer is not null)
        {
            await _writer.FlushAsync();
        }

        await FlushHeldAsync(default);
        await _inner.CompleteAsync();
    }

    /// <summary>Reads what was captured of a JSON answer (call when the exchange has ended).</summary>
    public void Finish()
    {
        if (_mode == Mode.Json && !_jsonTooLarge && _json.Length > 0)
        {
            if (OpenAiChunk.TryReadUsage(_json.Span, out var usage))
            {
                Record(usage);
            }

            if (!_modelRead)
            {
                _modelRead = true;
                ResponseModel = ReadModel(_json.Span);
            }
        }
    }

    void ISseHandler.OnEvent(in SseEvent e)
    {
        var data = e.Data;
        if (OpenAiChunk.IsDone(data))
        {
            Keep(e);
            return;
        }

        var info = OpenAiChunk.Parse(data);
        if (info.HasUsage)
        {
            Record(info.Usage);
        }

        if (info.ContentPieces > 0 && FirstTokenTimestamp == 0)
        {
            FirstTokenTimestamp = _time.GetTimestamp();
        }

        if (!_modelRead && info.Kind == OpenAiChunkKind.Json)
        {
            _modelRead = true; // every chunk of a stream names the same model: the first one is read
            ResponseModel = ReadModel(data);
        }

        if (info.Choices > 0)
        {
            Delivered++;
        }

        if (!_stripUsage)
        {
            return;
        }

        if (info.UsagePlacement == OpenAiUsagePlacement.UsageOnly)
        {
            Drop(e); // the usage chunk the gateway asked for
            return;
        }

        if (info.Kind == OpenAiChunkKind.Json)
        {
            // A running total (or "usage": null) on a content chunk: the chunk without it. Not present: as it was.
            var rewritten = _rewritten ??= new ArrayBufferWriter<byte>(256);
            rewritten.ResetWrittenCount();
            if (OpenAiChunk.RemoveUsage(data, rewritten) == UsageRemoval.Removed)
            {
                Rewrite(e, rewritten.WrittenSpan);
                return;
            }
        }

        Keep(e);
    }

    void IGrpcMessageHandler.OnMessage(in GrpcMessage message)
    {
        Delivered++;
        if (Delivered == 1)
        {
            FirstTokenTimestamp = _time.GetTimestamp();
        }

        TellSink();

        if (Delivered == 1 && _unaryGenerate && !message.IsCompressed)
        {
            try
            {
                CompletionTokens = GenerateReply.Parser.ParseFrom(message.Payload).Tokens;
            }
            catch (Google.Protobuf.InvalidProtocolBufferException)
            {
            }
        }
    }

    void IGrpcMessageHandler.OnMessageSkipped(long length, bool isCompressed, long offset)
    {
        if (++Delivered == 1)
        {
            FirstTokenTimestamp = _time.GetTimestamp();
        }

        TellSink();
    }

    /// <summary>The top-level <c>model</c> string of a JSON object, read with <see cref="System.Text.Json.Utf8JsonReader"/>; null when absent or not JSON.</summary>
    internal static string? ReadModel(ReadOnlySpan<byte> json)
    {
        try
        {
            var reader = new System.Text.Json.Utf8JsonReader(json);
            if (!reader.Read() || reader.TokenType != System.Text.Json.JsonTokenType.StartObject)
            {
                return null;
            }

            while (reader.Read() && reader.TokenType == System.Text.Json.JsonTokenType.PropertyName)
            {
                var isModel = reader.CurrentDepth == 1 && reader.ValueTextEquals("model"u8);
                reader.Read();
                if (isModel)
                {
                    return reader.TokenType == System.Text.Json.JsonTokenType.String ? reader.GetString() : null;
                }

                reader.Skip();
            }
        }
        catch (System.Text.Json.JsonException)
        {
        }
        catch (InvalidOperationException)
        {
        }

        return null;
    }

    private void Record(TokenUsage usage)
    {
        if (usage.PromptTokens >= 0)
        {
            PromptTokens = (int)Math.Min(usage.PromptTokens, int.MaxValue);
        }

        if (usage.CompletionTokens >= 0)
        {
            CompletionTokens = (int)Math.Min(usage.CompletionTokens, int.MaxValue);
        }
    }

    private ValueTask WriteAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        if (_mode == Mode.Unknown)
        {
            StartMode();
        }

        switch (_mode)
        {
            case Mode.Sse when _stripUsage:
                return WriteHeldSseAsync(data, cancellationToken);
            case Mode.Sse:
                // Pass through at once; read whole events on the side.
                _sse!.Append(data.Span, this);
                break;
            case Mode.Json:
                if (!_jsonTooLarge && !_json.TryAppend(data.Span, MaxJsonCapture))
                {
                    _jsonTooLarge = true;
                    _json.Release();
                }

                break;
            case Mode.Grpc:
                _grpc!.Append(data.Span, this);
                break;
        }

        return _inner.Stream.WriteAsync(data, cancellationToken);
    }

    private void StartMode()
    {
        var ct = _context.Response.ContentType;
        if (ct is null)
        {
            _mode = Mode.Other;
        }
        else if (ct.StartsWith("text/event-stream", StringComparison.OrdinalIgnoreCase))
        {
            _mode = Mode.Sse;
            _sse = new SseEventReader();
        }
        else if (ct.StartsWith("application/grpc", StringComparison.OrdinalIgnoreCase))
        {
            _mode = Mode.Grpc;
            _grpc = new GrpcMessageReader(MaxGrpcMessage);
            _unaryGenerate = _context.Request.Path.Value?.EndsWith("/Generate", StringComparison.Ordinal) == true;
        }
        else
        {
            _mode = ct.Contains("json", StringComparison.OrdinalIgnoreCase) ? Mode.Json : Mode.Other;
        }
    }

    /// <summary>Strip mode: holds the bytes until their event is complete, then forwards what the client may see.</summary>
    private async ValueTask WriteHeldSseAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        _held.Append(data.Span);
        var forward = _forward ??= new ArrayBufferWriter<byte>(data.Length + 64);
        forward.ResetWrittenCount();
        _sse!.Append(data.Span, this);
        if (_sse.IsAtEventBoundary)
        {
            // Nothing is pending (blank lines, comments between events): it goes on now.
            forward.Write(_held.Span[_heldDone..]);
            _heldDone = _held.Length;
        }

        _heldStart += _heldDone;
        _held.Discard(_heldDone);
        _heldDone = 0;
        if (forward.WrittenCount > 0)
        {
            await _inner.Stream.WriteAsync(forward.WrittenMemory, cancellationToken);
        }
    }

    /// <summary>Strip mode: forwards the held bytes up to the end of event <paramref name="e"/> as they are.</summary>
    private void Keep(in SseEvent e)
    {
        if (_forward is null || !_stripUsage)
        {
            return;
        }

        var end = (int)(e.EndOffset - _heldStart);
        _forward.Write(_held.Span[_heldDone..end]);
        _heldDone = end;
    }

    /// <summary>Strip mode: forwards what precedes event <paramref name="e"/>, and not the event.</summary>
    private void Drop(in SseEvent e)
    {
        var start = (int)(e.StartOffset - _heldStart);
        _forward!.Write(_held.Span[_heldDone..start]);
        _heldDone = (int)(e.EndOffset - _heldStart);
    }

    /// <summary>
    /// Strip mode: forwards what precedes event <paramref name="e"/>, then the event with <paramref name="data"/> in place
    /// of its data: its lines as they were (<c>event</c>, <c>id</c>, <c>retry</c>, comments, line ends), its
    /// <c>data</c> lines replaced by one.
    /// </summary>
    private void Rewrite(in SseEvent e, ReadOnlySpan<byte> data)
    {
        var start = (int)(e.StartOffset - _heldStart);
        var end = (int)(e.EndOffset - _heldStart);
        var output = _forward!;
        output.Write(_held.Span[_heldDone..start]);
        SseEventWriter.WriteWithData(_held.Span[start..end], data, output);
        _heldDone = end;
    }

    private async ValueTask FlushHeldAsync(CancellationToken cancellationToken)
    {
        if (_mode == Mode.Sse && _stripUsage && _held.Length > 0)
        {
            // An unterminated last event: forwarded as it is.
            await _inner.Stream.WriteAsync(_held.Span.ToArray(), cancellationToken);
            _held.Discard(_held.Length);
        }
    }

    /// <summary>The write stream seen by YARP.</summary>
    private sealed class MeterStream(UsageMeter owner) : Stream
    {
        public override bool CanRead => false;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) => owner.WriteAsync(buffer, cancellationToken);

        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            owner.WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override void Write(byte[] buffer, int offset, int count) =>
            owner.WriteAsync(buffer.AsMemory(offset, count), default).AsTask().GetAwaiter().GetResult();

        public override Task FlushAsync(CancellationToken cancellationToken) => owner._inner.Stream.FlushAsync(cancellationToken);

        public override void Flush() => owner._inner.Stream.Flush();

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();
    }
}

/// <summary>Told of output tokens as they stream to the client (see <see cref="Exchange.ExchangeContext.OutputTokens"/>).</summary>
internal interface IOutputTokenSink
{
    /// <summary><paramref name="tokens"/> more output tokens were delivered.</summary>
    void Generated(int tokens);
}
