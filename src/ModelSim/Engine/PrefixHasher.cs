namespace ModelSim.Engine;

/// <summary>
/// Cuts a prompt's token ids into blocks of <c>Sim:PrefixCache:BlockTokens</c> and hashes each full block as a chain,
/// as vLLM's automatic prefix caching does: a block's hash covers its parent's hash and its own tokens, so equal hashes
/// mean equal prefixes up to the end of that block, and a block is reused only after the same whole prefix.
/// </summary>
/// <remarks>
/// <para>vLLM: <c>hash_block_tokens(parent_block_hash, curr_block_token_ids, extra_keys)</c> (vllm/v1/core/kv_cache_utils.py),
/// sha256 or Python's hash. Here each token is folded in with a SplitMix64 step (Steele, Lea, Flood, OOPSLA '14) and
/// the result is 64 bits: a collision is vanishingly unlikely for the block counts a simulator holds, and would only
/// make one request's prefill a little too short.</para>
/// <para>Each token carries a <em>tag</em>, 0 for plain prompts. Chat requests tag every token with its message's role
/// and position, which stands for a chat template's role markers (<c>&lt;|user|&gt;…</c>) without changing the token
/// count: a later turn of a conversation resends the earlier messages first and so shares their blocks, while the same
/// words under another role or in another position do not.</para>
/// <para>Only full blocks are hashed: a trailing partial block is never cached (as in vLLM).</para>
/// </remarks>
internal struct PrefixHasher
{
    /// <summary>Hash of the (empty) parent of a prompt's first block.</summary>
    public const ulong RootHash = 0x5AD1CE0F7E11A1E5UL;

    private readonly int _blockTokens;
    private List<ulong>? _hashes;
    private ulong _parent;
    private ulong _state;
    private int _inBlock;

    /// <param name="blockTokens">Tokens per block, ≥ 1.</param>
    public PrefixHasher(int blockTokens)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(blockTokens, 1);
        _blockTokens = blockTokens;
        _parent = RootHash;
        _state = Start(RootHash);
    }

    /// <summary>Full blocks hashed so far.</summary>
    public readonly int Blocks => _hashes?.Count ?? 0;

    /// <summary>The tag of the tokens of chat message <paramref name="index"/> with role <paramref name="role"/>.</summary>
    public static ulong ChatTag(string? role, int index) =>
        Mix(TextGenerator.HashPrompt(role ?? string.Empty) + ((ulong)(uint)index * 0x9E3779B97F4A7C15UL)) | 1;

    /// <summary>Adds one token.</summary>
    public void Add(int tokenId, ulong tag)
    {
        _state = Mix(_state ^ Mix(tag + (uint)tokenId));
        if (++_inBlock == _blockTokens)
        {
            _hashes ??= new List<ulong>(16);
            _parent = Mix(_state ^ (ulong)_blockTokens);
            _hashes.Add(_parent);
            _state = Start(_parent);
            _inBlock = 0;
        }
    }

    /// <summary>Adds tokens that share one tag.</summary>
    public void Add(List<int> tokenIds, ulong tag)
    {
        foreach (var id in tokenIds)
        {
            Add(id, tag);
        }
    }

    /// <summary>The chain hashes of the full blocks, first block first; empty when there is none.</summary>
    public readonly ulong[] ToArray() => _hashes is null ? [] : [.. _hashes];

    private static ulong Start(ulong parent) => Mix(parent + 0x2545F4914F6CDD1DUL);

    /// <summary>SplitMix64 finaliser.</summary>
    private static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
