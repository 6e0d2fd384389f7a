using Gateway.Listeners;

namespace Gateway.Admin;

/// <summary>The admin listener's endpoints: <c>/healthz</c>, <c>/readyz</c> and <c>/metrics</c> (Prometheus text).</summary>
internal static class AdminEndpoints
{
    private static readonly Lazy<string> DashboardPage = new(static () =>
    {
        using var stream = typeof(AdminEndpoints).Assembly.GetManifestResourceStream("Gateway.Admin.Dashboard.dashboard.html")
            ?? throw new InvalidOperationException("The dashboard page is missing from the assembly.");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    });

    /// <summary>Metadata that keeps an endpoint on the admin listener only.</summary>
    public static readonly ListenerMetadata AdminOnly = new([ListenerName.Admin]);

    public static IEndpointRouteBuilder MapGatewayAdmin(this IEndpointRouteBuilder endpoints)
    {
        endpoints.MapGet("/healthz", static () => Results.Json(new { status = "ok" }))
            .WithMetadata(AdminOnly);

        endpoints.MapGet("/readyz", static async (BackendReadiness readiness, CancellationToken ct) =>
        {
            var report = await readiness.CheckAsync(ct);
            return Results.Json(new { status = report.Ready ? "ready" : report.WarmingUp ? "warming_up" : "not_ready", clusters = report.Clusters },
                statusCode: report.Ready ? StatusCodes.Status200OK : StatusCodes.Status503ServiceUnavailable);
        }).WithMetadata(AdminOnly);

        endpoints.MapPrometheusScrapingEndpoint("/metrics").WithMetadata(AdminOnly);

        // The operator's window: one self-contained page (no CDN), polling /admin/stats and /admin/recordings.
        endpoints.MapGet("/", static () => Results.Content(DashboardPage.Value, "text/html; charset=utf-8")).WithMetadata(AdminOnly);
        endpoints.MapGet("/admin/stats", static (HttpRequest request, DashboardStats stats) =>
            {
                // ?range=SECONDS: how far back the series reaches (default: everything held, from start-up).
                int? range = null;
                if (request.Query.TryGetValue("range", out var given))
                {
                    if (given.Count != 1 || !int.TryParse(given[0], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var seconds) || seconds is < 1 or > 86_400)
                    {
                        return Results.Json(new { error = new { message = $"range must be a whole number of seconds from 1 to 86400 (was '{given}').", type = "invalid_request_error", code = "invalid_range" } },
                            statusCode: StatusCodes.Status400BadRequest);
                    }

                    range = seconds;
                }

                return Results.Json(stats.Snapshot(range));
            })
            .WithMetadata(AdminOnly)
            .AddEndpointFilter<AdminTokenFilter>();
        return endpoints;
    }
}
