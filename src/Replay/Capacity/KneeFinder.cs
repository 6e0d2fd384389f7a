namespace Replay.Capacity;

/// <summary>
/// Decides when a sweep is past the knee of its goodput curve, and where the knee is.
/// </summary>
/// <remarks>
/// <para>Below a target's capacity goodput follows the offered rate; at capacity it flattens (the target completes no
/// more), and beyond it, as the queue grows, latency climbs until requests miss their SLOs and goodput falls. The
/// sweep therefore stops once goodput has not grown by at least <see cref="Options.Growth"/> over the best step for
/// <see cref="Options.Patience"/> steps in a row while latency (p95 from the intended time) climbed above the best
/// step's, or at once when goodput collapses below half the best.</para>
/// <para>The knee is the first step whose goodput is within <see cref="Options.Growth"/> of the most goodput
/// reached: the lowest offered rate that already gets (nearly) all the goodput there is, where the target is
/// saturated but not yet queueing. This is the point the Universal Scalability Law and queueing theory call the
/// onset of saturation (Gunther, <i>Guerrilla Capacity Planning</i>, 2007, ch. 4); here it is found by measurement
/// rather than by fitting a model.</para>
/// </remarks>
internal static class KneeFinder
{
    /// <summary>How the knee is judged.</summary>
    /// <param name="Growth">Smallest relative goodput gain that counts as growing (0.05 = 5%).</param>
    /// <param name="Patience">Steps in a row without growth (and with climbing latency) before stopping.</param>
    internal sealed record Options(double Growth = 0.05, int Patience = 2);

    /// <summary>The step with the most goodput (the first one, on ties); -1 when there is none.</summary>
    public static int Best(IReadOnlyList<SweepStep> steps)
    {
        var best = -1;
        for (var i = 0; i < steps.Count; i++)
        {
            if (best < 0 || steps[i].GoodputRps > steps[best].GoodputRps)
            {
                best = i;
            }
        }

        return best;
    }

    /// <summary>The knee: the first step within <see cref="Options.Growth"/> of the best goodput; -1 when no step had any goodput.</summary>
    public static int Knee(IReadOnlyList<SweepStep> steps, Options options)
    {
        var best = Best(steps);
        if (best < 0 || steps[best].GoodputRps <= 0)
        {
            return -1;
        }

        var bar = steps[best].GoodputRps * (1 - options.Growth);
        for (var i = 0; i <= best; i++)
        {
            if (steps[i].GoodputRps >= bar)
            {
                return i;
            }
        }

        return best;
    }

    /// <summary>True when the steps so far are past the knee and the sweep should stop.</summary>
    public static bool PastKnee(IReadOnlyList<SweepStep> steps, Options options)
    {
        if (steps.Count < 2)
        {
            return false;
        }

        var best = Best(steps);
        var last = steps[^1];
        if (last.GoodputRps < steps[best].GoodputRps * 0.5)
        {
            return true; // collapsed
        }

        // Steps since goodput last grew by the required margin over everything before it.
        var flat = 0;
        var top = steps[0].GoodputRps;
        for (var i = 1; i < steps.Count; i++)
        {
            if (steps[i].GoodputRps >= top * (1 + options.Growth) && steps[i].GoodputRps > 0)
            {
                flat = 0;
            }
            else
            {
                flat++;
            }

            top = Math.Max(top, steps[i].GoodputRps);
        }

        return flat >= options.Patience && last.Latency.P95 > steps[best].Latency.P95 * 1.1;
    }
}
