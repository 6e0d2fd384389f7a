using System.Numerics;

namespace Gateway.Admin.Stats;

/// <summary>
/// A fixed-size histogram of durations that many threads record into without a lock (one
/// <see cref="Interlocked.Increment(ref int)"/> per value). Values are microseconds, bucketed log-linearly: four
/// sub-buckets per power of two, from 16 µs (smaller values count there) to 2^32 µs (about 71 minutes; larger values
/// count in the last bucket), so a percentile read back is the middle of its bucket, within 12.5% of the value
/// recorded. The layout is HdrHistogram's (a power-of-two bucket split into linear sub-buckets; Gil Tene,
/// HdrHistogram, "bucket" and "sub-bucket"), cut down to 2 bits of sub-bucket precision so that one histogram is
/// <see cref="Buckets"/> × 4 bytes = 448 bytes.
/// </summary>
internal sealed class LogHistogram
{
    /// <summary>The number of buckets.</summary>
    public const int Buckets = (MaxOctave - MinOctave + 1) * SubBuckets;

    private const int MinOctave = 4;   // 16 µs
    private const int MaxOctave = 31;  // up to 2^32 µs
    private const int SubBuckets = 4;

    private readonly int[] _counts = new int[Buckets];

    /// <summary>Values recorded (approximate while writers run).</summary>
    public long Count
    {
        get
        {
            long n = 0;
            for (var i = 0; i < Buckets; i++)
            {
                n += Volatile.Read(ref _counts[i]);
            }

            return n;
        }
    }

    /// <summary>Records a duration.</summary>
    /// <param name="seconds">The duration in seconds; negative or NaN counts as the smallest bucket.</param>
    public void Record(double seconds) => Interlocked.Increment(ref _counts[Index(seconds)]);

    /// <summary>Adds every count of <paramref name="other"/> into this one (a reader's merge; not atomic as a whole).</summary>
    public void Add(LogHistogram other)
    {
        for (var i = 0; i < Buckets; i++)
        {
            _counts[i] += Volatile.Read(ref other._counts[i]);
        }
    }

    /// <summary>The value at <paramref name="percentile"/> (0 to 100), in milliseconds (the middle of its bucket); null when empty.</summary>
    public double? Percentile(double percentile)
    {
        var total = Count;
        if (total == 0)
        {
            return null;
        }

        var rank = Math.Max(1, (long)Math.Ceiling(total * Math.Clamp(percentile, 0, 100) / 100));
        long seen = 0;
        for (var i = 0; i < Buckets; i++)
        {
            seen += Volatile.Read(ref _counts[i]);
            if (seen >= rank)
            {
                return Middle(i) / 1000.0;
            }
        }

        return Middle(Buckets - 1) / 1000.0;
    }

    /// <summary>The bucket of a duration in seconds.</summary>
    internal static int Index(double seconds)
    {
        var micros = seconds * 1_000_000;
        var v = micros >= uint.MaxValue ? uint.MaxValue : micros >= 1u << MinOctave ? (uint)micros : 1u << MinOctave;
        var octave = BitOperations.Log2(v);
        var sub = (int)(v >> (octave - 2)) & (SubBuckets - 1);
        return ((octave - MinOctave) * SubBuckets) + sub;
    }

    /// <summary>The middle of bucket <paramref name="index"/>, in microseconds.</summary>
    internal static double Middle(int index)
    {
        var octave = (index / SubBuckets) + MinOctave;
        var sub = index % SubBuckets;
        var width = 1L << (octave - 2);
        return ((SubBuckets + sub) * width) + (width / 2.0);
    }
}
