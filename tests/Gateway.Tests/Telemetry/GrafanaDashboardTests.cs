using System.Diagnostics.Metrics;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Gateway.Telemetry;
using Grpc.Net.Client;
using Inference.V1;
using Microsoft.Extensions.DependencyInjection;
using TestSupport;
using static Gateway.Tests.Shaping.ShapingConfig;

namespace Gateway.Tests.Telemetry;

/// <summary>
/// Issue 16: config/grafana/gateway.json is importable (a datasource variable, every panel on it) and every PromQL
/// query in it names a metric the gateway really exports: each panel's <c>expr</c> and each variable's query is read,
/// its metric names extracted, and each is looked up in a running gateway's <c>/metrics</c> scrape after real
/// traffic (HTTP, SSE and gRPC to ModelSim, a rate-limit refusal, admission). The tenant panels read the
/// <c>gateway_tenant_*</c> series of the fair-share work (TenantMetrics): while that has not landed they are checked
/// against the names it is to export (<see cref="TenantMetricNames"/>); once it has, against its instruments.
/// </summary>
public sealed partial class GrafanaDashboardTests
{
    /// <summary>
    /// The series of <c>src/Gateway/Tenants/TenantMetrics.cs</c> (branch fairshare, issue 16's brief), as Prometheus
    /// names. Used only while that type does not exist in the gateway.
    /// </summary>
    private static readonly string[] TenantMetricNames =
    [
        "gateway_tenant_requests_total",
        "gateway_tenant_tokens_total",
        "gateway_tenant_refusals_total",
        "gateway_tenant_queue_wait_seconds_bucket",
        "gateway_tenant_queue_wait_seconds_sum",
        "gateway_tenant_queue_wait_seconds_count",
    ];

    /// <summary>PromQL functions, aggregations and keywords: every other bare word in a query would be a metric name.</summary>
    private static readonly HashSet<string> PromQlWords = new(StringComparer.Ordinal)
    {
        "sum", "avg", "min", "max", "count", "rate", "irate", "increase", "histogram_quantile", "by", "without", "on", "ignoring",
        "group_left", "group_right", "and", "or", "unless", "offset", "topk", "bottomk", "label_values", "clamp_min", "clamp_max",
        "delta", "deriv", "abs", "vector", "scalar", "time", "bool",
    };

    private static readonly string DashboardPath = Path.Combine(RepoPaths.Root, "config", "grafana", "gateway.json");

    /// <remarks>
    /// vegasbrianc/prometheus#188 ("Datasource ${DS_PROMETHEUS} not found" on import) and logos-messaging/logos-delivery#4079
    /// (panels naming a data source uid the provisioned Grafana does not have): every panel and target reads the
    /// dashboard's own <c>datasource</c> variable, so the file names no data source of anyone's.
    /// </remarks>
    [Fact]
    public void The_dashboard_is_importable_json_with_a_datasource_variable_that_every_panel_uses()
    {
        var dashboard = JsonNode.Parse(File.ReadAllText(DashboardPath))!.AsObject();
        Assert.False(string.IsNullOrEmpty(dashboard["title"]?.GetValue<string>()));
        Assert.False(string.IsNullOrEmpty(dashboard["uid"]?.GetValue<string>()));
        Assert.Null(dashboard["id"]); // an id would tie it to one Grafana instance; import assigns one
        var variables = dashboard["templating"]!["list"]!.AsArray();
        Assert.Contains(variables, static v => v!["type"]!.GetValue<string>() == "datasource" && v["name"]!.GetValue<string>() == "datasource" && v["query"]!.GetValue<string>() == "prometheus");

        var panels = Panels(dashboard).ToList();
        Assert.True(panels.Count >= 10, $"only {panels.Count} panels");
        var ids = new HashSet<int>();
        foreach (var panel in panels)
        {
            Assert.True(ids.Add(panel["id"]!.GetValue<int>()), $"panel id {panel["id"]} used twice");
            if (panel["type"]!.GetValue<string>() == "row")
            {
                continue;
            }

            Assert.Equal("${datasource}", panel["datasource"]!["uid"]!.GetValue<string>());
            var targets = panel["targets"]!.AsArray();
            Assert.NotEmpty(targets);
            Assert.All(targets, static t => Assert.Equal("${datasource}", t!["datasource"]!["uid"]!.GetValue<string>()));
        }
    }

