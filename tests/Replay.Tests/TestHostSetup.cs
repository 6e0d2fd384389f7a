using System.Runtime.CompilerServices;

namespace Replay.Tests;

/// <summary>Runs once when the test assembly loads.</summary>
internal static class TestHostSetup
{
    /// <summary>A higher thread-pool minimum keeps in-process servers as responsive as real ones (see <see cref="TestSupport.ThreadPoolFloor"/>).</summary>
    [ModuleInitializer]
    internal static void RaiseThreadPoolMinimum()
    {
        TestSupport.ThreadPoolFloor.Raise(32);
    }
}
