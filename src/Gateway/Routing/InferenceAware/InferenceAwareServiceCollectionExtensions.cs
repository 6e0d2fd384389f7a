using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Gateway.Routing.InferenceAware;

/// <summary>Adds the <c>InferenceAware</c> load-balancing policy's background scraper and metrics.</summary>
internal static class InferenceAwareServiceCollectionExtensions
{
    /// <summary>
    /// Adds the scraper (<see cref="ReplicaMetricsScraper"/>, one hosted service for every <c>InferenceAware</c> cluster)
    /// and the policy's instruments. The policy itself and its cluster rule are added with the proxy rules
    /// (<see cref="ProxyRules.AddGatewayProxyRules"/>), so that configuration validation knows its name.
    /// </summary>
    public static IServiceCollection AddInferenceAware(this IServiceCollection services)
    {
        services.TryAddSingleton(TimeProvider.System);
        services.TryAddSingleton<ReplicaBoard>();
        services.TryAddSingleton<InferenceAwareMetrics>();
        services.AddHostedService<ReplicaMetricsScraper>();
        return services;
    }
}
