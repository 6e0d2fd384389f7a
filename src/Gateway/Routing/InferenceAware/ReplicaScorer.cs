namespace Gateway.Routing.InferenceAware;

/// <summary>Why <see cref="ReplicaScorer"/> chose a destination: the <c>reason</c> tag of <c>gateway.routing.decisions</c>.</summary>
internal enum PickReason
{
    /// <summary>The chosen destination recently served the prompt's leading blocks (the longest such match, or one within the load bound).</summary>
    PrefixHit,

    /// <summary>A destination held the prompt's prefix but was passed over: its load exceeded the bound (bounded load), so another took it.</summary>
    Load,

    /// <summary>No destination held the prefix (or the request has no prompt to match): chosen by queue and KV usage alone.</summary>
    Fallback,
}

/// <summary>One candidate's inputs to <see cref="ReplicaScorer.Pick"/>.</summary>
/// <param name="Load">Requests at the destination: scraped waiting + running, plus those the gateway sent since that scrape; or the gateway's in-flight count alone when its metrics are stale.</param>
/// <param name="KvUsage">Scraped KV cache usage, 0 … 1 (0 when stale).</param>
/// <param name="MatchedBlocks">Leading prompt blocks this destination served recently (from the prefix table).</param>
/// <param name="TieBreak">The destination's rendezvous weight for this prompt: equal scores go to the highest.</param>
internal readonly record struct ReplicaInput(double Load, double KvUsage, int MatchedBlocks, ulong TieBreak);

/// <summary>
/// Scores the destinations of an <c>InferenceAware</c> cluster and applies the load bound. Pure: its inputs are values,
/// so it is tested with fixed ones.
/// </summary>
/// <remarks>
/// <para>Score of destination <c>d</c>, higher is better:
/// <c>PrefixWeight · matched_d / blocks − QueueWeight · load_d / (max load + 1) − KvWeight · kv_d</c>.
/// With the default weights (2, 1, 0.5) a full prefix match outweighs any queue, so the prefix decides until the
/// bound does.</para>
/// <para>Bounded load, after consistent hashing with bounded loads (V. Mirrokni, M. Thorup, M. Zadimoghaddam,
/// "Consistent Hashing with Bounded Loads", SODA 2018): there each bin takes at most <c>⌈(1 + ε) · average⌉</c> and a
/// ball whose bin is full moves on to the next bin with room. Here the bound is relative to the least-loaded
/// destination, <c>LoadFactor · (least load + 1)</c> (the +1 is the request being placed, so an idle fleet still lets
/// a prefix's destination take a few), and a destination above it is passed over for the best-scoring one within it.
/// The least-loaded destination is always within the bound (<c>LoadFactor ≥ 1</c>), so a choice always exists.</para>
/// </remarks>
internal static class ReplicaScorer
{
    /// <summary>Picks a destination.</summary>
    /// <param name="candidates">At least one candidate.</param>
    /// <param name="promptBlocks">The prompt's full blocks hashed (0 when it has none: no prefix term).</param>
    /// <param name="settings">Weights and load factor.</param>
    /// <returns>The chosen candidate's index and why.</returns>
    /// <exception cref="ArgumentException"><paramref name="candidates"/> is empty.</exception>
    public static (int Index, PickReason Reason) Pick(ReadOnlySpan<ReplicaInput> candidates, int promptBlocks, InferenceAwareSettings settings)
    {
        if (candidates.IsEmpty)
        {
            throw new ArgumentException("No candidates.", nameof(candidates));
        }

        double minLoad = double.MaxValue, maxLoad = 0;
        var longest = 0;
        foreach (var c in candidates)
        {
            minLoad = Math.Min(minLoad, c.Load);
            maxLoad = Math.Max(maxLoad, c.Load);
            longest = Math.Max(longest, c.MatchedBlocks);
        }

        var bound = settings.LoadFactor * (minLoad + 1);
        int best = -1, bestUnbounded = -1;
        double bestScore = double.MinValue, bestUnboundedScore = double.MinValue;
        for (var i = 0; i < candidates.Length; i++)
        {
            var c = candidates[i];
            var score = (promptBlocks > 0 ? settings.PrefixWeight * c.MatchedBlocks / promptBlocks : 0)
                - (settings.QueueWeight * c.Load / (maxLoad + 1))
                - (settings.KvWeight * c.KvUsage);
            if (Better(score, c.TieBreak, bestUnboundedScore, bestUnbounded < 0 ? 0 : candidates[bestUnbounded].TieBreak, bestUnbounded))
            {
                bestUnbounded = i;
                bestUnboundedScore = score;
            }

            if (c.Load <= bound && Better(score, c.TieBreak, bestScore, best < 0 ? 0 : candidates[best].TieBreak, best))
            {
                best = i;
                bestScore = score;
            }
        }

        var reason = candidates[best].MatchedBlocks > 0 ? PickReason.PrefixHit
            : longest > 0 && best != bestUnbounded ? PickReason.Load
            : PickReason.Fallback;
        return (best, reason);
    }

    private static bool Better(double score, ulong tieBreak, double bestScore, ulong bestTieBreak, int bestIndex) =>
        bestIndex < 0 || score > bestScore + 1e-9 || (Math.Abs(score - bestScore) <= 1e-9 && tieBreak > bestTieBreak);
}
