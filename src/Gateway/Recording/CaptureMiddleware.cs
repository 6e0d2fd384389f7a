using Gateway.Exchange;
using Gateway.Recording.Capture;
using Microsoft.Extensions.Options;

namespace Gateway.Recording;

/// <summary>
/// The first step of the proxy pipeline when a recording runs: resolves the session, applies session sampling, takes
/// each exchange's sequence number on arrival, installs the taps, and when the exchange ends hands what the taps saw
/// to the <see cref="RecordingSink"/>. With no recording running it costs one array read.
/// </summary>
internal sealed class CaptureMiddleware
{
    private readonly RequestDelegate _next;
    private readonly RecordingManager _manager;
    private readonly SessionResolver _sessions;
    private readonly SessionSampler _sampler;
    private readonly RecordingSink _sink;
    private readonly RecordingOptions _options;
    private readonly TimeProvider _time;

    public CaptureMiddleware(RequestDelegate next, RecordingManager manager, SessionResolver sessions, SessionSampler sampler, RecordingSink sink,
        IOptions<RecordingOptions> options, TimeProvider time)
    {
        _next = next;
        _manager = manager;
        _sessions = sessions;
        _sampler = sampler;
        _sink = sink;
        _options = options.Value;
        _time = time;
    }

    public async Task InvokeAsync(HttpContext context)
    {
        var active = _manager.Active;
        var exchange = context.GetExchange();
        if (active.Length == 0 || exchange is null)
        {
            await _next(context);
            return;
        }

        var route = context.GetReverseProxyFeature().Route.Config;
        exchange.RouteId = route.RouteId;
        exchange.ClusterId = route.ClusterId;
        var sessionId = await _sessions.ResolveAsync(context, exchange, exchange.ClientAborted);
        if (!_sampler.Includes(route.RouteId, sessionId))
        {
            await _next(context);
            return;
        }

        var startMicros = (exchange.StartTime.UtcTicks - DateTimeOffset.UnixEpoch.UtcTicks) / 10;
        var targets = new (string, long)[active.Length];
        for (var i = 0; i < active.Length; i++)
        {
            targets[i] = (active[i], _manager.Tracker(active[i]).Next(sessionId, exchange.ClientKey, startMicros));
        }

        var capture = new ExchangeCapture(_options, _time);
        capture.Install(context, exchange);
        try
        {
            await _next(context);
        }
        finally
        {
            _sink.Enqueue(capture.Complete(context, exchange, targets));
        }
    }
}
