using System.Diagnostics;
using System.Runtime.InteropServices;

namespace Replay.Scheduling;

/// <summary>
/// Precise waits for the dispatcher thread on Linux: <c>clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME)</c> until the
/// next intended time, on the clock <see cref="Stopwatch"/> reads there. It wakes within the timer slack (50 µs by
/// default) instead of the millisecond or more of a timer-based wait, costs no CPU between arrivals, and an absolute
/// deadline cannot drift when a sleep is interrupted.
/// </summary>
/// <remarks>
/// <see cref="TryElevateCurrentThread"/> (SCHED_FIFO) is kept for experiments but not used: measured on 2 cores, a
/// real-time dispatcher that preempts the threads reading responses made both latency and lag worse
/// (docs/benchmarks.md).
/// </remarks>
internal static partial class PreciseSleep
{
    private const int SchedFifo = 1;
    private const int ClockMonotonic = 1;
    private const int TimerAbstime = 1;

    [StructLayout(LayoutKind.Sequential)]
    private struct SchedParam
    {
        public int Priority;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct TimeSpec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    [LibraryImport("libc", EntryPoint = "sched_setscheduler", SetLastError = true)]
    private static partial int SchedSetScheduler(int pid, int policy, ref SchedParam param);

    [LibraryImport("libc", EntryPoint = "clock_nanosleep")]
    private static partial int ClockNanosleep(int clock, int flags, ref TimeSpec request, IntPtr remain);

    /// <summary>True when <see cref="Stopwatch"/> timestamps are CLOCK_MONOTONIC nanoseconds (Linux, 64-bit).</summary>
    public static bool Supported { get; } = OperatingSystem.IsLinux() && Stopwatch.Frequency == 1_000_000_000 && Environment.Is64BitProcess;

    /// <summary>Moves the calling thread to SCHED_FIFO priority 10; false when not supported or not permitted.</summary>
    public static bool TryElevateCurrentThread()
    {
        if (!Supported)
        {
            return false;
        }

        try
        {
            var param = new SchedParam { Priority = 10 };
            return SchedSetScheduler(0, SchedFifo, ref param) == 0;
        }
        catch (Exception ex) when (ex is DllNotFoundException or EntryPointNotFoundException)
        {
            return false;
        }
    }

    /// <summary>Sleeps until the <see cref="Stopwatch"/> timestamp <paramref name="timestamp"/> (absolute, so an interrupted sleep resumes without drift).</summary>
    public static void SleepUntil(long timestamp)
    {
        var spec = new TimeSpec { Seconds = timestamp / 1_000_000_000, Nanoseconds = timestamp % 1_000_000_000 };
        while (ClockNanosleep(ClockMonotonic, TimerAbstime, ref spec, IntPtr.Zero) == 4)
        {
            // EINTR: sleep again until the same absolute time.
        }
    }
}
