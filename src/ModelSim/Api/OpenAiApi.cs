using System.Buffers;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging;
using ModelSim.Engine;

namespace ModelSim.Api;

/// <summary>
/// The HTTP generation endpoints: <c>POST /v1/generate</c> (the simulator's own shape), and the OpenAI-compatible
/// <c>POST /v1/chat/completions</c>, <c>POST /v1/completions</c> (streaming and not) and <c>GET /v1/models</c>, in the
/// shape vLLM serves them.
/// </summary>
/// <remarks>
/// Flow of one request: (1) check the content type and parse the body (source-generated JSON); (2) resolve the prompt
/// tokens and <c>max_tokens</c> (any failure is a 400 in OpenAI's error shape); (3) offer it to the engine, which
/// accepts, queues or refuses at once (503 / 500); (4) tie the client's <see cref="HttpContext.RequestAborted"/> to
/// <see cref="Sequence.Cancel"/> so an abort frees the slot at once; (5) stream each token as it is produced (SSE,
/// flushed per token) or wait for the end and answer once.
/// </remarks>
internal sealed partial class OpenAiApi(GenerationEngine engine, TimeProvider timeProvider, ILogger<OpenAiApi> logger)
{
    private const string ChatChunkObject = "chat.completion.chunk";
    private const string CompletionObject = "text_completion";
    private readonly SimOptions _options = engine.Options;

    private enum Kind
    {
        Generate,
        Chat,
        Completion,
    }

    /// <summary><c>POST /v1/generate</c>: <c>{"prompt","max_tokens","session_id"?}</c> → <c>{"text","tokens","prompt_tokens","finish_reason"}</c>.</summary>
    public async Task GenerateAsync(HttpContext context)
    {
        var body = await ReadBodyAsync(context, SimJsonContext.Default.GenerateBody).ConfigureAwait(false);
        if (body is null)
        {
            return;
        }

        if (!RequestParsing.TryResolveModel(body.Model, _options, out var model, out var error))
        {
            await BadRequestAsync(context, error).ConfigureAwait(false);
            return;
        }

        if (body.Prompt is null)
        {
            await BadRequestAsync(context, ApiError.BadRequest("prompt is required and must be a string.", "missing_prompt", "prompt")).ConfigureAwait(false);
            return;
        }

        if (!RequestParsing.TryResolveMaxTokens(body.MaxTokens, null, _options, required: true, out var maxTokens, out error))
        {
            await BadRequestAsync(context, error).ConfigureAwait(false);
            return;
        }

        var request = RequestParsing.MeasurePrompt(body.Prompt, _blockTokens).ToRequest(maxTokens, _options.Seed);
        await RunAsync(context, Kind.Generate, request, model, stream: false, includeUsage: false).ConfigureAwait(false);
    }

    /// <summary><c>POST /v1/chat/completions</c>.</summary>
    public async Task ChatCompletionsAsync(HttpContext context)
    {
        var body = await ReadBodyAsync(context, SimJsonContext.Default.ChatCompletionBody).ConfigureAwait(false);
        if (body is null)
        {
            return;
        }

        // vLLM checks the model first: once the body parses, a request for another model is a 404 whatever else is wrong with it.
        if (!RequestParsing.TryResolveModel(body.Model, _options, out var model, out var error)
            || !RequestParsing.TryMeasureChat(body.Messages, _blockTokens, out var prompt, out error)
            || !RequestParsing.TryResolveMaxTokens(body.MaxTokens, body.MaxCompletionTokens, _options, required: false, out var maxTokens, out error))
        {
            await BadRequestAsync(context, error).ConfigureAwait(false);
            return;
        }

        var request = prompt.ToRequest(maxTokens, _options.Seed);
        await RunAsync(context, Kind.Chat, request, model, body.Stream == true, body.StreamOptions?.IncludeUsage == true).ConfigureAwait(false);
    }

    /// <summary><c>POST /v1/completions</c>.</summary>
    public async Task CompletionsAsync(HttpContext context)
    {
        var body = await ReadBodyAsync(context, SimJsonContext.Default.CompletionBody).ConfigureAwait(false);
        if (body is null)
        {
            return;
        }

        if (!RequestParsing.TryResolveModel(body.Model, _options, out var model, out var error)
            || !RequestParsing.TryMeasureCompletionPrompt(body.Prompt, _blockTokens, out var prompt, out error)
            || !RequestParsing.TryResolveMaxTokens(body.MaxTokens, body.MaxCompletionTokens, _options, required: false, out var maxTokens, out error))
        {
            await BadRequestAsync(context, error).ConfigureAwait(false);
            return;
        }

        var request = prompt.ToRequest(maxTokens, _options.Seed);
        await RunAsync(context, Kind.Completion, request, model, body.Stream == true, body.StreamOptions?.IncludeUsage == true).ConfigureAwait(false);
    }

