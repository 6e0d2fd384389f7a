using Gateway.Exchange;
using Gateway.Recording.Capture;
using Microsoft.Extensions.Options;

namespace Gateway.Recording;

/// <summary>
/// The recording step: when a recording runs, resolves the exchange's session, applies session sampling, takes the
/// exchange's sequence number in each recording on arrival, and installs the capture taps. It runs right after
/// classification, before any step wraps a feature, so the taps are outermost: they see what the client sent and received. <see cref="ExchangeCompletion"/> hands what they
/// saw to the <see cref="RecordingSink"/>. With no recording running it costs one array read.
/// </summary>
internal sealed class CaptureStep(RequestDelegate next, RecordingManager manager, SessionSampler sampler, IOptions<RecordingOptions> options, TimeProvider time)
{
    private readonly RecordingOptions _options = options.Value;

    public Task InvokeAsync(HttpContext context)
    {
        var active = manager.Active;
        return active.Length == 0 ? next(context) : CaptureAsync(context, active);
    }

    private async Task CaptureAsync(HttpContext context, string[] active)
    {
        var exchange = context.GetExchange()!;
        var classification = exchange.Classification!;
        var sessionId = await classification.GetSessionIdAsync(exchange.ClientAborted);
        if (sampler.Includes(classification.RouteId, sessionId))
        {
            var startMicros = (exchange.StartTime.UtcTicks - DateTimeOffset.UnixEpoch.UtcTicks) / 10;
            var targets = new (string, long)[active.Length];
            for (var i = 0; i < active.Length; i++)
            {
                targets[i] = (active[i], manager.Tracker(active[i]).Next(sessionId, classification.ClientKey, startMicros));
            }

            var capture = new ExchangeCapture(_options, time, targets, context);
            capture.Install(context, classification); // outermost: installed before any other step wraps a feature
            exchange.SetCapture(capture);
        }

        await next(context);
    }
}
