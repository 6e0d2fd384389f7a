using Microsoft.Extensions.Hosting;
using ModelSim.Engine;

namespace ModelSim.Hosting;

/// <summary>
/// Creates the engine and its metrics at start (after options validation, so bad configuration fails first) and stops
/// the engine when the application starts stopping, so open streams end at once instead of holding up shutdown.
/// </summary>
internal sealed class EngineLifetime(GenerationEngine engine, ModelSimMetrics metrics, IHostApplicationLifetime lifetime) : IHostedService
{
    private CancellationTokenRegistration _stopping;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        GC.KeepAlive(metrics); // resolving it is the point: observable instruments exist from now on
        _stopping = lifetime.ApplicationStopping.UnsafeRegister(static state => ((GenerationEngine)state!).Shutdown(), engine);
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken)
    {
        _stopping.Dispose();
        engine.Shutdown();
        return Task.CompletedTask;
    }
}
