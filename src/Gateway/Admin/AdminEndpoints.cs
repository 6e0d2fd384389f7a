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
        endpoints.MapGet("/admin/stats", static (DashboardStats stats) => Results.Json(stats.Snapshot()))
            .WithMetadata(AdminOnly)
            .AddEndpointFilter<AdminTokenFilter>();
        return endpoints;
    }
}
