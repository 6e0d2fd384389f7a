using Gateway.Admin;

namespace Gateway.Tenants;

/// <summary>
/// The admin API of tenants (admin listener only, behind <c>Gateway:Admin:Token</c>):
/// <list type="bullet">
/// <item><c>GET /admin/tenants</c>: every configured tenant with its priority, weight, models and key ids (configured
/// keys <c>cfg-N</c>, made keys <c>kXXXXXXXXXXXX</c> with their creation time), never a key or a hash;</item>
/// <item><c>POST /admin/tenants/{tenant}/keys</c>: makes a key, answers 201 <c>{"id": "...", "key": "sk-..."}</c>, the key
/// shown this once;</item>
/// <item><c>DELETE /admin/tenants/{tenant}/keys/{id}</c>: revokes a made key (204).</item>
/// </list>
/// Errors are JSON (<c>{"error":{...}}</c>): 404 for an unknown tenant or key, 409 for a configured key (removed from
/// the configuration, not here), 503 while Redis is unreachable (nothing changed).
/// </summary>
internal static class TenantEndpoints
{
    public static IEndpointRouteBuilder MapTenantAdmin(this IEndpointRouteBuilder endpoints)
    {
        var group = endpoints.MapGroup("/admin/tenants").WithMetadata(AdminEndpoints.AdminOnly).AddEndpointFilter<AdminTokenFilter>();

        group.MapGet("/", static (TenantDirectory directory, ApiKeyStore store) =>
        {
            var state = directory.Current;
            var made = store.Keys;
            var tenants = new List<object>(state.Tenants.Count);
            foreach (var (name, tenant) in state.Tenants.OrderBy(static t => t.Key, StringComparer.Ordinal))
            {
                var keys = new List<object>();
                for (var i = 0; i < tenant.Options.Keys.Count; i++)
                {
                    keys.Add(new { id = ApiKeyHash.ConfiguredId(i), source = "configuration", created = (DateTimeOffset?)null });
                }

                foreach (var key in made)
                {
                    if (string.Equals(key.Tenant, name, StringComparison.Ordinal))
                    {
                        keys.Add(new { id = key.Id, source = "admin", created = (DateTimeOffset?)key.Created });
                    }
                }

                tenants.Add(new { name, priority = tenant.Options.Priority, weight = tenant.Options.Weight, models = tenant.Options.Models, keys });
            }

            return Results.Json(new { mode = state.Mode.ToString(), key_store = store.IsShared ? "redis" : "memory", tenants });
        });

        group.MapPost("/{tenant}/keys", static async (string tenant, TenantDirectory directory, ApiKeyStore store, HttpContext context, CancellationToken ct) =>
        {
            if (!directory.Current.Tenants.ContainsKey(tenant))
            {
                return UnknownTenant(tenant);
            }

            var (outcome, key, made) = await store.CreateAsync(tenant, ct);
            if (outcome != KeyStoreOutcome.Done)
            {
                return Unavailable();
            }

            context.Response.Headers.CacheControl = "no-store"; // the key is in this answer only
            return Results.Json(new { id = made!.Id, key, tenant, created = made.Created }, statusCode: StatusCodes.Status201Created);
        });

        group.MapDelete("/{tenant}/keys/{id}", static async (string tenant, string id, TenantDirectory directory, ApiKeyStore store, CancellationToken ct) =>
        {
            if (!directory.Current.Tenants.TryGetValue(tenant, out var entry))
            {
                return UnknownTenant(tenant);
            }

            if (id.StartsWith("cfg-", StringComparison.Ordinal))
            {
                return Error(StatusCodes.Status409Conflict, "invalid_request_error", "configured_key",
                    $"Key '{id}' of tenant '{tenant}' is configured (Gateway:Tenants:{tenant}:Keys): remove it from the configuration to revoke it.");
            }

            return await store.RevokeAsync(tenant, id, ct) switch
            {
                KeyStoreOutcome.Done => Results.NoContent(),
                KeyStoreOutcome.NotFound => Error(StatusCodes.Status404NotFound, "not_found", "key_not_found", $"Tenant '{tenant}' has no key '{id}'."),
                _ => Unavailable(),
            };
        });

        return endpoints;
    }

    private static IResult UnknownTenant(string tenant) =>
        Error(StatusCodes.Status404NotFound, "not_found", "tenant_not_found", $"No tenant '{tenant}' is configured (Gateway:Tenants); GET /admin/tenants lists them.");

    private static IResult Unavailable() =>
        Error(StatusCodes.Status503ServiceUnavailable, "unavailable", "redis_unavailable",
            "The key store (Redis of Gateway:Shaping:Redis) did not answer; nothing was changed. Try again once it is back.");

    private static IResult Error(int status, string type, string code, string message) =>
        Results.Json(new { error = new { message, type, code } }, statusCode: status);
}
