using System.ComponentModel.DataAnnotations;
using Gateway.Configuration;

namespace Gateway.Tenants;

/// <summary>One tenant, bound from <c>Gateway:Tenants:{tenant}</c> (the tenant's name is the key). See docs/tenants.md.</summary>
internal sealed record TenantOptions
{
    /// <summary>Configuration section of the tenants.</summary>
    public const string Section = "Gateway:Tenants";

    /// <summary>The tenant's API keys, each as <c>sha256:</c> and the 64 hex digits of the key's SHA-256 (never a key in clear).</summary>
    public ConfigList<string> Keys { get; set; } = [];

    /// <summary>The models the tenant may call (configured names or aliases under <c>Gateway:Models</c>); empty: all.</summary>
    public ConfigList<string> Models { get; set; } = [];

    /// <summary>The tenant's quotas.</summary>
    public TenantLimitsOptions Limits { get; set; } = new();

    /// <summary>The tenant's priority band: <c>high</c>, <c>normal</c> or <c>low</c> (a class of the admission queue). Default <c>normal</c>.</summary>
    public string Priority { get; set; } = "normal";

    /// <summary>The tenant's share of the model server within its band, relative to the other tenants' weights (in tokens served). Default 1.</summary>
    [Range(0.001, 1_000_000.0)]
    public double Weight { get; set; } = 1.0;
}

/// <summary>A tenant's quotas, bound from <c>Gateway:Tenants:{tenant}:Limits</c>; 0 means no limit.</summary>
internal sealed record TenantLimitsOptions
{
    /// <summary>Requests per minute. Default 0 (none).</summary>
    [Range(0, int.MaxValue)]
    public int RequestsPerMinute { get; set; }

    /// <summary>LLM tokens (prompt + output) per <see cref="TokenWindow"/>. Default 0 (none).</summary>
    [Range(0, long.MaxValue)]
    public long Tokens { get; set; }

    /// <summary>The window of <see cref="Tokens"/>. Default 00:01:00.</summary>
    [Range(typeof(TimeSpan), ConfigRanges.MinDuration, ConfigRanges.MaxDuration)]
    public TimeSpan TokenWindow { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>Requests in flight at once. Default 0 (none).</summary>
    [Range(0, int.MaxValue)]
    public int MaxInFlight { get; set; }
}
