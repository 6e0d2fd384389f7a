using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using Polly;
using Polly.Retry;

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
            // Until it starts or the gateway stops: 1 s, 2 s, 4 s ... at most 30 s apart.
            var retry = new ResiliencePipelineBuilder { TimeProvider = time }
                .AddRetry(new RetryStrategyOptions
                {
                    MaxRetryAttempts = int.MaxValue,
                    BackoffType = DelayBackoffType.Exponential,
                    Delay = TimeSpan.FromSeconds(1),
                    MaxDelay = TimeSpan.FromSeconds(30),
                    UseJitter = false,
                    ShouldHandle = static args => ValueTask.FromResult(args.Outcome.Exception is not null and not OperationCanceledException),
                    OnRetry = args =>
                    {
                        Log.BootStartFailed(logger, name, args.Outcome.Exception!.Message);
                        return ValueTask.CompletedTask;
                    },
                })
                .Build();
            await retry.ExecuteAsync(static (s, ct) => new ValueTask(s.manager.StartAsync(s.name, ct)), (manager, name), stoppingToken);
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
