using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Globalization;
using Gateway.Configuration;
using Gateway.Exchange;
using Gateway.Routing;
using Microsoft.AspNetCore.Http.Features;

namespace Gateway.Telemetry.GenAi;

/// <summary>
/// The OpenTelemetry GenAI semantic conventions on the gateway (semantic-conventions <c>docs/gen-ai/gen-ai-metrics.md</c>
/// and <c>gen-ai-spans.md</c>, development status, the <c>gen_ai.provider.name</c> generation, v1.37 and later), recorded
/// once per LLM exchange (<see cref="Classification.GenAiOperation"/>) by <see cref="ExchangeCompletion"/>, beside the
/// gateway's own <c>gateway.*</c> instruments, on the same meter:
/// <list type="bullet">
/// <item><c>gen_ai.server.request.duration</c> (s): from accepting the request to the end of the response, every LLM
/// exchange, with <c>error.type</c> when it ended in an error;</item>
/// <item><c>gen_ai.server.time_to_first_token</c> (s): from accepting the request to the first output token passing
/// on to the client (the first SSE event with content, the first message of a gRPC stream), successful streams only;</item>
/// <item><c>gen_ai.server.time_per_output_token</c> (s): (end − first token) / (output tokens − 1), successful streams
/// with more than one output token (the convention's definition: the decode phase only);</item>
/// <item><c>gen_ai.client.token.usage</c> ({token}, <c>gen_ai.token.type</c> input / output): the usage the backend
/// reported (<c>usage.prompt_tokens</c>, <c>usage.completion_tokens</c>; gRPC <c>GenerateReply.tokens</c>, or the
/// number of <c>TokenChunk</c> messages of a stream, each one token). Nothing is estimated: a stream whose client did
/// not ask for usage records no token usage (as the convention requires of an instrumentation that cannot count
/// tokens), unless a token policy or <c>Gateway:Telemetry:GenAiStreamUsage</c> asked the backend for it.</item>
/// </list>
/// Attributes: <c>gen_ai.operation.name</c>, <c>gen_ai.provider.name</c> (<c>Gateway:Telemetry:GenAiProviderName</c>),
/// <c>gen_ai.request.model</c> (a configured <c>Gateway:Models</c> name the request named, by name or alias, else
/// <c>(other)</c>; <c>(none)</c> when the gateway learnt no model name: the request named none, or nothing read its
/// body or gRPC message, as for a request refused before it was read, so every GenAI series of every protocol carries
/// the attribute, from a bounded set), <c>gen_ai.response.model</c> (the
/// backend's <c>model</c> when it is a configured name, alias or <c>Rewrite</c>, else <c>(other)</c>; absent when the
/// answer named none), <c>server.port</c> (the gateway's listener port), <c>error.type</c>. Every value comes from a
/// bounded set, so a client can create no new series. Bucket boundaries are the convention's.
/// The exchange's server span (ASP.NET Core's activity) gets the same attributes, the token counts as
/// <c>gen_ai.usage.input_tokens</c> / <c>gen_ai.usage.output_tokens</c>, and the convention's name
/// <c>{gen_ai.operation.name} {gen_ai.request.model}</c>.
/// </summary>
internal sealed class GenAiTelemetry
{
    /// <summary>The tag value of a model name that is not configured.</summary>
    public const string OtherModel = "(other)";

    /// <summary>
    /// The <c>gen_ai.request.model</c> value when the gateway learnt no model name (none named, or the body or gRPC
    /// message never read). Before, the attribute was absent then, so refused and unread exchanges fell out of any
    /// per-model query while those that reached a backend were <see cref="OtherModel"/> (stranger review of issue 16).
    /// </summary>
    public const string NoModel = "(none)";

    internal const string OperationName = "gen_ai.operation.name";
    internal const string ProviderName = "gen_ai.provider.name";
    internal const string RequestModel = "gen_ai.request.model";
    internal const string ResponseModel = "gen_ai.response.model";
    internal const string TokenType = "gen_ai.token.type";
    internal const string ServerPort = "server.port";
    internal const string ErrorType = "error.type";
    internal const string InputTokens = "gen_ai.usage.input_tokens";
    internal const string OutputTokens = "gen_ai.usage.output_tokens";

    private static readonly string[] s_statusCodes = CreateStatusCodes();