    /// <summary><c>GET /v1/models</c>: the one served model.</summary>
    public Task ModelsAsync(HttpContext context)
    {
        var card = new ModelCard(_options.Model, "model", StartedUnixSeconds, "modelsim", _options.Model, _options.MaxTokensLimit);
        return context.Response.WriteAsJsonAsync(new ModelList("list", [card]), SimJsonContext.Default.ModelList, contentType: null, CancellationToken.None);
    }

    /// <summary><c>GET /health</c>: 200 while serving, 500 during a collapse.</summary>
    public Task HealthAsync(HttpContext context)
    {
        var collapsed = engine.IsCollapsed;
        context.Response.StatusCode = collapsed ? StatusCodes.Status500InternalServerError : StatusCodes.Status200OK;
        return context.Response.WriteAsJsonAsync(new HealthResponse(collapsed ? "collapsed" : "ok"), SimJsonContext.Default.HealthResponse, contentType: null, CancellationToken.None);
    }

    /// <summary>Writes <paramref name="error"/> in OpenAI's shape, or aborts the connection if the response already started.</summary>
    public static Task WriteErrorAsync(HttpContext context, ApiError error)
    {
        if (context.Response.HasStarted)
        {
            context.Abort();
            return Task.CompletedTask;
        }

        context.Response.StatusCode = error.Status;
        if (error.Status == StatusCodes.Status503ServiceUnavailable)
        {
            context.Response.Headers.RetryAfter = "1";
        }

        return context.Response.WriteAsJsonAsync(error.ToResponse(), SimJsonContext.Default.ErrorResponse, contentType: null, CancellationToken.None);
    }

    private long StartedUnixSeconds { get; } = timeProvider.GetUtcNow().ToUnixTimeSeconds();

    private readonly int _blockTokens = RequestParsing.BlockTokens(engine.Options);

    private Task BadRequestAsync(HttpContext context, ApiError error)
    {
        engine.CountBadRequest();
        Log.BadRequest(logger, context.Request.Path.Value ?? string.Empty, error.Code, error.Message);
        return WriteErrorAsync(context, error);
    }

    /// <summary>Checks the content type and parses the body; on failure answers 400 (or 413 etc.) and returns null.</summary>
    private async ValueTask<T?> ReadBodyAsync<T>(HttpContext context, JsonTypeInfo<T> typeInfo)
        where T : class
    {
        if (!context.Request.HasJsonContentType())
        {
            await BadRequestAsync(context, ApiError.BadRequest(
                $"Content-Type must be application/json (was {context.Request.ContentType ?? "absent"}).", "unsupported_content_type")).ConfigureAwait(false);
            return null;
        }

        try
        {
            var body = await JsonSerializer.DeserializeAsync(context.Request.Body, typeInfo, context.RequestAborted).ConfigureAwait(false);
            if (body is null)
            {
                await BadRequestAsync(context, ApiError.BadRequest("The request body must be a JSON object.", "invalid_json")).ConfigureAwait(false);
            }

            return body;
        }
        catch (JsonException ex)
        {
            await BadRequestAsync(context, InvalidJson(ex)).ConfigureAwait(false);
        }
        catch (BadHttpRequestException ex)
        {
            engine.CountBadRequest();
            await WriteErrorAsync(context, new ApiError(ex.StatusCode, ex.Message, ApiError.InvalidRequest, "bad_request")).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException && context.RequestAborted.IsCancellationRequested)
        {
            // The client went away while sending the body: nothing to answer.
        }

        return null;
    }

    private async Task RunAsync(HttpContext context, Kind kind, GenerationRequest request, string model, bool stream, bool includeUsage)
    {
        var result = engine.TryAdmit(request, stream, out var sequence);
        if (result != AdmissionResult.Accepted)
        {
            await WriteErrorAsync(context, ApiError.ForRefusal(result, _options)).ConfigureAwait(false);
            return;
        }

        // (4) A client abort frees the slot or queue place at once, whatever this method is awaiting.
        using var registration = context.RequestAborted.UnsafeRegister(static state => ((Sequence)state!).Cancel(), sequence);
        if (stream)
        {
            await StreamAsync(context, kind, sequence!, model, includeUsage).ConfigureAwait(false);
        }
        else
        {
            await AnswerOnceAsync(context, kind, sequence!, model).ConfigureAwait(false);
        }
    }

