using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

namespace Gateway.Configuration;

/// <summary>DI entry point of the configuration model.</summary>
internal static class ConfigurationServiceCollectionExtensions
{
    /// <summary>
    /// Adds the gate and every section's record, bound for <c>IOptions</c>/<c>IOptionsMonitor</c> from the gate's
    /// validated snapshot (so a monitor only ever sees a configuration that passed <see cref="ConfigurationValidator"/>),
    /// with the sections' validators; the records the start-up validation bound are registered as they are too, for the
    /// classes that take them directly.
    /// </summary>
    public static IServiceCollection AddGatewayConfiguration(this IServiceCollection services, ConfigurationGate gate)
    {
        services.AddSingleton(_ => gate); // (a factory, so that the container disposes it)
        services.TryAddSingleton<Routing.IProxyCandidateSource>(gate);
        var configuration = gate.Configuration;
        services.AddOptions<Shaping.ShapingOptions>().Bind(configuration.GetSection(Shaping.ShapingOptions.Section));
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<Shaping.ShapingOptions>, Shaping.ShapingOptionsValidator>());
        services.AddOptions<Listeners.ListenersOptions>().Bind(configuration.GetSection(Listeners.ListenersOptions.Section));
        services.AddOptions<GatewayLimitsOptions>().Bind(configuration.GetSection(GatewayLimitsOptions.Section));
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<GatewayLimitsOptions>, GatewayLimitsOptionsRanges>());
        services.AddOptions<GatewayTelemetryOptions>().Bind(configuration.GetSection(GatewayTelemetryOptions.Section));
        services.AddOptions<Admin.AdminOptions>().Bind(configuration.GetSection(Admin.AdminOptions.Section));
        services.AddSingleton(gate.Current.Limits);
        services.AddSingleton(gate.Current.Admin);
        return services;
    }
}
