using System.Buffers;
using Gateway.Configuration;

namespace Gateway.Tenants;

/// <summary>
/// The rules of <c>Gateway:Auth</c>, <c>Gateway:Tenants</c> and the routes' <c>Metadata:Auth</c>, run at start-up and on
/// every reload candidate; each message names its key. A key in clear where a hash belongs is never quoted back.
/// </summary>
internal static class TenantsValidator
{
    private static readonly AuthOptionsRanges s_auth = new();
    private static readonly JwtOptionsRanges s_jwt = new();
    private static readonly TenantOptionsRanges s_tenant = new();
    private static readonly TenantLimitsOptionsRanges s_limits = new();
    private static readonly SearchValues<char> s_nameChars = SearchValues.Create("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-");

    /// <summary>The longest tenant name (it is a metric label, a header value and part of a Redis key).</summary>
    public const int MaxNameLength = 64;

    public static void Validate(GatewayOptions options, IConfiguration configuration, List<string> errors)
    {
        var auth = options.Auth;
        var section = AuthOptions.Section;
        OptionsRanges.Check(s_auth, section, auth, configuration, errors);
        OptionsRanges.Check(s_jwt, $"{section}:Jwt", auth.Jwt, configuration, errors);
        if (auth.Mode is AuthMode.Jwt or AuthMode.ApiKeyOrJwt)
        {
            ValidateJwt(auth, errors);
        }

        if (auth.Mode != AuthMode.None && options.Tenants.Count == 0)
        {
            errors.Add($"{section}:Mode is {auth.Mode} but no tenant is configured under {TenantOptions.Section}: every caller would be refused.");
        }

        var modelNames = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, model) in options.Models)
        {
            modelNames.Add(name);
            modelNames.UnionWith(model.Aliases);
        }

        var hashes = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase); // hash → the key that holds it
        foreach (var (name, tenant) in options.Tenants)
        {
            var key = $"{TenantOptions.Section}:{name}";
            if (name.Length > MaxNameLength || name.AsSpan().ContainsAnyExcept(s_nameChars))
            {
                errors.Add($"{key}: a tenant name must be 1 to {MaxNameLength} letters, digits, '.', '_' or '-' (it is a metric label, the x-gateway-tenant header and part of a Redis key).");
            }

            OptionsRanges.Check(s_tenant, key, tenant, configuration, errors);
            OptionsRanges.Check(s_limits, $"{key}:Limits", tenant.Limits, configuration, errors);
            for (var i = 0; i < tenant.Keys.Count; i++)
            {
                var value = tenant.Keys[i];
                if (!ApiKeyHash.TryParse(value, out _))
                {
                    errors.Add($"{key}:Keys:{i} must be 'sha256:' and the 64 hex digits of the key's SHA-256 (printf %s \"$KEY\" | sha256sum); a key in clear is never accepted (was a {value?.Length ?? 0}-character value, not quoted here).");
                }
                else if (!hashes.TryAdd(value![ApiKeyHash.Prefix.Length..], $"{key}:Keys:{i}"))
                {
                    errors.Add($"{key}:Keys:{i} is the same key as {hashes[value[ApiKeyHash.Prefix.Length..]]}; a key names one tenant.");
                }
            }

            for (var i = 0; i < tenant.Models.Count; i++)
            {
                var model = tenant.Models[i];
                if (options.Models.Count == 0)
                {
                    errors.Add($"{key}:Models:{i} names model '{model}', but no model is configured under {Routing.ModelOptions.Section}: a tenant's allow-list names configured models or aliases.");
                }
                else if (!modelNames.Contains(model))
                {
                    errors.Add($"{key}:Models:{i} names model '{model}', which is not a name or alias under {Routing.ModelOptions.Section} (known: {string.Join(", ", modelNames.Order(StringComparer.Ordinal))}).");
                }
            }
        }

        foreach (var route in configuration.GetSection("ReverseProxy:Routes").GetChildren())
        {
            var value = route[$"Metadata:{TenantDirectory.RouteMetadataKey}"];
            if (value is null)
            {
                continue;
            }

            var key = $"ReverseProxy:Routes:{route.Key}:Metadata:{TenantDirectory.RouteMetadataKey}";
            if (!TenantDirectory.IsRouteAuth(value))
            {
                errors.Add($"{key} must be Required, Optional or None (was '{value}').");
            }
            else if (auth.Mode == AuthMode.None && Enum.Parse<RouteAuth>(value, ignoreCase: true) == RouteAuth.Required)
            {
                errors.Add($"{key} is Required but {section}:Mode is None: set {section}:Mode (ApiKey, Jwt or ApiKeyOrJwt) to say how callers authenticate.");
            }
        }
    }

    private static void ValidateJwt(AuthOptions auth, List<string> errors)
    {
        var key = $"{AuthOptions.Section}:Jwt";
        var jwt = auth.Jwt;
        var hasAuthority = !string.IsNullOrWhiteSpace(jwt.Authority);
        var hasFile = !string.IsNullOrWhiteSpace(jwt.SigningKeysFile);
        if (!hasAuthority && !hasFile)
        {
            errors.Add($"{key}:Authority (the identity provider, read by OIDC discovery) or {key}:SigningKeysFile (PEM or JWKS) is required when {AuthOptions.Section}:Mode is {auth.Mode}.");
        }
        else if (hasAuthority && hasFile)
        {
            errors.Add($"{key}:Authority and {key}:SigningKeysFile are both set; set one (the keys come from the identity provider, or from the file).");
        }

        if (hasAuthority && (!Uri.TryCreate(jwt.Authority, UriKind.Absolute, out var authority) || (authority.Scheme != Uri.UriSchemeHttps && authority.Scheme != Uri.UriSchemeHttp)))
        {
            errors.Add($"{key}:Authority must be an absolute http(s) URL of the identity provider (was '{jwt.Authority}').");
        }

        if (hasFile)
        {
            if (string.IsNullOrWhiteSpace(jwt.Issuer))
            {
                errors.Add($"{key}:Issuer is required with {key}:SigningKeysFile: the 'iss' the tokens must carry.");
            }

            try
            {
                JwtValidator.ReadSigningKeys(jwt.SigningKeysFile!);
            }
            catch (InvalidOperationException ex)
            {
                errors.Add(ex.Message);
            }
        }

        if (string.IsNullOrWhiteSpace(jwt.TenantClaim))
        {
            errors.Add($"{key}:TenantClaim must name a claim (default 'tenant'), not be empty.");
        }
    }
}
