using System.ComponentModel.DataAnnotations;
using Gateway.Configuration;

namespace Gateway.Tenants;

/// <summary>How callers prove who they are (<c>Gateway:Auth:Mode</c>).</summary>
internal enum AuthMode
{
    /// <summary>Nobody is authenticated (the default, for the demo): an API key is only a partition name.</summary>
    None,

    /// <summary>An API key of a configured tenant (<c>Authorization: Bearer</c>, <c>x-api-key</c>, gRPC metadata <c>authorization</c>).</summary>
    ApiKey,

    /// <summary>A JWT bearer token, validated by ASP.NET Core's JwtBearer handler; the tenant is a claim.</summary>
    Jwt,

    /// <summary>Either: a bearer value that looks like a JWT (three dot-separated parts) is validated as one, anything else as an API key.</summary>
    ApiKeyOrJwt,
}

/// <summary>What a route requires (<c>ReverseProxy:Routes:{id}:Metadata:Auth</c>), overriding <see cref="AuthOptions.Mode"/> for that route.</summary>
internal enum RouteAuth
{
    /// <summary>A caller must authenticate (by <see cref="AuthOptions.Mode"/>).</summary>
    Required,

    /// <summary>A credential is checked when sent (a bad one is refused); a request without one passes as no tenant.</summary>
    Optional,

    /// <summary>No authentication on this route.</summary>
    None,
}

/// <summary>Authentication of callers, bound from <c>Gateway:Auth</c>. See docs/tenants.md.</summary>
internal sealed record AuthOptions
{
    /// <summary>Configuration section.</summary>
    public const string Section = "Gateway:Auth";

    /// <summary>How callers authenticate. Default <see cref="AuthMode.None"/>.</summary>
    public AuthMode Mode { get; set; } = AuthMode.None;

    /// <summary>JWT bearer validation (modes <c>Jwt</c> and <c>ApiKeyOrJwt</c>).</summary>
    public JwtOptions Jwt { get; set; } = new();

    /// <summary>Failed authentication attempts allowed per client address per <see cref="FailedAttemptsWindow"/>; beyond it 429 <c>too_many_failed_attempts</c>. Default 20.</summary>
    [Range(1, int.MaxValue)]
    public int FailedAttemptsLimit { get; set; } = 20;

    /// <summary>The window of <see cref="FailedAttemptsLimit"/>. Default 00:01:00.</summary>
    [Range(typeof(TimeSpan), ConfigRanges.MinDuration, ConfigRanges.MaxDuration)]
    public TimeSpan FailedAttemptsWindow { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>How often a gateway re-reads the API keys stored in Redis when pub/sub notifications are missed. Default 00:00:01.</summary>
    [Range(typeof(TimeSpan), ConfigRanges.MinDuration, "00:10:00")]
    public TimeSpan KeyRefreshInterval { get; set; } = TimeSpan.FromSeconds(1);
}

/// <summary>JWT bearer validation, bound from <c>Gateway:Auth:Jwt</c>.</summary>
internal sealed record JwtOptions
{
    /// <summary>The identity provider's issuer URL; its signing keys are read by OIDC discovery (<c>/.well-known/openid-configuration</c>).</summary>
    public string? Authority { get; set; }

    /// <summary>A file of signing keys (PEM public key or certificate, or a JWKS JSON document) for offline use and tests; instead of <see cref="Authority"/>.</summary>
    public string? SigningKeysFile { get; set; }

    /// <summary>The expected <c>iss</c>; required with <see cref="SigningKeysFile"/>.</summary>
    public string? Issuer { get; set; }

    /// <summary>The expected <c>aud</c>.</summary>
    public string? Audience { get; set; }

    /// <summary>The claim that names the caller's tenant (a name under <c>Gateway:Tenants</c>). Default <c>tenant</c>.</summary>
    public string TenantClaim { get; set; } = "tenant";

    /// <summary>Clock skew tolerated on <c>exp</c>/<c>nbf</c>. Default 00:00:30.</summary>
    [Range(typeof(TimeSpan), "00:00:00", "01:00:00")]
    public TimeSpan ClockSkew { get; set; } = TimeSpan.FromSeconds(30);
}
