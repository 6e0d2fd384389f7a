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
/// A real-time (SCHED_FIFO) dispatcher was tried and dropped: on 2 cores it preempted the threads reading responses
/// and made both latency and lag worse (docs/benchmarks.md).
/// </remarks>
internal static partial class PreciseSleep
{
    private const int ClockMonotonic = 1;
    private const int TimerAbstime = 1;

    [StructLayout(LayoutKind.Sequential)]
    private struct TimeSpec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    [LibraryImport("libc", EntryPoint = "clock_nanosleep")]
    private static partial int ClockNanosleep(int clock, int flags, ref TimeSpec request, IntPtr remain);

    /// <summary>True when <see cref="Stopwatch"/> timestamps are CLOCK_MONOTONIC nanoseconds (Linux, 64-bit) and libc's <c>clock_nanosleep</c> answers.</summary>
    public static bool Supported { get; } = Probe();

    private static bool Probe()
    {
        if (!OperatingSystem.IsLinux() || Stopwatch.Frequency != 1_000_000_000 || !Environment.Is64BitProcess)
        {
            return false;
        }

        try
        {
            var past = new TimeSpec { Seconds = 0, Nanoseconds = 1 };
            return ClockNanosleep(ClockMonotonic, TimerAbstime, ref past, IntPtr.Zero) == 0;
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
