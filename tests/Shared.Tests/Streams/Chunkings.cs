namespace Contracts.Tests.Streams;

/// <summary>Ways to cut one byte stream into chunks: whole, at every position (or every <c>step</c>-th), 1-byte, random (fixed seeds).</summary>
internal static class Chunkings
{
    public static IEnumerable<(string Name, int[] Cuts)> All(int length, int step = 1)
    {
        yield return ("whole", []);
        for (var i = 0; i <= length; i += step)
        {
            yield return ($"split at {i}", [i]);
        }

        yield return ("1-byte", Enumerable.Range(1, Math.Max(0, length - 1)).ToArray());
        for (var seed = 1; seed <= 20; seed++)
        {
            var random = new Random(seed);
            var cuts = new List<int>();
            var at = 0;
            while (true)
            {
                at += random.Next(1, seed % 2 == 0 ? 8 : 300);
                if (at >= length)
                {
                    break;
                }

                cuts.Add(at);
            }

            yield return ($"random seed {seed}", cuts.ToArray());
        }
    }

    /// <summary>Feeds <paramref name="bytes"/> cut at <paramref name="cuts"/>; each chunk is a fresh copy so no parser can keep a reference.</summary>
    public static void Feed(byte[] bytes, int[] cuts, Action<byte[]> append)
    {
        var start = 0;
        foreach (var cut in cuts.Append(bytes.Length))
        {
            append(bytes[start..cut]);
            start = cut;
        }
    }

    /// <summary>Positions from <paramref name="length"/> where every chunking is tried; for big inputs a step, plus the positions listed.</summary>
    public static IEnumerable<(string Name, int[] Cuts)> Around(int length, int step, params int[] interesting)
    {
        foreach (var c in All(length, step))
        {
            yield return c;
        }

        foreach (var p in interesting)
        {
            for (var i = Math.Max(0, p - 3); i <= Math.Min(length, p + 3); i++)
            {
                yield return ($"split at {i} (near {p})", [i]);
            }
        }
    }
}
