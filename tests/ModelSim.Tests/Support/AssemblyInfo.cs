using System.Runtime.CompilerServices;

// Test classes run in parallel (xUnit's default: one collection per class, as many threads as cores). Timing
// assertions measure against the engine's own schedule or allow generous slack, so they hold on a busy 2-core box.
[assembly: CollectionBehavior(MaxParallelThreads = 2)]

namespace ModelSim.Tests.Support;

internal static class TestProcess
{
    /// <summary>
    /// The test host parks thread-pool threads in blocking calls for the whole run (vstest's socket message loop, the
    /// xUnit adapter waiting for the assembly), so on a 2-core machine the pool's default minimum (one thread per
    /// core) leaves the in-process servers and clients with little or none, and work waits for thread injection
    /// (observed: a loopback request stalled 0.6–1 s). A higher minimum keeps the measured latencies the servers'.
    /// </summary>
    [ModuleInitializer]
    internal static void RaiseThreadPoolMinimum()
    {
        ThreadPool.GetMinThreads(out var workers, out var io);
        ThreadPool.SetMinThreads(Math.Max(workers, 16), Math.Max(io, 16));
    }
}
