using System.Diagnostics;

namespace ModelSim.Engine;

/// <summary>
/// The simulated GPU's KV cache: <c>Sim:PrefixCache:Blocks</c> blocks of <c>Sim:PrefixCache:BlockTokens</c> tokens,
/// with automatic prefix caching in the manner of vLLM v1's <c>KVCacheManager</c> / <c>BlockPool</c>
/// (vllm/v1/core/kv_cache_manager.py, block_pool.py). Not thread-safe: the engine calls it under its lock.
/// </summary>
/// <remarks>
/// <para><b>Blocks.</b> A running sequence holds <c>ceil((P + N) / BlockTokens)</c> blocks for its P prompt and N output
/// tokens, reserved when it is admitted (vLLM allocates decode blocks as it goes and preempts when it runs out; reserving
/// up front is the conservative version of the same bound and never preempts). Its <c>floor(P / BlockTokens)</c> full
/// prompt blocks are <em>cached</em>: entered in a table under their chain hash (<see cref="PrefixHasher"/>) with a
/// reference count, so a later (or concurrent) sequence with the same prefix shares them. The rest (a partial last
/// prompt block and the output blocks) are private and freed when the sequence ends.</para>
/// <para><b>Hits.</b> A new sequence looks its block hashes up in order and stops at the first miss; like vLLM it never
/// counts the block holding its last prompt token as a hit (that token must be computed to produce the first output),
/// so at most <c>floor((P − 1) / BlockTokens)</c> blocks hit. Every hit block saves <c>BlockTokens</c> tokens of prefill.</para>
/// <para><b>Pinning and LRU.</b> A block with a reference count above 0 is pinned: never evicted. When its last holder ends
/// it joins the tail of an LRU list of idle cached blocks, and a sequence's blocks are released last block first, so a
/// chain's tail is evicted before its head (vLLM frees in the same reverse order). Idle cached blocks count as free:
/// a new allocation takes never-used space first, then evicts from the LRU head.</para>
/// <para><b>Usage.</b> As vLLM's <c>kv_cache_usage</c>: blocks held by running sequences (pinned or private) over all
/// blocks; idle cached blocks are free.</para>
/// <para><b>Too large for the cache.</b> A sequence needing more blocks than the whole cache (vLLM would refuse it as
/// longer than the model's context) takes the whole cache instead, runs alone, and caches nothing, so a huge prompt is
/// still answered.</para>
/// </remarks>
internal sealed class KvCache
{
    private readonly Dictionary<ulong, Block> _table = [];
    private readonly int _capacity;
    private readonly int _blockTokens;

    // Idle cached blocks (reference count 0), least recently used first.
    private Block? _lruHead;
    private Block? _lruTail;
    private int _idle;

    private int _pinned;   // cached blocks with a reference count > 0
    private int _private;  // uncached blocks held by running sequences

