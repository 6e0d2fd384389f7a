namespace ModelSim;

/// <summary>
/// A consistent snapshot of one simulator's exact counters (taken under the engine's lock), as
/// <c>GET /metrics</c> renders them. Counters count since the simulator started.
/// </summary>
/// <remarks>
/// Every generation request that reaches the engine ends up in exactly one bucket, so at any snapshot
/// <c>Requests == Rejected + Failed + Completed + Cancelled + Inflight + QueueDepth</c>.
/// Malformed requests never reach the engine; they are counted in <see cref="BadRequests"/> only.
/// </remarks>
public sealed record SimStats
{
    /// <summary>Generation requests that reached the engine (HTTP, gRPC and WebSocket), whatever became of them. <c>modelsim_requests_total</c>.</summary>
    public long Requests { get; init; }

    /// <summary>Requests refused at once because every slot was busy and the queue was full (503 / RESOURCE_EXHAUSTED). <c>modelsim_rejected_total</c>.</summary>
    public long Rejected { get; init; }

    /// <summary>Requests that generated all their tokens. <c>modelsim_completed_total</c>.</summary>
    public long Completed { get; init; }

    /// <summary>Requests whose client went away while they ran or waited (slot or queue place freed). <c>modelsim_cancelled_total</c>.</summary>
    public long Cancelled { get; init; }

    /// <summary>Requests answered 500 because of a collapse (refused during one, or running/queued when it struck), or cut off by shutdown. <c>modelsim_failed_total</c>.</summary>
    public long Failed { get; init; }

    /// <summary>Malformed requests answered 400 (they never reach the engine and are not in <see cref="Requests"/>). <c>modelsim_bad_requests_total</c>.</summary>
    public long BadRequests { get; init; }

    /// <summary>Sequences holding a slot now (in prefill or decode). <c>modelsim_inflight</c>.</summary>
    public int Inflight { get; init; }

    /// <summary>Requests waiting in the FIFO queue now. <c>modelsim_queue_depth</c>.</summary>
    public int QueueDepth { get; init; }

    /// <summary>Highest <see cref="QueueDepth"/> since start. <c>modelsim_queue_depth_max</c>.</summary>
    public int QueueDepthMax { get; init; }

    /// <summary>Configured slots (batch size). <c>modelsim_slots</c>.</summary>
    public int Slots { get; init; }

    /// <summary>Prompt tokens of requests that got a slot (counted when their prefill starts). <c>modelsim_prompt_tokens_total</c>.</summary>
    public long PromptTokens { get; init; }

    /// <summary>Output tokens generated, including those of requests cancelled later. <c>modelsim_generated_tokens_total</c>.</summary>
    public long GeneratedTokens { get; init; }

    /// <summary>Collapses since start. <c>modelsim_collapses_total</c>.</summary>
    public long Collapses { get; init; }

    /// <summary>Stalls requested since start. <c>modelsim_stalls_total</c>.</summary>
    public long Stalls { get; init; }

    /// <summary>KV blocks of the simulated GPU (<c>Sim:PrefixCache:Blocks</c>); 0 when the prefix cache is off.</summary>
    public int KvBlocks { get; init; }

    /// <summary>KV blocks held by running sequences (pinned cached blocks plus private ones). <c>vllm:kv_cache_usage_perc</c> = this / <see cref="KvBlocks"/>.</summary>
    public int KvBlocksUsed { get; init; }

    /// <summary>Blocks in the prefix-cache table, held or idle.</summary>
    public int KvBlocksCached { get; init; }

    /// <summary>Prompt tokens looked up in the prefix cache (every prompt token of every sequence that started). <c>vllm:prefix_cache_queries_total</c>.</summary>
    public long PrefixCacheQueries { get; init; }

    /// <summary>Prompt tokens found in the prefix cache (prefill skipped). <c>vllm:prefix_cache_hits_total</c>.</summary>
    public long PrefixCacheHits { get; init; }
}
