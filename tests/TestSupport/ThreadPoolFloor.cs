namespace TestSupport;

/// <summary>
/// The test host parks thread-pool threads in blocking calls for the whole run (vstest's socket message loop, the xUnit
/// adapter waiting for the assembly), so on a 2-core machine the pool's default minimum (one thread per core) leaves the
/// in-process servers and clients with little or none, and work waits for thread injection (observed: a loopback
/// request stalled 0.5–1 s). Each test assembly raises the minimum once, from a module initializer.
/// </summary>
public static class ThreadPoolFloor
{
    /// <summary>Raises the thread pool's minimum worker and I/O threads to at least <paramref name="minimum"/>.</summary>
    public static void Raise(int minimum)
    {
        ThreadPool.GetMinThreads(out var workers, out var io);
        ThreadPool.SetMinThreads(Math.Max(workers, minimum), Math.Max(io, minimum));
    }
}
