using Gateway.Exchange;

namespace Gateway.Tenants;

/// <summary>
/// A test seam: when a <see cref="TenantHook"/> is registered in the gateway's services (tests do; the gateway never
/// does), <see cref="TenantHookStep"/> runs right after classification and sets <see cref="Classification.Tenant"/> from it
/// for exchanges the authentication step left without a tenant. It lets the tenant-shaping tests run end to end without
/// depending on how callers authenticate. Without a registration the step is not in the pipeline at all.
/// </summary>
/// <param name="resolve">The tenant of a request, or null.</param>
internal sealed class TenantHook(Func<HttpContext, Tenant?> resolve)
{
    /// <summary>The tenant of <paramref name="context"/>, or null.</summary>
    public Tenant? Resolve(HttpContext context) => resolve(context);
}

/// <summary>Sets the tenant from the registered <see cref="TenantHook"/> (tests only; see there).</summary>
internal sealed class TenantHookStep(RequestDelegate next, TenantHook hook)
{
    public Task InvokeAsync(HttpContext context)
    {
        if (context.GetExchange()?.Classification is { Tenant: null } classification && hook.Resolve(context) is { } tenant)
        {
            classification.Tenant = tenant;
        }

        return next(context);
    }
}