    private readonly Histogram<double> _duration;
    private readonly Histogram<double> _ttft;
    private readonly Histogram<double> _tpot;
    private readonly Histogram<long> _tokens;
    private readonly ModelCatalog _models;
    private readonly ConfigurationGate _gate;
    private readonly TimeProvider _time;

    public GenAiTelemetry(GatewayMetrics metrics, ModelCatalog models, ConfigurationGate gate, TimeProvider time)
    {
        _models = models;
        _gate = gate;
        _time = time;
        var meter = metrics.Meter;
        _duration = meter.CreateHistogram<double>("gen_ai.server.request.duration", "s",
            "GenAI server request duration: from the gateway accepting an LLM request to the end of its response.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92] });
        _ttft = meter.CreateHistogram<double>("gen_ai.server.time_to_first_token", "s",
            "Time to generate the first token, for successful streamed responses: from accepting the request to the first output token passing the gateway.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0] });
        _tpot = meter.CreateHistogram<double>("gen_ai.server.time_per_output_token", "s",
            "Time per output token generated after the first token, for successful streamed responses: (end - first token) / (output tokens - 1).",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5] });
        _tokens = meter.CreateHistogram<long>("gen_ai.client.token.usage", "{token}",
            "Number of input and output tokens used, as the backend reported them (gen_ai.token.type input / output).",
            advice: new InstrumentAdvice<long> { HistogramBucketBoundaries = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864] });
    }

    /// <summary>
    /// Records the GenAI metrics of an LLM exchange and tags its server span; does nothing for another exchange.
    /// Call once, when the exchange has ended, after <see cref="Shaping.Tokens.UsageMeter.Finish"/>.
    /// </summary>
    /// <param name="context">The request.</param>
    /// <param name="exchange">The exchange (its start time and usage meter).</param>
    /// <param name="outcome">How it ended.</param>
    /// <param name="status">The status the client got (499 for a client that went away).</param>
    /// <param name="elapsedSeconds">From the gateway accepting the request to now, in seconds.</param>
    public void Record(HttpContext context, ExchangeContext exchange, ExchangeOutcome outcome, int status, double elapsedSeconds)
    {
        if (exchange.Classification is not { GenAiOperation: { } operation } classification || !_gate.Current.Telemetry.GenAiMetrics)
        {
            return;
        }

        var activity = context.Features.Get<IHttpActivityFeature>()?.Activity;
        var tagSpan = activity is { IsAllDataRequested: true };
        if (!tagSpan && !_duration.Enabled && !_ttft.Enabled && !_tpot.Enabled && !_tokens.Enabled)
        {
            return;
        }

        var usage = exchange.Usage;
        var requestModel = RequestModelTag(classification);
        var responseModel = usage?.ResponseModel is { } named ? (_models.IsKnownName(named) ? named : OtherModel) : null;
        var error = Error(context, exchange, outcome, status);
        var inputTokens = usage?.PromptTokens;
        int? outputTokens = usage?.CompletionTokens ?? (usage is { IsTokenStream: true, Delivered: > 0 } && classification.IsGrpc ? usage.Delivered : null);

        var tags = new TagList
        {
            { OperationName, operation },
            { ProviderName, _gate.Current.Telemetry.GenAiProviderName },
            { ServerPort, context.Connection.LocalPort },
        };
        if (requestModel is not null)
        {
            tags.Add(RequestModel, requestModel);
        }

        if (responseModel is not null)
        {
            tags.Add(ResponseModel, responseModel);
        }

        if (tagSpan)
        {
            TagSpan(activity!, tags, operation, requestModel, inputTokens, outputTokens, error);
        }

        if (error is null && usage is { IsTokenStream: true, FirstTokenTimestamp: > 0 } stream)
        {
            var ttft = _time.GetElapsedTime(exchange.StartTimestamp, stream.FirstTokenTimestamp).TotalSeconds;
            _ttft.Record(ttft, tags);
            if (outputTokens is { } n && n > 1)
            {
                // gen-ai-metrics.md: the request duration minus the time to the first token, over the tokens after the first.
                _tpot.Record(Math.Max(0, elapsedSeconds - ttft) / (n - 1), tags);
            }
        }

        if (inputTokens is { } input && _tokens.Enabled)
        {
            var t = tags;
            t.Add(TokenType, "input");
            _tokens.Record(input, t);
        }

        if (outputTokens is { } output && _tokens.Enabled)
        {
            var t = tags;
            t.Add(TokenType, "output");
            _tokens.Record(output, t);
        }

        if (error is not null)
        {
            tags.Add(ErrorType, error);
        }

        _duration.Record(elapsedSeconds, tags);
    }

    /// <summary>
    /// The configured model a request named (by name or alias), <see cref="OtherModel"/> for a name that is not
    /// configured, <see cref="NoModel"/> when it named none or its body was not read (no step needed it).
    /// </summary>
    private string RequestModelTag(Classification classification) =>
        classification.RequestedRoute?.Name // looked up once, by the classify step
            ?? (classification.RequestedModel is not null ? OtherModel // named, and not configured
            : classification.Llm?.Model is { } bodyModel ? _models.Find(bodyModel)?.Name ?? OtherModel // read but not routed by (a mismatch refused)
            : NoModel);

    /// <summary>
    /// <c>error.type</c>, or null for a success: the gateway's own error code when it answered (a refusal, a bad
    /// request, <c>route_timeout</c>, <c>internal_error</c>); the gRPC status name of a call that failed (its
    /// <c>grpc-status</c>); otherwise the HTTP status (<c>499</c> for a client that went away, the backend's 4xx/5xx).
    /// All from bounded sets.
    /// </summary>
    private static string? Error(HttpContext context, ExchangeContext exchange, ExchangeOutcome outcome, int status)
    {
        switch (outcome)
        {
            case ExchangeOutcome.Answered when exchange.Answer is { } answer:
                return answer.Code;
            case ExchangeOutcome.Timeout:
                return Contracts.Wire.GatewayErrorCodes.RouteTimeout;
            case ExchangeOutcome.GatewayError:
                return Contracts.Wire.GatewayErrorCodes.InternalError;
        }

        if (status >= 400)
        {
            return status < 600 ? s_statusCodes[status - 400] : "_OTHER";
        }

        if (exchange.Classification?.IsGrpc == true && GrpcStatus(context) is { } code && code != 0)
        {
            return Enum.IsDefined((Grpc.Core.StatusCode)code) ? ((Grpc.Core.StatusCode)code).ToString() : "_OTHER";
        }

        return null;
    }

    private static int? GrpcStatus(HttpContext context)
    {
        var value = context.Features.Get<IHttpResponseTrailersFeature>()?.Trailers["grpc-status"] is { Count: > 0 } trailer ? trailer[0]
            : context.Response.Headers["grpc-status"] is { Count: > 0 } header ? header[0]
            : null;
        return int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var code) ? code : null;
    }

    private static void TagSpan(Activity activity, in TagList tags, string operation, string? requestModel, int? inputTokens, int? outputTokens, string? error)
    {
        foreach (var tag in tags)
        {
            activity.SetTag(tag.Key, tag.Value);
        }

        if (inputTokens is { } input)
        {
            activity.SetTag(InputTokens, input);
        }

        if (outputTokens is { } output)
        {
            activity.SetTag(OutputTokens, output);
        }

        if (error is not null)
        {
            activity.SetTag(ErrorType, error);
        }

        activity.DisplayName = SpanName(operation, requestModel);
    }

    /// <summary>The GenAI span name: <c>{gen_ai.operation.name} {gen_ai.request.model}</c>, or the operation alone without a model (<see cref="NoModel"/>).</summary>
    internal static string SpanName(string operation, string? requestModel) => requestModel is null or NoModel ? operation : $"{operation} {requestModel}";

    /// <summary>
    /// Gives the span its GenAI name again when the ASP.NET Core instrumentation ends it (it names the span after the
    /// route template, <c>POST /v1/{**rest}</c>, when the request ends, after completion has run).
    /// </summary>
    internal static void RenameSpan(Activity activity)
    {
        if (activity.GetTagItem(OperationName) is string operation)
        {
            activity.DisplayName = SpanName(operation, activity.GetTagItem(RequestModel) as string);
        }
    }

    private static string[] CreateStatusCodes()
    {
        var codes = new string[200];
        for (var i = 0; i < codes.Length; i++)
        {
            codes[i] = (i + 400).ToString(CultureInfo.InvariantCulture);
        }

        return codes;
    }
}
