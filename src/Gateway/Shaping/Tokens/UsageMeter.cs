using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Text.Json;
using Inference.V1;
using Microsoft.AspNetCore.Http.Features;

namespace Gateway.Shaping.Tokens;

/// <summary>
/// Watches a response for the token usage the backend reports, so a token-aware limit can correct its up-front charge:
/// the <c>usage</c> object of a JSON answer; in a server-sent event stream, the usage chunk and the number of content
/// chunks delivered (what a stream cut short is charged for); for <c>inference.v1</c> gRPC, <c>GenerateReply.tokens</c>
/// or the number of <c>TokenChunk</c> messages. When the gateway itself asked for usage (the client did not), the usage
/// chunk is removed from what the client sees: only then are SSE bytes held until their event is complete.
/// </summary>
internal sealed class UsageMeter : IHttpResponseBodyFeature, IDisposable
{
    private const int MaxJsonCapture = 256 * 1024;
    private static readonly byte[] s_usage = "\"usage\""u8.ToArray();
    private static readonly byte[] s_done = "data: [DONE]"u8.ToArray();

    private readonly IHttpResponseBodyFeature _inner;
    private readonly HttpContext _context;
    private readonly bool _stripUsage;
    private readonly ArrayBufferWriter<byte> _pending = new();
    private readonly Stream _stream;
    private PipeWriter? _writer;
    private Mode _mode;
    private int _scanFrom;
    private int _grpcHeader;
    private int _grpcRemaining;
    private byte[]? _grpcFirst;
    private int _grpcFirstCount;

    private enum Mode
    {
        Unknown,
        Sse,
        Json,
        Grpc,
        Other,
    }

    public UsageMeter(HttpContext context, IHttpResponseBodyFeature inner, bool stripUsage)
    {
        _context = context;
        _inner = inner;
        _stripUsage = stripUsage;
        _stream = new MeterStream(this);
    }

    /// <summary>Prompt tokens the backend reported, if it did.</summary>
    public int? PromptTokens { get; private set; }

    /// <summary>Completion tokens the backend reported, if it did.</summary>
    public int? CompletionTokens { get; private set; }

    /// <summary>Content chunks (SSE) or token messages (gRPC streaming) delivered to the client.</summary>
    public int Delivered { get; private set; }

    public Stream Stream => _stream;

    public PipeWriter Writer => _writer ??= PipeWriter.Create(_stream, new StreamPipeWriterOptions(leaveOpen: true));

    public void DisableBuffering() => _inner.DisableBuffering();

    public void Dispose() => _stream.Dispose();

    public Task StartAsync(CancellationToken cancellationToken = default) => _inner.StartAsync(cancellationToken);

    public Task SendFileAsync(string path, long offset, long? count, CancellationToken cancellationToken = default) =>
        SendFileFallback.SendFileAsync(_stream, path, offset, count, cancellationToken);

    public async Task CompleteAsync()
    {
        if (_writer is not null)
        {
            await _writer.FlushAsync();
        }

        await FlushPendingAsync(default);
        await _inner.CompleteAsync();
    }

    /// <summary>Parses what was captured of a JSON answer (call when the exchange has ended).</summary>
    public void Finish()
    {
        if (_mode == Mode.Json && _pending.WrittenCount > 0)
        {
            ReadUsage(_pending.WrittenSpan);
        }
        else if (_mode == Mode.Grpc && _grpcFirst is not null && _context.Request.Path.Value?.EndsWith("/Generate", StringComparison.Ordinal) == true)
        {
            try
            {
                var reply = GenerateReply.Parser.ParseFrom(_grpcFirst.AsSpan(0, _grpcFirstCount));
                CompletionTokens = reply.Tokens;
            }
            catch (Google.Protobuf.InvalidProtocolBufferException)
            {
            }
        }
    }

    private async ValueTask WriteAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        if (_mode == Mode.Unknown)
        {
            var ct = _context.Response.ContentType;
            _mode = ct is null ? Mode.Other
                : ct.StartsWith("text/event-stream", StringComparison.OrdinalIgnoreCase) ? Mode.Sse
                : ct.StartsWith("application/grpc", StringComparison.OrdinalIgnoreCase) ? Mode.Grpc
                : ct.Contains("json", StringComparison.OrdinalIgnoreCase) ? Mode.Json
                : Mode.Other;
        }

        switch (_mode)
        {
            case Mode.Sse:
                await WriteSseAsync(data, cancellationToken);
                return;
            case Mode.Json:
                if (_pending.WrittenCount + data.Length <= MaxJsonCapture)
                {
                    _pending.Write(data.Span);
                }

                break;
            case Mode.Grpc:
                CountGrpc(data.Span);
                break;
        }

