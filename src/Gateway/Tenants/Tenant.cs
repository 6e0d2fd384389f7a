namespace Gateway.Tenants;

/// <summary>How a caller was authenticated.</summary>
internal enum Credential
{
    /// <summary>An API key of the tenant.</summary>
    ApiKey,

    /// <summary>A JWT whose tenant claim names the tenant.</summary>
    Jwt,
}

/// <summary>
/// The authenticated caller of an exchange: a configured tenant (its name is a bounded label: metrics, records and the
/// <c>x-gateway-tenant</c> header carry it; never a credential), set on <see cref="Exchange.Classification.Tenant"/>
/// by the authentication step.
/// </summary>
/// <param name="Name">The tenant's configured name (the key under <c>Gateway:Tenants</c>).</param>
/// <param name="Options">The tenant's configuration.</param>
/// <param name="Credential">How it was authenticated.</param>
/// <param name="KeyId">The id of the API key used (never the key), or null for a JWT.</param>
internal sealed record Tenant(string Name, TenantOptions Options, Credential Credential, string? KeyId);