    /// <remarks>
    /// matrix-org/synapse#13714 (a panel read <c>synapse_util_caches_cache_total</c> where the exporter wrote
    /// <c>synapse_util_caches_cache</c>: the suffixes an exporter adds are where dashboards go wrong) and
    /// samply/blaze#4045 (a dashboard silently charting a renamed metric): names are checked as a real scrape spells them.
    /// </remarks>
    [Fact]
    public async Task Every_query_of_the_dashboard_names_a_metric_the_gateway_exports_after_real_traffic()
    {
        var dashboard = JsonNode.Parse(File.ReadAllText(DashboardPath))!.AsObject();
        var used = new SortedDictionary<string, List<string>>(StringComparer.Ordinal); // metric → the queries naming it
        foreach (var query in Queries(dashboard))
        {
            var names = MetricNames(query);
            Assert.True(names.Count > 0, $"no metric in query: {query}");
            foreach (var name in names)
            {
                (used.TryGetValue(name, out var list) ? list : used[name] = []).Add(query);
            }
        }

        var options = new GatewayHarness.Options
        {
            Edit = With(new JsonObject
            {
                ["Policies"] = new JsonObject { ["three"] = new JsonObject { ["Kind"] = "FixedWindow", ["PermitLimit"] = 3, ["Window"] = "00:10:00", ["Partition"] = "Global" } },
                ["Admission"] = new JsonObject { ["model-http"] = new JsonObject { ["MaxInFlight"] = 4, ["QueueLimit"] = 10, ["QueueTimeout"] = "00:00:20" } },
            }, openaiPolicies: "three"),
        };
        await using var h = await GatewayHarness.StartAsync(options);
        var meter = h.Gateway.Services.GetRequiredService<GatewayMetrics>().Meter;
        var tenantMetrics = typeof(GatewayMetrics).Assembly.GetType("Gateway.Tenants.TenantMetrics");
        var instruments = new List<Instrument>();
        using (var listener = new MeterListener())
        {
            listener.InstrumentPublished = (instrument, _) =>
            {
                if (ReferenceEquals(instrument.Meter, meter))
                {
                    lock (instruments)
                    {
                        instruments.Add(instrument);
                    }
                }
            };
            listener.Start();

            using var http = new HttpClient { BaseAddress = h.Http };
            for (var i = 0; i < 3; i++)
            {
                var stream = i == 1;
                using var r = await http.PostAsJsonAsync("/v1/chat/completions", new
                {
                    model = "m", stream, stream_options = stream ? new { include_usage = true } : null, max_tokens = 4,
                    messages = new[] { new { role = "user", content = "hello there" } },
                });
                Assert.Equal(HttpStatusCode.OK, r.StatusCode);
                await r.Content.ReadAsStringAsync();
            }

            using (var refused = await http.PostAsJsonAsync("/v1/chat/completions", new { model = "m", max_tokens = 2, messages = new[] { new { role = "user", content = "hi" } } }))
            {
                Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
            }

            using var channel = GrpcChannel.ForAddress(h.Grpc);
            using (var call = new Generation.GenerationClient(channel).GenerateStream(new GenerateRequest { Prompt = "a b c", MaxTokens = 3 }))
            {
                while (await call.ResponseStream.MoveNext(default))
                {
                }
            }

            if (tenantMetrics is not null)
            {
                // Its instruments exist once it does: the gateway's own instance, or one made here on the same meter.
                _ = h.Gateway.Services.GetService(tenantMetrics) ?? ActivatorUtilities.CreateInstance(h.Gateway.Services, tenantMetrics);
            }
        }

        using var admin = new HttpClient { BaseAddress = h.Admin };
        string text = "";
        var scraped = new HashSet<string>(StringComparer.Ordinal);
        await Eventually.TrueAsync(async () =>
        {
            text = await admin.GetStringAsync("/metrics");
            scraped = [.. PrometheusText.Parse(text).Select(static s => s.Name)];
            return scraped.Contains("gen_ai_server_time_to_first_token_seconds_bucket") && scraped.Contains("gateway_shaping_decisions_total");
        }, TimeSpan.FromSeconds(10), () => "the scrape lacks the traffic's series");

        // The OpenTelemetry → Prometheus naming used for instruments without samples yet is checked on those with samples.
        List<Instrument> published;
        lock (instruments)
        {
            published = [.. instruments];
        }

        var checkedNaming = 0;
        foreach (var instrument in published)
        {
            var names = PrometheusNames(instrument);
            if (names.Any(scraped.Contains))
            {
                Assert.All(names, n => Assert.True(scraped.Contains(n), $"{instrument.Name} ({instrument.Unit}) was expected as {n}"));
                checkedNaming++;
            }
        }

        Assert.True(checkedNaming >= 8, $"only {checkedNaming} instruments checked against the scrape");

        var fromInstruments = published.SelectMany(PrometheusNames).ToHashSet(StringComparer.Ordinal);
        var missing = new List<string>();
        foreach (var (name, queries) in used)
        {
            var found = scraped.Contains(name)
                || (name.StartsWith("gateway_tenant_", StringComparison.Ordinal)
                    && (tenantMetrics is not null ? fromInstruments.Contains(name) : TenantMetricNames.Contains(name)));
            if (!found)
            {
                missing.Add($"{name} (in {queries[0]})");
            }
        }

        Assert.True(missing.Count == 0, "The dashboard names metrics the gateway does not export:\n" + string.Join('\n', missing) + "\n--- scrape:\n" + string.Join('\n', scraped.Order()));
        // The dashboard covers what the issue asks for: requests, refusals by limit, TTFT, tokens, queue depth, tenants.
        foreach (var needed in new[] { "gateway_requests_total", "gateway_shaping_decisions_total", "gateway_admission_decisions_total", "gen_ai_server_time_to_first_token_seconds_bucket",
                     "gen_ai_client_token_usage_sum", "gateway_admission_queue_depth", "gateway_tenant_requests_total", "gateway_tenant_refusals_total" })
        {
            Assert.True(used.ContainsKey(needed), $"no panel reads {needed}");
        }
    }