    public KvCache(int capacityBlocks, int blockTokens)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacityBlocks, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(blockTokens, 1);
        _capacity = capacityBlocks;
        _blockTokens = blockTokens;
    }

    /// <summary>Blocks in the cache.</summary>
    public int Capacity => _capacity;

    /// <summary>Tokens per block.</summary>
    public int BlockTokens => _blockTokens;

    /// <summary>Blocks held by running sequences (pinned cached blocks plus private ones).</summary>
    public int UsedBlocks => _pinned + _private;

    /// <summary>Blocks in the prefix table (pinned or idle).</summary>
    public int CachedBlocks => _table.Count;

    /// <summary>Cached blocks with a reference count of 0 (evictable).</summary>
    public int IdleBlocks => _idle;

    /// <summary>Blocks a sequence of this size holds while it runs: <c>ceil((P + N) / BlockTokens)</c>, at most <see cref="Capacity"/>.</summary>
    public int BlocksFor(int promptTokens, int maxTokens) =>
        (int)Math.Min(_capacity, ((long)promptTokens + maxTokens + _blockTokens - 1) / _blockTokens);

    /// <summary>True when the block with chain hash <paramref name="hash"/> is cached (pinned or idle).</summary>
    public bool Contains(ulong hash) => _table.ContainsKey(hash);

    /// <summary>
    /// Reserves <paramref name="sequence"/>'s blocks and finds its cached prefix, or changes nothing and returns false when
    /// the free blocks (never used plus idle cached) do not suffice. On success sets the sequence's
    /// <see cref="Sequence.CachedTokens"/>, <see cref="Sequence.KvBlocks"/> and <see cref="Sequence.PrivateBlocks"/>.
    /// </summary>
    /// <param name="sequence">A sequence about to start; holds no blocks yet.</param>
    /// <param name="startMs">Engine time its prefill starts.</param>
    /// <param name="options">For the prefill time (<see cref="LatencyModel.PrefillMs"/> of the uncached tokens).</param>
    public bool TryAllocate(Sequence sequence, double startMs, SimOptions options)
    {
        Debug.Assert(sequence.KvBlocks is null && sequence.PrivateBlocks == 0, "The sequence holds no blocks yet.");
        var hashes = sequence.BlockHashes;
        var total = ((long)sequence.PromptTokens + sequence.MaxTokens + _blockTokens - 1) / _blockTokens;
        if (total > _capacity || hashes.Length > total)
        {
            // Larger than the whole cache: the whole cache, alone, nothing cached.
            if (_pinned + _private > 0)
            {
                return false;
            }

            EvictIdle(_idle);
            _private = _capacity;
            sequence.PrivateBlocks = _capacity;
            sequence.CachedTokens = 0;
            sequence.KvBlocks = [];
            sequence.PrefillEndMs = startMs + LatencyModel.PrefillMs(options, sequence.PromptTokens);
            return true;
        }

        // (1) Count: hits (the leading run of cached blocks, at most floor((P − 1) / BlockTokens)), blocks already cached
        // beyond the run (shared, not counted as hits), idle blocks that sharing would pin, and blocks to allocate.
        var maxHits = sequence.PromptTokens == 0 ? 0 : Math.Min(hashes.Length, (sequence.PromptTokens - 1) / _blockTokens);
        var hits = 0;
        var idleShared = 0;
        var toAllocate = 0;
        var hitsRun = true;
        for (var i = 0; i < hashes.Length; i++)
        {
            if (_table.TryGetValue(hashes[i], out var block))
            {
                if (block.RefCount == 0)
                {
                    idleShared++;
                }

                if (hitsRun && i < maxHits)
                {
                    hits++;
                }
                else
                {
                    hitsRun = false;
                }
            }
            else
            {
                hitsRun = false;
                toAllocate++;
            }
        }

        var privateBlocks = (int)total - hashes.Length;
        var free = _capacity - _pinned - _private - idleShared;
        if (toAllocate + privateBlocks > free)
        {
            return false;
        }

        // (2) Commit: pin what is shared first (so eviction below cannot take it), then allocate.
        var cachedTokens = hits * _blockTokens;
        var prefillEnd = startMs + LatencyModel.PrefillMs(options, sequence.PromptTokens - cachedTokens);
        var blocks = new Block[hashes.Length];
        for (var i = 0; i < hashes.Length; i++)
        {
            if (_table.TryGetValue(hashes[i], out var block))
            {
                Pin(block);
                blocks[i] = block;
                if (i < hits)
                {
                    // A hit cannot be used before the sequence that computes it has: a prefix still in another
                    // sequence's prefill delays this one's first token until then.
                    prefillEnd = Math.Max(prefillEnd, block.ReadyAtMs);
                }
            }
        }

        for (var i = 0; i < hashes.Length; i++)
        {
            if (blocks[i] is null)
            {
                MakeRoom();
                var block = new Block(hashes[i]) { RefCount = 1, ReadyAtMs = prefillEnd };
                _table.Add(block.Hash, block);
                _pinned++;
                blocks[i] = block;
            }
        }

        for (var i = 0; i < privateBlocks; i++)
        {
            MakeRoom();
            _private++;
        }

        sequence.KvBlocks = blocks;
        sequence.PrivateBlocks = privateBlocks;
        sequence.CachedTokens = cachedTokens;
        sequence.PrefillEndMs = prefillEnd;
        AssertInvariants();
        return true;
    }

    /// <summary>Releases a sequence's blocks (last block first, so a chain's tail is evicted first); no-op when it holds none.</summary>
    public void Release(Sequence sequence)
    {
        if (sequence.KvBlocks is not { } blocks)
        {
            return;
        }

        for (var i = blocks.Length - 1; i >= 0; i--)
        {
            var block = blocks[i];
            Debug.Assert(block.RefCount > 0, "A held block is referenced.");
            if (--block.RefCount == 0)
            {
                _pinned--;
                AppendIdle(block);
            }
        }

        _private -= sequence.PrivateBlocks;
        sequence.KvBlocks = null;
        sequence.PrivateBlocks = 0;
        AssertInvariants();
    }

    /// <summary>Forgets every idle cached block (a collapse restarts the server with an empty cache). Held blocks stay.</summary>
    public void ClearIdle() => EvictIdle(_idle);

    private void Pin(Block block)
    {
        if (block.RefCount++ == 0)
        {
            RemoveIdle(block);
            _pinned++;
        }
    }

    /// <summary>Makes one block of never-used space, evicting the least recently used idle block if there is none.</summary>
    private void MakeRoom()
    {
        if (_pinned + _private + _idle < _capacity)
        {
            return;
        }

        Debug.Assert(_lruHead is not null, "The caller checked that enough blocks are free.");
        EvictIdle(1);
    }

    private void EvictIdle(int count)
    {
        for (var i = 0; i < count && _lruHead is { } victim; i++)
        {
            RemoveIdle(victim);
            _table.Remove(victim.Hash);
        }
    }

    private void AppendIdle(Block block)
    {
        block.Prev = _lruTail;
        block.Next = null;
        if (_lruTail is null)
        {
            _lruHead = block;
        }
        else
        {
            _lruTail.Next = block;
        }

        _lruTail = block;
        _idle++;
    }

    private void RemoveIdle(Block block)
    {
        if (block.Prev is null)
        {
            _lruHead = block.Next;
        }
        else
        {
            block.Prev.Next = block.Next;
        }

        if (block.Next is null)
        {
            _lruTail = block.Prev;
        }
        else
        {
            block.Next.Prev = block.Prev;
        }

        block.Prev = null;
        block.Next = null;
        _idle--;
    }

    [Conditional("DEBUG")]
    private void AssertInvariants()
    {
        Debug.Assert(_pinned + _private + _idle <= _capacity, "Blocks in use and idle fit the cache.");
        Debug.Assert(_pinned + _idle == _table.Count, "Every cached block is pinned or idle.");
    }

    /// <summary>One cached block. Fields are guarded by the engine's lock.</summary>
    internal sealed class Block(ulong hash)
    {
        public ulong Hash { get; } = hash;

        /// <summary>Running sequences holding the block; 0 = idle (in the LRU list).</summary>
        public int RefCount;

        /// <summary>Engine time the block's tokens are computed (the prefill end of the sequence that created it).</summary>
        public double ReadyAtMs;

        public Block? Prev;
        public Block? Next;
    }
}
