using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

namespace Gateway.Recording;

/// <summary>DI entry point of recording.</summary>
internal static class RecordingServiceCollectionExtensions
{
    /// <summary>Adds recording: options (validated at start), store, sink, manager and capture.</summary>
    public static IServiceCollection AddGatewayRecording(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddOptions<RecordingOptions>().Bind(configuration.GetSection(RecordingOptions.Section)).ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<RecordingOptions>, RecordingOptionsValidator>());
        services.TryAddSingleton(TimeProvider.System);
        services.TryAddSingleton<RecordingStoreHolder>();
        services.TryAddSingleton<RecordingMetrics>();
        services.TryAddSingleton<Redactor>();
        services.TryAddSingleton<RecordBuilder>();
        services.TryAddSingleton<SessionResolver>();
        services.TryAddSingleton<SessionSampler>();
        services.TryAddSingleton<RecordingManager>();
        services.TryAddSingleton<RecordingSink>();
        services.AddHostedService(static sp => sp.GetRequiredService<RecordingSink>());
        services.AddHostedService<RecordingBootstrap>();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<Yarp.ReverseProxy.Transforms.Builder.ITransformProvider, Capture.BackendVersionTransform>());
        return services;
    }
}

/// <summary>
/// Starts <c>Gateway:Recording:StartAtBoot</c> and, every minute, forgets idle sessions. If the store is unreachable
/// at boot it keeps trying in the background (the gateway serves meanwhile).
/// </summary>
internal sealed partial class RecordingBootstrap(RecordingManager manager, IOptions<RecordingOptions> options, TimeProvider time, ILogger<RecordingBootstrap> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        await manager.StopStaleAsync(stoppingToken);
        if (options.Value.StartAtBoot is { } name)
        {
            var delay = TimeSpan.FromSeconds(1);
            while (!stoppingToken.IsCancellationRequested)
            {
                try
                {
                    await manager.StartAsync(name, stoppingToken);
                    break;
                }
                catch (Exception ex) when (ex is not OperationCanceledException)
                {
                    Log.BootStartFailed(logger, name, ex.Message);
                    await Task.Delay(delay, time, stoppingToken);
                    delay = TimeSpan.FromSeconds(Math.Min(delay.TotalSeconds * 2, 30));
                }
            }
        }

        using var timer = new PeriodicTimer(TimeSpan.FromMinutes(1), time);
        while (await timer.WaitForNextTickAsync(stoppingToken))
        {
            manager.EvictIdleSessions();
        }
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        // Recordings run by this gateway end with it: mark them stopped (the writer drains what is queued).
        await manager.StopAllAsync(cancellationToken);
        await base.StopAsync(cancellationToken);
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 3003, Level = LogLevel.Warning, Message = "Could not start recording '{Name}' at boot ({Reason}); retrying.")]
        public static partial void BootStartFailed(ILogger logger, string name, string reason);
    }
}
