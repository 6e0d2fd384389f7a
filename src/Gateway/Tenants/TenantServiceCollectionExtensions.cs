using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Gateway.Tenants;

/// <summary>DI entry point of authentication and tenants.</summary>
internal static class TenantServiceCollectionExtensions
{
    /// <summary>Adds the tenant directory, the API key store (a hosted service when it shares keys through Redis), the failed-attempt table and the metrics.</summary>
    public static IServiceCollection AddGatewayTenants(this IServiceCollection services)
    {
        services.TryAddSingleton(TimeProvider.System);
        services.TryAddSingleton<ApiKeyStore>();
        services.AddHostedService(static sp =>
        {
            // Stranger review B5: the metrics subscribe to the store's failures before it starts, so the initial load's
            // failure (Redis down at start-up) is counted even when no request came yet (Gateway:Admin:WarmupRequests 0).
            sp.GetRequiredService<AuthMetrics>();
            return sp.GetRequiredService<ApiKeyStore>();
        });
        services.TryAddSingleton<TenantDirectory>();
        services.TryAddSingleton<FailedAttempts>();
        services.TryAddSingleton(static sp =>
        {
            var metrics = new AuthMetrics(sp.GetRequiredService<Telemetry.GatewayMetrics>(), sp.GetRequiredService<TenantDirectory>());
            sp.GetRequiredService<ApiKeyStore>().Failed += metrics.StoreError;
            return metrics;
        });
        return services;
    }
}
