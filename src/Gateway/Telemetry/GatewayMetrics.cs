using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Globalization;

namespace Gateway.Telemetry;

/// <summary>
/// The gateway's instruments, on one <see cref="Meter"/> named <see cref="MeterName"/> from
/// <see cref="IMeterFactory"/>. Prometheus names add units and <c>_total</c>: <c>gateway_requests_total</c>,
/// <c>gateway_request_duration_seconds</c>. Tags come from small fixed sets (listener, route id, status);
/// never a session id or a client key.
/// </summary>
internal sealed class GatewayMetrics
{
    /// <summary>The meter's name, passed to OpenTelemetry's <c>AddMeter</c>.</summary>
    public const string MeterName = "Gateway";

    private static readonly string[] s_statusCodes = CreateStatusCodes();
    private static readonly string[] s_statusClasses = ["1xx", "2xx", "3xx", "4xx", "5xx"];

    private readonly Counter<long> _requests;
    private readonly Counter<long> _fallbacks;
    private readonly Histogram<double> _duration;
    private readonly UpDownCounter<long> _active;
    private readonly Histogram<double> _ttft;
    private readonly Counter<long> _webSocketIdleClosed;
    private readonly Counter<long> _errorBodiesTruncated;

    public GatewayMetrics(IMeterFactory meterFactory, GatewayMeterName name)
    {
        Meter = meterFactory.Create(name.Value);
        _requests = Meter.CreateCounter<long>("gateway.requests", "{request}", "Exchanges completed, by listener, route and status (499: the client went away).");
        _fallbacks = Meter.CreateCounter<long>("gateway.routing.fallbacks", "{request}",
            "Exchanges served by a fallback model, by the configured model the client asked for (model) and the one that served (fallback).");
        _duration = Meter.CreateHistogram<double>("gateway.request.duration", "s", "Time from the gateway accepting the request to the end of the response.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120] });
        _active = Meter.CreateUpDownCounter<long>("gateway.requests.active", "{request}", "Exchanges in progress, by listener.");
        _ttft = Meter.CreateHistogram<double>("gateway.ttft", "s", "Time to first token of streamed responses (SSE, gRPC): from accepting the request to sending the first bytes.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] });
        _webSocketIdleClosed = Meter.CreateCounter<long>("gateway.websocket.idle_closed", "{connection}",
            "WebSocket connections the gateway closed (1001 on both sides) after Gateway:Limits:WebSocketIdleTimeout of silence, by route.");
        _errorBodiesTruncated = Meter.CreateCounter<long>("gateway.backend.error_bodies.truncated", "{response}",
            "Error responses (status >= 400) from a backend whose body was cut at Gateway:Limits:MaxErrorBodyBytes, by cluster.");
    }

    /// <summary>The meter, for features that add their own instruments.</summary>
    public Meter Meter { get; }

    /// <summary>Counts an exchange that started on <paramref name="listener"/>.</summary>
    public void RequestStarted(string listener)
    {
        if (_active.Enabled)
        {
            _active.Add(1, new KeyValuePair<string, object?>("listener", listener));
        }
    }

    /// <summary>Records a finished exchange.</summary>
    /// <param name="listener">Listener tag.</param>
    /// <param name="route">Route id, or <c>(none)</c>.</param>
    /// <param name="status">HTTP status as the gateway accounts it (499 for a client abort).</param>
    /// <param name="seconds">Duration in seconds.</param>
    /// <param name="ttftSeconds">Time to first token of a streamed response, in seconds; null otherwise.</param>
    /// <param name="model">The configured model the request was routed by, <c>(none)</c> or <c>(unknown)</c> (a bounded set; <see cref="Routing.ModelCatalog.Tag"/>).</param>
    public void RequestCompleted(string listener, string route, int status, double seconds, double? ttftSeconds = null, string model = "(none)")
    {
        if (_active.Enabled)
        {
            _active.Add(-1, new KeyValuePair<string, object?>("listener", listener));
        }

        if (!_requests.Enabled && !_duration.Enabled)
        {
            return;
        }

        var tags = new TagList
        {
            { "listener", listener },
            { "route", route },
            { "status_class", StatusClass(status) },
            { "model", model },
        };
        _duration.Record(seconds, tags);
        if (ttftSeconds is { } t && _ttft.Enabled)
        {
            _ttft.Record(t, tags);
        }

        tags.Add("status_code", StatusCode(status));
        _requests.Add(1, tags);
    }

    /// <summary>Counts an exchange the <paramref name="fallback"/> model served for <paramref name="model"/> (both configured names: a bounded set).</summary>
    public void Fallback(string model, string fallback)
    {
        if (_fallbacks.Enabled)
        {
            _fallbacks.Add(1, new TagList { { "model", model }, { "fallback", fallback } });
        }
    }

    /// <summary>Counts a WebSocket connection on <paramref name="route"/> closed by the idle timeout.</summary>
    public void WebSocketIdleClosed(string route)
    {
        if (_webSocketIdleClosed.Enabled)
        {
            _webSocketIdleClosed.Add(1, new KeyValuePair<string, object?>("route", route));
        }
    }

    /// <summary>Counts an error body from <paramref name="cluster"/> cut at <c>Gateway:Limits:MaxErrorBodyBytes</c>.</summary>
    public void ErrorBodyTruncated(string cluster)
    {
        if (_errorBodiesTruncated.Enabled)
        {
            _errorBodiesTruncated.Add(1, new KeyValuePair<string, object?>("cluster", cluster));
        }
    }

    private static string StatusClass(int status) => status is >= 100 and < 600 ? s_statusClasses[(status / 100) - 1] : "other";

    private static string StatusCode(int status) => status is >= 100 and < 600 ? s_statusCodes[status - 100] : "other";

    private static string[] CreateStatusCodes()
    {
        var codes = new string[500];
        for (var i = 0; i < codes.Length; i++)
        {
            codes[i] = (i + 100).ToString(CultureInfo.InvariantCulture);
        }

        return codes;
    }
}

/// <summary>
/// The name of the gateway's meter: <see cref="GatewayMetrics.MeterName"/> in the gateway process. OpenTelemetry listens
/// to meters by name across the whole process, so each in-process <c>GatewayServer</c> (tests run several) gets a name
/// of its own, which keeps every gateway's <c>/metrics</c> to its own traffic.
/// </summary>
internal sealed record GatewayMeterName(string Value);
