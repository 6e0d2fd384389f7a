using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using ModelSim.Api;
using ModelSim.Engine;

namespace ModelSim.Hosting;

/// <summary>DI entry point of the simulator (YARP's <c>AddReverseProxy</c> pattern: <c>TryAdd*</c>, every part replaceable).</summary>
internal static class ModelSimServiceCollectionExtensions
{
    /// <summary>
    /// Registers the engine, its options (bound from <c>Sim</c>, validated at start, unknown keys rejected so a typo
    /// fails loudly), its metrics, the API handlers, gRPC and <see cref="TimeProvider.System"/> unless a time provider
    /// is already registered.
    /// </summary>
    public static IServiceCollection AddModelSim(this IServiceCollection services, IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(configuration);
        services.AddOptions<SimOptions>()
            .Bind(configuration.GetSection(SimOptions.SectionName), static binder => binder.ErrorOnUnknownConfiguration = true)
            .ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<SimOptions>, SimOptionsValidator>());
        services.TryAddSingleton(TimeProvider.System);
        services.AddMetrics();
        services.TryAddSingleton<GenerationEngine>();
        services.TryAddSingleton<ModelSimMetrics>();
        services.TryAddSingleton<OpenAiApi>();
        services.TryAddSingleton<WebSocketEndpoint>();
        services.AddHostedService<EngineLifetime>();
        services.AddGrpc(static grpc =>
        {
            grpc.EnableDetailedErrors = false;
            grpc.IgnoreUnknownServices = false;
        });
        return services;
    }
}
