using System.Runtime.CompilerServices;

namespace Replay.Tests;

/// <summary>Runs once when the test assembly loads.</summary>
internal static class TestHostSetup
{
    /// <summary>
    /// On a 2-core machine the test host keeps thread-pool threads blocked for the whole run, and new loopback requests
    /// then wait for the pool to grow (0.5 to 1 s each). A higher minimum keeps in-process servers as responsive as real ones.
    /// </summary>
    [ModuleInitializer]
    internal static void RaiseThreadPoolMinimum()
    {
        ThreadPool.GetMinThreads(out var workers, out var io);
        ThreadPool.SetMinThreads(Math.Max(workers, 32), Math.Max(io, 32));
    }
}
