using System.Diagnostics;
using System.Diagnostics.Metrics;
using Gateway.Exchange;
using Gateway.Telemetry;

namespace Gateway.Tenants;

/// <summary>
/// Per-tenant figures, tagged by the tenant's configured name (a bounded label set, never a key; exchanges without a
/// tenant are not counted here). Prometheus names: <c>gateway_tenant_requests_total{tenant,status_class}</c>,
/// <c>gateway_tenant_tokens_total{tenant,gen_ai_token_type}</c> (<c>input</c>: prompt tokens, reported or estimated;
/// <c>output</c>: generated tokens, reported, else the chunks delivered), <c>gateway_tenant_refusals_total{tenant,limit}</c>
/// (limit: the tenant's own limit as <c>requests_per_minute</c>, <c>tokens</c>, <c>in_flight</c>, else the refusing
/// policy or <c>admission:CLUSTER</c>), <c>gateway_tenant_queue_wait_seconds{tenant}</c> (time admitted exchanges
/// waited in the admission queue).
/// </summary>
internal sealed class TenantMetrics
{
    private static readonly string[] s_statusClasses = ["1xx", "2xx", "3xx", "4xx", "5xx"];

    private readonly Counter<long> _requests;
    private readonly Counter<long> _tokens;
    private readonly Counter<long> _refusals;
    private readonly Histogram<double> _queueWait;

    public TenantMetrics(GatewayMetrics metrics)
    {
        var meter = metrics.Meter;
        _requests = meter.CreateCounter<long>("gateway.tenant.requests", "{request}", "Exchanges completed per tenant, by status class (499: the client went away).");
        _tokens = meter.CreateCounter<long>("gateway.tenant.tokens", "{token}", "LLM tokens per tenant: gen_ai.token.type=input (prompt) or output (generated).");
        _refusals = meter.CreateCounter<long>("gateway.tenant.refusals", "{request}", "Exchanges of a tenant refused by a limit, by limit (the tenant's own: requests_per_minute, tokens, in_flight; else the policy or admission:CLUSTER).");
        _queueWait = meter.CreateHistogram<double>("gateway.tenant.queue.wait", "s", "Time a tenant's admitted exchanges waited in the admission queue.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5] });
    }

    /// <summary>An exchange of <paramref name="tenant"/> was admitted after waiting <paramref name="waited"/>.</summary>
    public void QueueWait(string tenant, TimeSpan waited)
    {
        if (_queueWait.Enabled)
        {
            _queueWait.Record(waited.TotalSeconds, new KeyValuePair<string, object?>("tenant", tenant));
        }
    }

    /// <summary>Counts a completed exchange of a tenant (called once by <see cref="ExchangeCompletion"/>, after the finalizers ran).</summary>
    /// <param name="exchange">The exchange; nothing is counted without a tenant.</param>
    /// <param name="outcome">How it ended.</param>
    /// <param name="status">The status the client got.</param>
    public void Completed(ExchangeContext exchange, ExchangeOutcome outcome, int status)
    {
        if (exchange.Classification?.Tenant is not { } tenant)
        {
            return;
        }

        var name = tenant.Name;
        if (_requests.Enabled)
        {
            _requests.Add(1, new TagList { { "tenant", name }, { "status_class", StatusClass(status) } });
        }

        if (outcome == ExchangeOutcome.Answered && exchange.Answer is { Limit: { } limit } && _refusals.Enabled)
        {
            _refusals.Add(1, new TagList { { "tenant", name }, { "limit", LimitTag(name, limit) } });
        }

        if (outcome is ExchangeOutcome.Answered or ExchangeOutcome.GatewayError || !_tokens.Enabled)
        {
            return; // never reached the model
        }

        var usage = exchange.Usage;
        var llm = exchange.Classification.Llm;
        long input = usage?.PromptTokens ?? (llm is { Valid: true } ? llm.PromptTokens : 0);
        long output = usage?.CompletionTokens ?? usage?.Delivered ?? 0;
        if (status >= 400 && usage?.CompletionTokens is null)
        {
            input = 0; // refused or failed by the backend: nothing was generated
        }

        if (input > 0)
        {
            _tokens.Add(input, new TagList { { "tenant", name }, { "gen_ai.token.type", "input" } });
        }

        if (output > 0)
        {
            _tokens.Add(output, new TagList { { "tenant", name }, { "gen_ai.token.type", "output" } });
        }
    }

    /// <summary>The limit tag: <c>requests_per_minute</c>, <c>tokens</c> or <c>in_flight</c> for the tenant's own, else the limit's name.</summary>
    internal static string LimitTag(string tenant, string limit) =>
        limit.Length > tenant.Length + 8 && limit.StartsWith("tenant:", StringComparison.Ordinal)
            && string.CompareOrdinal(limit, 7, tenant, 0, tenant.Length) == 0 && limit[7 + tenant.Length] == ':'
            ? limit[(8 + tenant.Length)..]
            : limit;

    private static string StatusClass(int status) => status is >= 100 and < 600 ? s_statusClasses[(status / 100) - 1] : "other";
}