        await _inner.Stream.WriteAsync(data, cancellationToken);
    }

    private async ValueTask WriteSseAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        if (!_stripUsage)
        {
            // Pass through at once; look at whole events on the side.
            _pending.Write(data.Span);
            ConsumeEvents(null);
            await _inner.Stream.WriteAsync(data, cancellationToken);
            return;
        }

        // Hold bytes until their event is complete, then forward every event but the usage chunk.
        _pending.Write(data.Span);
        var forward = new ArrayBufferWriter<byte>(data.Length + 64);
        ConsumeEvents(forward);
        if (forward.WrittenCount > 0)
        {
            await _inner.Stream.WriteAsync(forward.WrittenMemory, cancellationToken);
        }
    }

    /// <summary>Takes every complete event out of <see cref="_pending"/>; kept events go to <paramref name="forward"/> when given.</summary>
    private void ConsumeEvents(ArrayBufferWriter<byte>? forward)
    {
        var span = _pending.WrittenSpan;
        var start = 0;
        while (true)
        {
            var rel = span[Math.Max(start, _scanFrom)..].IndexOf("\n\n"u8);
            if (rel < 0)
            {
                _scanFrom = Math.Max(start, span.Length - 1);
                break;
            }

            var end = Math.Max(start, _scanFrom) + rel + 2;
            var ev = span[start..end];
            var keep = Inspect(ev);
            if (forward is not null && keep)
            {
                forward.Write(ev);
            }

            start = end;
            _scanFrom = start;
        }

        if (start > 0)
        {
            var rest = span[start..].ToArray();
            _pending.Clear();
            _pending.Write(rest);
            _scanFrom = Math.Max(0, _scanFrom - start);
        }
    }

    /// <summary>Reads usage and counts content chunks; false for the usage chunk when it must be stripped.</summary>
    private bool Inspect(ReadOnlySpan<byte> ev)
    {
        if (ev.StartsWith(s_done))
        {
            return true;
        }

        if (ev.IndexOf(s_usage) >= 0)
        {
            var data = ev.IndexOf("data:"u8);
            if (data >= 0 && ReadUsage(ev[(data + 5)..]) is { } emptyChoices)
            {
                if (emptyChoices)
                {
                    return !_stripUsage;
                }
            }
        }

        if (ev.IndexOf("\"choices\""u8) >= 0)
        {
            Delivered++;
        }

        return true;
    }

    /// <summary>Reads a top-level <c>usage</c> object; returns whether <c>choices</c> was empty (a usage-only chunk), or null without usage.</summary>
    private bool? ReadUsage(ReadOnlySpan<byte> json)
    {
        try
        {
            using var doc = JsonDocument.Parse(json.Trim(" \r\n"u8).ToArray());
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("usage", out var usage) || usage.ValueKind != JsonValueKind.Object)
            {
                return null;
            }

            if (usage.TryGetProperty("prompt_tokens", out var p) && p.TryGetInt32(out var pt))
            {
                PromptTokens = pt;
            }

            if (usage.TryGetProperty("completion_tokens", out var c) && c.TryGetInt32(out var ctk))
            {
                CompletionTokens = ctk;
            }

            return !root.TryGetProperty("choices", out var choices) || (choices.ValueKind == JsonValueKind.Array && choices.GetArrayLength() == 0);
        }
        catch (JsonException)
        {
            return null;
        }
    }

    private void CountGrpc(ReadOnlySpan<byte> data)
    {
        // Length-prefixed messages: count them, keep the first (a unary reply) for Finish.
        while (!data.IsEmpty)
        {
            if (_grpcRemaining == 0)
            {
                var take = Math.Min(5 - _grpcHeader, data.Length);
                for (var i = 0; i < take; i++)
                {
                    _grpcHeaderBytes[_grpcHeader + i] = data[i];
                }

                _grpcHeader += take;
                data = data[take..];
                if (_grpcHeader < 5)
                {
                    return;
                }

                _grpcHeader = 0;
                _grpcRemaining = (int)BinaryPrimitives.ReadUInt32BigEndian(_grpcHeaderBytes.AsSpan(1));
                Delivered++;
                if (Delivered == 1)
                {
                    _grpcFirst = new byte[Math.Min(_grpcRemaining, 64 * 1024)];
                }

                if (_grpcRemaining == 0)
                {
                    continue;
                }
            }

            var chunk = Math.Min(_grpcRemaining, data.Length);
            if (Delivered == 1 && _grpcFirst is not null)
            {
                var keep = Math.Min(chunk, _grpcFirst.Length - _grpcFirstCount);
                data[..keep].CopyTo(_grpcFirst.AsSpan(_grpcFirstCount));
                _grpcFirstCount += keep;
            }

            _grpcRemaining -= chunk;
            data = data[chunk..];
        }
    }

    private readonly byte[] _grpcHeaderBytes = new byte[5];

    private async ValueTask FlushPendingAsync(CancellationToken cancellationToken)
    {
        if (_mode == Mode.Sse && _stripUsage && _pending.WrittenCount > 0)
        {
            // An unterminated last event: forward it as it is.
            await _inner.Stream.WriteAsync(_pending.WrittenMemory, cancellationToken);
            _pending.Clear();
            _scanFrom = 0;
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