    private async Task AnswerOnceAsync(HttpContext context, Kind kind, Sequence sequence, string model)
    {
        var outcome = await sequence.Completion.ConfigureAwait(false);
        switch (outcome)
        {
            case SequenceOutcome.Completed:
                break;
            case SequenceOutcome.Cancelled:
                return; // the client is gone
            case SequenceOutcome.Failed:
                await WriteErrorAsync(context, ApiError.Collapsed()).ConfigureAwait(false);
                return;
            default:
                await WriteErrorAsync(context, ApiError.ShuttingDown()).ConfigureAwait(false);
                return;
        }

        var text = TextGenerator.Text(sequence.TextKey, sequence.MaxTokens);
        var usage = new UsageBody(sequence.PromptTokens, sequence.PromptTokens + sequence.MaxTokens, sequence.MaxTokens);
        var response = context.Response;
        switch (kind)
        {
            case Kind.Chat:
                var chat = new ChatCompletionResponse(ResponseId("chatcmpl-", sequence), "chat.completion", NowUnixSeconds(), model,
                    [new ChatChoiceOut(0, new ChatMessageOut("assistant", text), null, "length", null)], usage);
                await response.WriteAsJsonAsync(chat, SimJsonContext.Default.ChatCompletionResponse, contentType: null, CancellationToken.None).ConfigureAwait(false);
                break;
            case Kind.Completion:
                var completion = new CompletionResponse(ResponseId("cmpl-", sequence), CompletionObject, NowUnixSeconds(), model,
                    [new CompletionChoiceOut(0, text, null, "length", null)], usage);
                await response.WriteAsJsonAsync(completion, SimJsonContext.Default.CompletionResponse, contentType: null, CancellationToken.None).ConfigureAwait(false);
                break;
            default:
                var generated = new GenerateResponse(text, sequence.MaxTokens, sequence.PromptTokens, "length");
                await response.WriteAsJsonAsync(generated, SimJsonContext.Default.GenerateResponse, contentType: null, CancellationToken.None).ConfigureAwait(false);
                break;
        }
    }

    private async Task StreamAsync(HttpContext context, Kind kind, Sequence sequence, string model, bool includeUsage)
    {
        var response = context.Response;
        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = "text/event-stream; charset=utf-8";
        response.Headers.CacheControl = "no-cache";
        response.Headers["X-Accel-Buffering"] = "no";
        context.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
        var writer = response.BodyWriter;

        // Headers go out now, as vLLM's do: a queued request is visibly accepted.
        await response.StartAsync(CancellationToken.None).ConfigureAwait(false);
        await writer.FlushAsync(CancellationToken.None).ConfigureAwait(false);

        var chat = kind == Kind.Chat;
        var head = SseFormat.BuildHead(
            chat ? ResponseId("chatcmpl-", sequence) : ResponseId("cmpl-", sequence),
            chat ? ChatChunkObject : CompletionObject,
            NowUnixSeconds(),
            model);
        var last = sequence.MaxTokens - 1;
        var reader = sequence.Tokens;
        var first = true;
        while (await reader.WaitToReadAsync(CancellationToken.None).ConfigureAwait(false))
        {
            while (reader.TryRead(out var index))
            {
                var token = TextGenerator.Utf8(sequence.TextKey, index);
                if (chat)
                {
                    if (first)
                    {
                        SseFormat.WriteChatRole(writer, head);
                        first = false;
                    }

                    SseFormat.WriteChatToken(writer, head, token, index == last);
                }
                else
                {
                    SseFormat.WriteCompletionToken(writer, head, token, index == last);
                }
            }

            // One flush per batch of ready tokens: each token leaves as soon as it is produced.
            var flush = await writer.FlushAsync(CancellationToken.None).ConfigureAwait(false);
            if (flush.IsCompleted || flush.IsCanceled)
            {
                sequence.Cancel();
                return;
            }
        }

        switch (await sequence.Completion.ConfigureAwait(false))
        {
            case SequenceOutcome.Completed:
                if (includeUsage)
                {
                    SseFormat.WriteUsage(writer, head, sequence.PromptTokens, sequence.MaxTokens);
                }

                writer.Write(SseFormat.Done);
                await writer.FlushAsync(CancellationToken.None).ConfigureAwait(false);
                break;
            case SequenceOutcome.Cancelled:
                break;
            default:
                // Collapse or shutdown mid-stream: a dying server drops the connection, it does not end the stream cleanly.
                Log.StreamBroken(logger, context.Request.Path.Value ?? string.Empty);
                context.Abort();
                break;
        }
    }

    /// <summary>A 400 for a body that does not parse, naming where it broke (the field when the JSON is well formed but a value has the wrong type).</summary>
    internal static ApiError InvalidJson(JsonException ex)
    {
        var where = string.Create(CultureInfo.InvariantCulture, $"line {(ex.LineNumber ?? 0) + 1}, byte {(ex.BytePositionInLine ?? 0) + 1}");
        return ex.Path is { Length: > 2 } path
            ? ApiError.BadRequest($"The request body is not valid: the value at {path} is malformed or of the wrong type ({where}).", "invalid_json", path[2..])
            : ApiError.BadRequest($"The request body is not valid JSON ({where}).", "invalid_json");
    }

    private string ResponseId(string prefix, Sequence sequence) =>
        string.Create(CultureInfo.InvariantCulture, $"{prefix}{engine.InstanceTag}{sequence.Id:x8}");

    private long NowUnixSeconds() => timeProvider.GetUtcNow().ToUnixTimeSeconds();
}