    [Fact]
    public void Metric_names_are_extracted_from_promql_and_a_bare_metric_name_is_refused()
    {
        Assert.Equal(["a_total", "b_seconds_bucket"],
            MetricNames("""sum by (le, x) (rate(b_seconds_bucket{x=~"$model", y!="{not_a_metric}"}[$__rate_interval])) / ignoring (le) sum(rate(a_total{}[5m]))""").Order(StringComparer.Ordinal));
        Assert.Equal(["m_count"], MetricNames("label_values(m_count, gen_ai_request_model)"));
        var bare = Assert.ThrowsAny<Xunit.Sdk.XunitException>(static () => MetricNames("sum(rate(forgot_braces_total[5m]))"));
        Assert.Contains("forgot_braces_total", bare.Message, StringComparison.Ordinal);
    }

    /// <summary>Every panel, rows' nested panels included.</summary>
    private static IEnumerable<JsonObject> Panels(JsonObject dashboard)
    {
        foreach (var panel in dashboard["panels"]!.AsArray())
        {
            yield return panel!.AsObject();
            if (panel["panels"] is JsonArray nested)
            {
                foreach (var inner in nested)
                {
                    yield return inner!.AsObject();
                }
            }
        }
    }

    /// <summary>Every PromQL text of the dashboard: panel targets' <c>expr</c> and query variables' queries.</summary>
    private static IEnumerable<string> Queries(JsonObject dashboard)
    {
        foreach (var panel in Panels(dashboard))
        {
            if (panel["targets"] is JsonArray targets)
            {
                foreach (var target in targets)
                {
                    yield return target!["expr"]!.GetValue<string>();
                }
            }
        }

        foreach (var variable in dashboard["templating"]!["list"]!.AsArray())
        {
            if (variable!["type"]!.GetValue<string>() == "query")
            {
                yield return variable["query"] is JsonObject q ? q["query"]!.GetValue<string>() : variable["query"]!.GetValue<string>();
            }
        }
    }

