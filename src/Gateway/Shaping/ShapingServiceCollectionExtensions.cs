using Gateway.Shaping.Admission;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Yarp.ReverseProxy.LoadBalancing;

namespace Gateway.Shaping;

/// <summary>DI entry point of traffic shaping.</summary>
internal static class ShapingServiceCollectionExtensions
{
    /// <summary>Adds rate-limit policies, admission control, circuit breakers and the <c>MostFreeCapacity</c> load-balancing policy.</summary>
    public static IServiceCollection AddGatewayShaping(this IServiceCollection services)
    {
        services.TryAddSingleton(TimeProvider.System);
        services.TryAddSingleton<ShapingRuntime>();
        services.TryAddSingleton<ShapingMetrics>();
        services.TryAddSingleton<RefusalLog>();
        services.TryAddSingleton<Tenants.TenantMetrics>();
        services.TryAddSingleton<ClusterAdmission>();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<ILoadBalancingPolicy, MostFreeCapacityPolicy>());
        return services;
    }
}
