namespace Replay.Sources;

/// <summary>
/// Seeds derived from the run's <c>--seed</c> and indices, the same in every process (unlike
/// <see cref="HashCode"/>, which is randomized per process), so that a run repeats exactly.
/// </summary>
internal static class StableSeed
{
    /// <summary>A 31-bit seed mixed from the values with SplitMix64's finalizer (Steele, Lea and Flood, OOPSLA 2014).</summary>
    public static int Mix(long a, long b, long c = 0)
    {
        var x = Step((ulong)a) ^ Step((ulong)b + 0x9E3779B97F4A7C15UL) ^ Step((ulong)c + 0x3C6EF372FE94F82AUL);
        return (int)(Step(x) & 0x7fffffff);

        static ulong Step(ulong z)
        {
            z += 0x9E3779B97F4A7C15UL;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            return z ^ (z >> 31);
        }
    }
}
