namespace ModelSim.Engine;

/// <summary>
/// The simulator's cost model, in one place so the engine, the tests and docs/modelsim.md agree.
/// </summary>
/// <remarks>
/// <para>The shape follows how a batched LLM server spends GPU time (Orca, OSDI '22; vLLM, SOSP '23): a
/// <em>prefill</em> that reads the prompt (a fixed cost plus a cost per prompt token), then one <em>decode step</em> per
/// output token, where a step costs more the fuller the batch is, because a step is bound by memory bandwidth for
/// small batches and grows towards compute-bound as the batch fills. We model that growth as linear in occupancy:</para>
/// <code>
/// prefill(P) = PrefillMs + P × PrefillPerTokenMs
/// step(r)    = PerTokenMs × (1 + BatchSlowdown × (r − 1) / (Slots − 1))     (step(r) = PerTokenMs when Slots = 1)
/// latency    = queue wait + prefill(P) + Σ_{i=1..N} step(r_i)
/// </code>
/// <para>where <c>r</c> is the number of sequences holding a slot (in prefill or decode) when the step is scheduled.
/// With every slot busy, a request holds its slot for <see cref="SaturatedSlotMs"/>, so the server completes at most
/// <see cref="CapacityPerSecond"/> = <c>1000 × Slots / SaturatedSlotMs</c> requests per second (Little's law).</para>
/// </remarks>
internal static class LatencyModel
{
    /// <summary>Prefill time of a prompt of <paramref name="promptTokens"/> tokens, in milliseconds.</summary>
    public static double PrefillMs(SimOptions options, int promptTokens) =>
        options.PrefillMs + (promptTokens * options.PrefillPerTokenMs);

    /// <summary>Decode step time with <paramref name="running"/> sequences in the batch (1 ≤ running ≤ Slots), in milliseconds.</summary>
    public static double StepMs(SimOptions options, int running) =>
        options.Slots <= 1 || running <= 1
            ? options.PerTokenMs
            : options.PerTokenMs * (1 + (options.BatchSlowdown * (Math.Min(running, options.Slots) - 1) / (options.Slots - 1)));

    /// <summary>Latency of a lone request (empty batch, no queue): prefill plus <paramref name="outputTokens"/> single-sequence steps, in ms.</summary>
    public static double UnloadedLatencyMs(SimOptions options, int promptTokens, int outputTokens) =>
        PrefillMs(options, promptTokens) + (outputTokens * options.PerTokenMs);

    /// <summary>How long a request holds its slot when every slot is busy (each step at full-batch cost), in ms.</summary>
    public static double SaturatedSlotMs(SimOptions options, int promptTokens, int outputTokens) =>
        PrefillMs(options, promptTokens) + (outputTokens * StepMs(options, options.Slots));

    /// <summary>Requests per second the server completes at saturation for requests of this shape: <c>1000 × Slots / SaturatedSlotMs</c>.</summary>
    public static double CapacityPerSecond(SimOptions options, int promptTokens, int outputTokens)
    {
        var slotMs = SaturatedSlotMs(options, promptTokens, outputTokens);
        return slotMs <= 0 ? double.PositiveInfinity : 1000.0 * options.Slots / slotMs;
    }
}
