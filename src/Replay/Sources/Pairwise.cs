namespace Replay.Sources;

/// <summary>
/// Pairwise (2-way) combination of parameter levels: a set of cases in which every pair of levels of every two
/// parameters appears at least once, far fewer than the full product (for 10 parameters of 3 levels, 59,049
/// combinations against about 15 cases). Most interaction faults involve at most two parameters (Kuhn, Wallace and
/// Gallo, "Software fault interactions and implications for software testing", IEEE TSE 30(6), 2004).
/// </summary>
/// <remarks>
/// The algorithm is IPOG for t = 2 (Lei, Kacker, Kuhn, Okun and Lawrence, "IPOG: A General Strategy for T-Way
/// Software Testing", ECBS 2007): start from the full product of the two parameters with the most levels; add each
/// further parameter by <em>horizontal growth</em> (give every existing case the level that covers the most pairs
/// not yet covered) and then <em>vertical growth</em> (cover each pair still missing by filling a don't-care of an
/// existing case, or by a new case). Don't-cares left at the end take the parameter's first level. Deterministic:
/// ties go to the lowest level and the earliest case.
/// </remarks>
internal static class Pairwise
{
    private const int DontCare = -1;

    /// <summary>Cases covering every pair of levels.</summary>
    /// <param name="levels">Number of levels of each parameter (each ≥ 1).</param>
    /// <returns>Each case: one level index per parameter, in the parameters' order.</returns>
    /// <exception cref="ArgumentException">A parameter has no level.</exception>
    public static List<int[]> Cases(IReadOnlyList<int> levels)
    {
        var n = levels.Count;
        if (n == 0)
        {
            return [[]];
        }

        for (var p = 0; p < n; p++)
        {
            if (levels[p] < 1)
            {
                throw new ArgumentException($"parameter {p} has no level.", nameof(levels));
            }
        }

        // Parameters with the most levels first (IPOG's order), stable.
        var order = Enumerable.Range(0, n).OrderByDescending(p => levels[p]).ThenBy(static p => p).ToArray();
        var size = order.Select(p => levels[p]).ToArray();
        var tests = new List<int[]>();
        if (n == 1)
        {
            for (var v = 0; v < size[0]; v++)
            {
                tests.Add([v]);
            }

            return Reorder(tests, order);
        }

        for (var a = 0; a < size[0]; a++)
        {
            for (var b = 0; b < size[1]; b++)
            {
                var t = new int[n];
                Array.Fill(t, DontCare);
                t[0] = a;
                t[1] = b;
                tests.Add(t);
            }
        }

        for (var i = 2; i < n; i++)
        {
            // Pairs (j, vj) × vi not yet covered: uncovered[j][vj, vi].
            var uncovered = new bool[i][,];
            var remaining = 0;
            for (var j = 0; j < i; j++)
            {
                uncovered[j] = new bool[size[j], size[i]];
                for (var vj = 0; vj < size[j]; vj++)
                {
                    for (var vi = 0; vi < size[i]; vi++)
                    {
                        uncovered[j][vj, vi] = true;
                        remaining++;
                    }
                }
            }

            // Horizontal growth.
            foreach (var t in tests)
            {
                var best = 0;
                var bestGain = -1;
                for (var vi = 0; vi < size[i]; vi++)
                {
                    var gain = 0;
                    for (var j = 0; j < i; j++)
                    {
                        if (t[j] != DontCare && uncovered[j][t[j], vi])
                        {
                            gain++;
                        }
                    }

                    if (gain > bestGain)
                    {
                        best = vi;
                        bestGain = gain;
                    }
                }

                t[i] = best;
                for (var j = 0; j < i; j++)
                {
                    if (t[j] != DontCare && uncovered[j][t[j], best])
                    {
                        uncovered[j][t[j], best] = false;
                        remaining--;
                    }
                }
            }

            // Vertical growth.
            for (var j = 0; j < i && remaining > 0; j++)
            {
                for (var vj = 0; vj < size[j]; vj++)
                {
                    for (var vi = 0; vi < size[i]; vi++)
                    {
                        if (!uncovered[j][vj, vi])
                        {
                            continue;
                        }

                        var host = tests.Find(t => t[i] == vi && t[j] == DontCare);
                        if (host is null)
                        {
                            host = new int[n];
                            Array.Fill(host, DontCare);
                            host[i] = vi;
                            tests.Add(host);
                        }

                        host[j] = vj;
                        uncovered[j][vj, vi] = false;
                        remaining--;
                    }
                }
            }
        }

        foreach (var t in tests)
        {
            for (var p = 0; p < n; p++)
            {
                if (t[p] == DontCare)
                {
                    t[p] = 0;
                }
            }
        }

        return Reorder(tests, order);
    }

    /// <summary>Pairs of levels that <paramref name="cases"/> leave uncovered (none for a pairwise set).</summary>
    public static int MissingPairs(IReadOnlyList<int> levels, IReadOnlyList<int[]> cases)
    {
        var missing = 0;
        for (var a = 0; a < levels.Count; a++)
        {
            for (var b = a + 1; b < levels.Count; b++)
            {
                var seen = new bool[levels[a], levels[b]];
                foreach (var c in cases)
                {
                    seen[c[a], c[b]] = true;
                }

                foreach (var s in seen)
                {
                    missing += s ? 0 : 1;
                }
            }
        }

        return missing;
    }

    private static List<int[]> Reorder(List<int[]> tests, int[] order)
    {
        var result = new List<int[]>(tests.Count);
        foreach (var t in tests)
        {
            var c = new int[t.Length];
            for (var k = 0; k < order.Length; k++)
            {
                c[order[k]] = t[k];
            }

            result.Add(c);
        }

        return result;
    }
}
