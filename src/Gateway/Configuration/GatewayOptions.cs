namespace Gateway.Configuration;

/// <summary>
/// The gateway's whole configuration as one value: every section bound to its sealed record. Records compare by
/// value (their dictionaries and lists too, see <see cref="ConfigMap{TValue}"/>), so a reload sees what changed with
/// <c>==</c>. <c>ReverseProxy</c> is YARP's and is read by YARP from <see cref="ConfigurationGate.Configuration"/>.
/// </summary>
internal sealed record GatewayOptions
{
    public Listeners.ListenersOptions Listeners { get; init; } = new();

    public GatewayLimitsOptions Limits { get; init; } = new();

    public GatewayTelemetryOptions Telemetry { get; init; } = new();

    public Admin.AdminOptions Admin { get; init; } = new();

    public Recording.RecordingOptions Recording { get; init; } = new();

    public Shaping.ShapingOptions Shaping { get; init; } = new();

    /// <summary>The models the gateway routes by (<c>Gateway:Models</c>); empty: routing by path only.</summary>
    public ConfigMap<Routing.ModelOptions> Models { get; init; } = new(StringComparer.Ordinal);

    /// <summary>How callers authenticate (<c>Gateway:Auth</c>).</summary>
    public Tenants.AuthOptions Auth { get; init; } = new();

    /// <summary>The tenants by name (<c>Gateway:Tenants</c>): keys, models, limits, priority, weight.</summary>
    public ConfigMap<Tenants.TenantOptions> Tenants { get; init; } = new(StringComparer.Ordinal);

    /// <summary>The sections read only at start-up that differ between <paramref name="a"/> and <paramref name="b"/> (a reload cannot apply them).</summary>
    public static IEnumerable<string> StartupOnlyChanges(GatewayOptions a, GatewayOptions b)
    {
        if (a.Listeners != b.Listeners)
        {
            yield return Gateway.Listeners.ListenersOptions.Section;
        }

        if (a.Limits != b.Limits)
        {
            yield return GatewayLimitsOptions.Section;
        }

        if (a.Telemetry != b.Telemetry)
        {
            yield return GatewayTelemetryOptions.Section;
        }

        if (a.Admin != b.Admin)
        {
            yield return Gateway.Admin.AdminOptions.Section;
        }

        if (a.Recording != b.Recording)
        {
            yield return Gateway.Recording.RecordingOptions.Section;
        }
    }
}
