using System.Collections.Frozen;
using Gateway.Configuration;
using Microsoft.Extensions.Primitives;
using Yarp.ReverseProxy.Configuration;

namespace Gateway.Tenants;

/// <summary>A configured tenant as authentication uses it.</summary>
/// <param name="Name">The tenant's name (the key under <c>Gateway:Tenants</c>).</param>
/// <param name="Options">Its configuration.</param>
/// <param name="AllowedModels">The configured model names it may call (aliases resolved), or null for all.</param>
/// <param name="JwtCaller">The caller a JWT naming it authenticates (made once).</param>
internal sealed record TenantEntry(string Name, TenantOptions Options, FrozenSet<string>? AllowedModels, Tenant JwtCaller)
{
    /// <summary>Whether the tenant may call the configured model <paramref name="modelName"/>.</summary>
    public bool Allows(string modelName) => AllowedModels is null || AllowedModels.Contains(modelName);
}

/// <summary>
/// Authentication's configuration in force, immutable: the mode, the tenants, every API key accepted (configured and
/// made, one <see cref="KeyTable"/>) and the JWT validator. Replaced whole when the configuration reloads or a key is
/// made or revoked; a request reads it once.
/// </summary>
internal sealed record AuthState(AuthMode Mode, AuthOptions Options, FrozenDictionary<string, TenantEntry> Tenants, KeyTable Keys, JwtValidator? Jwt)
{
    /// <summary>Whether API keys are accepted.</summary>
    public bool AcceptsApiKeys => Mode is AuthMode.ApiKey or AuthMode.ApiKeyOrJwt;

    /// <summary>Whether JWTs are accepted.</summary>
    public bool AcceptsJwt => Mode is AuthMode.Jwt or AuthMode.ApiKeyOrJwt && Jwt is not null;
}

/// <summary>
/// The tenants and the credentials that name them, compiled from <c>Gateway:Auth</c>, <c>Gateway:Tenants</c> and the
/// made keys of <see cref="ApiKeyStore"/> into one <see cref="AuthState"/>; rebuilt on a validated configuration reload
/// and on every change of the made keys.
/// </summary>
internal sealed class TenantDirectory : IDisposable
{
    /// <summary>The route metadata key overriding <c>Gateway:Auth:Mode</c> for one route: <c>Required</c>, <c>Optional</c> or <c>None</c>.</summary>
    public const string RouteMetadataKey = "Auth";

    private readonly ConfigurationGate _gate;
    private readonly ApiKeyStore _store;
    private readonly Lock _lock = new();
    private readonly IDisposable _reload;
    private volatile AuthState _current;

    public TenantDirectory(ConfigurationGate gate, ApiKeyStore store)
    {
        _gate = gate;
        _store = store;
        _current = Build(gate.Current, store.Keys, previous: null);
        _reload = ChangeToken.OnChange(gate.Configuration.GetReloadToken, Rebuild);
        store.Changed += Rebuild;
    }

    /// <summary>The state in force.</summary>
    public AuthState Current => _current;

    /// <summary>What a route requires: its <c>Metadata:Auth</c>, else <see cref="RouteAuth.Required"/>.</summary>
    public static RouteAuth RouteAuthOf(RouteConfig route) =>
        route.Metadata is not null && route.Metadata.TryGetValue(RouteMetadataKey, out var value) && value is not null
            ? value.Length switch
            {
                4 when value.Equals("None", StringComparison.OrdinalIgnoreCase) => RouteAuth.None,
                8 when value.Equals("Optional", StringComparison.OrdinalIgnoreCase) => RouteAuth.Optional,
                _ => RouteAuth.Required,
            }
            : RouteAuth.Required;

    /// <summary>Whether <paramref name="value"/> is a valid <c>Metadata:Auth</c>.</summary>
    public static bool IsRouteAuth(string? value) => Enum.TryParse<RouteAuth>(value, ignoreCase: true, out var parsed) && Enum.IsDefined(parsed) && !int.TryParse(value, out _);

    private void Rebuild()
    {
        lock (_lock)
        {
            _current = Build(_gate.Current, _store.Keys, _current);
        }
    }

    private static AuthState Build(GatewayOptions options, IReadOnlyList<MadeKey> made, AuthState? previous)
    {
        var auth = options.Auth;
        var modelNames = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (name, model) in options.Models)
        {
            modelNames[name] = name;
            foreach (var alias in model.Aliases)
            {
                modelNames.TryAdd(alias, name);
            }
        }

        var tenants = new Dictionary<string, TenantEntry>(StringComparer.Ordinal);
        var keys = new List<KeyEntry>();
        foreach (var (name, tenant) in options.Tenants)
        {
            FrozenSet<string>? allowed = null;
            if (tenant.Models.Count > 0)
            {
                allowed = tenant.Models.Select(m => modelNames.GetValueOrDefault(m, m)).ToFrozenSet(StringComparer.Ordinal);
            }

            tenants[name] = new TenantEntry(name, tenant, allowed, new Tenant(name, tenant, Credential.Jwt, null));
            for (var i = 0; i < tenant.Keys.Count; i++)
            {
                if (ApiKeyHash.TryParse(tenant.Keys[i], out var hash))
                {
                    keys.Add(new KeyEntry(hash, new Tenant(name, tenant, Credential.ApiKey, ApiKeyHash.ConfiguredId(i)), Configured: true));
                }
            }
        }

        foreach (var key in made)
        {
            if (tenants.TryGetValue(key.Tenant, out var entry))
            {
                keys.Add(new KeyEntry(key.Hash, new Tenant(key.Tenant, entry.Options, Credential.ApiKey, key.Id), Configured: false));
            }
        }

        JwtValidator? jwt = null;
        if (auth.Mode is AuthMode.Jwt or AuthMode.ApiKeyOrJwt)
        {
            // Validated at start-up and on reload (the keys file too); kept while its options are unchanged.
            try
            {
                jwt = previous?.Jwt is { } kept && kept.Options == auth.Jwt ? kept : JwtValidator.Create(auth.Jwt);
                if (!ReferenceEquals(jwt, previous?.Jwt))
                {
                    previous?.Jwt?.Dispose(); // its file watcher; a request still using it validates as before
                }
            }
            catch (InvalidOperationException)
            {
                // The keys file went away between the reload's check and now: the validator in force stays.
                jwt = previous?.Jwt;
            }
        }

        return new AuthState(auth.Mode, auth, tenants.ToFrozenDictionary(StringComparer.Ordinal), new KeyTable(keys), jwt);
    }

    public void Dispose() => _reload.Dispose();
}
