using System.Globalization;
using Microsoft.AspNetCore.Http;
using ModelSim.Api;
using ModelSim.Engine;

namespace ModelSim.Faults;

/// <summary>
/// Operator endpoints that inject faults on the HTTP listener:
/// <c>POST /sim/stall?ms=N</c> freezes generation for N ms (1 to 600 000);
/// <c>POST /sim/collapse?ms=N</c> collapses the server now for N ms (default <c>Sim:CollapseMs</c>).
/// </summary>
internal static class FaultEndpoints
{
    /// <summary>Longest stall or collapse accepted, ms (10 minutes).</summary>
    public const int MaxFaultMs = 600_000;

    public static Task StallAsync(HttpContext context, GenerationEngine engine)
    {
        if (!TryReadMs(context, required: true, out var ms, out var error))
        {
            engine.CountBadRequest();
            return OpenAiApi.WriteErrorAsync(context, error);
        }

        engine.Stall(TimeSpan.FromMilliseconds(ms));
        return context.Response.WriteAsJsonAsync(new StallResponse(ms, engine.StallsTotal), SimJsonContext.Default.StallResponse, contentType: null, CancellationToken.None);
    }

    public static Task CollapseAsync(HttpContext context, GenerationEngine engine)
    {
        if (!TryReadMs(context, required: false, out var ms, out var error))
        {
            engine.CountBadRequest();
            return OpenAiApi.WriteErrorAsync(context, error);
        }

        var duration = ms > 0 ? ms : engine.Options.CollapseMs;
        engine.Collapse(TimeSpan.FromMilliseconds(duration));
        return context.Response.WriteAsJsonAsync(new CollapseResponse(duration, engine.CollapsesTotal), SimJsonContext.Default.CollapseResponse, contentType: null, CancellationToken.None);
    }

    private static bool TryReadMs(HttpContext context, bool required, out double ms, out ApiError error)
    {
        ms = 0;
        error = default;
        var raw = context.Request.Query["ms"];
        if (raw.Count == 0 && !required)
        {
            return true;
        }

        if (raw.Count != 1
            || !double.TryParse(raw[0], NumberStyles.Float, CultureInfo.InvariantCulture, out ms)
            || !double.IsFinite(ms) || ms <= 0 || ms > MaxFaultMs)
        {
            error = ApiError.BadRequest($"ms must be a number of milliseconds > 0 and <= {MaxFaultMs} (was '{raw}').", "invalid_ms", "ms");
            return false;
        }

        return true;
    }
}