    /// <summary>
    /// The metric names of a PromQL query: each name written before a <c>{...}</c> selector, and the first argument of
    /// <c>label_values</c>. The dashboard writes every selector with braces, so after removing strings, selectors,
    /// ranges and <c>by</c>/<c>without</c>/<c>on</c>/<c>ignoring</c> label lists, any bare word left that is not PromQL
    /// is a metric this reading would miss: that fails.
    /// </summary>
    private static List<string> MetricNames(string query)
    {
        var names = new List<string>();
        var labelValues = LabelValues().Match(query);
        if (labelValues.Success)
        {
            names.Add(labelValues.Groups["metric"].Value);
            return names;
        }

        var noStrings = StringLiteral().Replace(query, "\"\"");
        foreach (Match m in Selector().Matches(noStrings))
        {
            names.Add(m.Groups["name"].Value);
        }

        var rest = Selector().Replace(noStrings, " ");
        rest = LabelList().Replace(rest, " ");
        rest = Range().Replace(rest, " ");
        foreach (Match word in Word().Matches(rest))
        {
            Assert.True(PromQlWords.Contains(word.Value), $"'{word.Value}' in '{query}' is neither PromQL nor a metric with a {{...}} selector");
        }

        return [.. names.Distinct(StringComparer.Ordinal)];
    }

    /// <summary>
    /// The Prometheus series names OpenTelemetry's Prometheus exporter gives an instrument: dots to underscores, the
    /// unit as a suffix (<c>s</c> → <c>_seconds</c>, <c>By</c> → <c>_bytes</c>; an annotation such as <c>{token}</c> is
    /// dropped), <c>_total</c> for a counter, <c>_bucket</c>/<c>_sum</c>/<c>_count</c> for a histogram.
    /// </summary>
    private static string[] PrometheusNames(Instrument instrument)
    {
        var name = instrument.Name.Replace('.', '_').Replace('-', '_');
        var unit = instrument.Unit switch
        {
            "s" => "seconds",
            "ms" => "milliseconds",
            "By" => "bytes",
            _ => null,
        };
        if (unit is not null && !name.EndsWith("_" + unit, StringComparison.Ordinal))
        {
            name += "_" + unit;
        }

        var type = instrument.GetType();
        var generic = type.IsGenericType ? type.GetGenericTypeDefinition() : type;
        if (generic == typeof(Histogram<>))
        {
            return [name + "_bucket", name + "_sum", name + "_count"];
        }

        return generic == typeof(Counter<>) || generic == typeof(ObservableCounter<>) ? [name + "_total"] : [name];
    }

    [GeneratedRegex("""^\s*label_values\(\s*(?<metric>[a-zA-Z_:][a-zA-Z0-9_:]*)\s*,""")]
    private static partial Regex LabelValues();

    [GeneratedRegex("\"(\\\\.|[^\"\\\\])*\"")]
    private static partial Regex StringLiteral();

    [GeneratedRegex("""(?<name>[a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{[^}]*\}""")]
    private static partial Regex Selector();

    [GeneratedRegex("""\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)""")]
    private static partial Regex LabelList();

    [GeneratedRegex("""\[[^\]]*\]""")]
    private static partial Regex Range();

    [GeneratedRegex("""[a-zA-Z_:][a-zA-Z0-9_:]*""")]
    private static partial Regex Word();
}
