using System.Threading.Channels;

namespace ModelSim.Engine;

/// <summary>What the engine did with a request at admission.</summary>
internal enum AdmissionResult
{
    /// <summary>It holds a slot or waits in the FIFO queue; await <see cref="Sequence.Completion"/>.</summary>
    Accepted,

    /// <summary>Every slot is busy and the queue is full: refused at once (HTTP 503, gRPC RESOURCE_EXHAUSTED).</summary>
    QueueFull,

    /// <summary>The server is collapsed (or this request collapsed it): HTTP 500, gRPC INTERNAL.</summary>
    Collapsed,

    /// <summary>The server is stopping.</summary>
    ShuttingDown,
}

/// <summary>How a sequence ended.</summary>
internal enum SequenceOutcome
{
    /// <summary>Not ended yet.</summary>
    None,

    /// <summary>All <see cref="Sequence.MaxTokens"/> tokens were generated.</summary>
    Completed,

    /// <summary>The client went away; its slot or queue place was freed at once.</summary>
    Cancelled,

    /// <summary>The server collapsed while it ran or waited.</summary>
    Failed,

    /// <summary>The server stopped while it ran or waited.</summary>
    Shutdown,
}

/// <summary>Where a sequence is in the engine. Guarded by the engine's lock.</summary>
internal enum SequenceState
{
    Queued,
    Running,
    Done,
}

/// <summary>A request as the engine sees it: sizes, the key of its text (<see cref="TextGenerator.TextKey"/>) and its prompt's block hashes.</summary>
/// <param name="PromptTokens">Prompt length in tokens (cl100k), ≥ 0.</param>
/// <param name="MaxTokens">Output tokens to generate, ≥ 1.</param>
/// <param name="TextKey">Key of the deterministic output text.</param>
/// <param name="BlockHashes">Chain hashes of the prompt's full KV blocks (<see cref="PrefixHasher"/>), first block first;
/// null or empty when the prefix cache is off or the prompt is shorter than a block (then nothing is cached).</param>
internal readonly record struct GenerationRequest(int PromptTokens, int MaxTokens, ulong TextKey, ulong[]? BlockHashes = null);

/// <summary>
/// One request inside the engine (vLLM calls it a sequence). The engine produces its tokens; the endpoint that
/// submitted it consumes them from <see cref="Tokens"/> (streaming) or awaits <see cref="Completion"/>.
/// </summary>
/// <remarks>
/// Token <c>i</c>'s text is not stored: it is <see cref="TextGenerator.Utf8"/>(<see cref="TextKey"/>, i), so the engine
/// hands the consumer only indices and nothing is allocated per token.
/// </remarks>
internal sealed class Sequence
{
    private readonly GenerationEngine _engine;
    private readonly Channel<int>? _tokens;
    private readonly TaskCompletionSource<SequenceOutcome> _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _generated;

    internal Sequence(GenerationEngine engine, long id, in GenerationRequest request, bool streaming, double enqueuedAtMs)
    {
        _engine = engine;
        Id = id;
        PromptTokens = request.PromptTokens;
        MaxTokens = request.MaxTokens;
        TextKey = request.TextKey;
        BlockHashes = request.BlockHashes ?? [];
        EnqueuedAtMs = enqueuedAtMs;
        if (streaming)
        {
            _tokens = Channel.CreateUnbounded<int>(new UnboundedChannelOptions
            {
                SingleReader = true,
                SingleWriter = true,
                AllowSynchronousContinuations = false,
            });
        }
    }

    /// <summary>Engine-unique number of this sequence (1, 2, …), usable in response ids.</summary>
    public long Id { get; }

    /// <summary>Prompt length in tokens.</summary>
    public int PromptTokens { get; }

    /// <summary>Output tokens to generate.</summary>
    public int MaxTokens { get; }

    /// <summary>Key of the output text.</summary>
    public ulong TextKey { get; }

    /// <summary>Chain hashes of the prompt's full KV blocks (empty when the prefix cache is off).</summary>
    public ulong[] BlockHashes { get; }

    /// <summary>Prompt tokens found in the prefix cache when the sequence started (their prefill is skipped); 0 before.</summary>
    public int CachedTokens { get; internal set; }

    /// <summary>Engine time the sequence's prefill ends (NaN until it starts).</summary>
    public double PrefillEndMs { get; internal set; } = double.NaN;

    /// <summary>Tokens generated so far.</summary>
    public int Generated => Volatile.Read(ref _generated);

    /// <summary>Indices (0, 1, …) of tokens as they are generated; completes when the sequence ends, however it ends.</summary>
    /// <exception cref="InvalidOperationException">The sequence was submitted without streaming.</exception>
    public ChannelReader<int> Tokens => _tokens?.Reader ?? throw new InvalidOperationException("The sequence was not submitted for streaming.");

    /// <summary>Completes (never faults) when the sequence ends; continuations run asynchronously, never under the engine lock.</summary>
    public Task<SequenceOutcome> Completion => _completion.Task;

    /// <summary>Engine time (ms since the engine started) when the request arrived.</summary>
    public double EnqueuedAtMs { get; }

    /// <summary>Engine time when the request got a slot (its prefill started, on the engine's schedule).</summary>
    public double AdmittedAtMs { get; internal set; } = double.NaN;

    /// <summary>Engine time when the sequence ended, on the engine's schedule (exact, not rounded to timer ticks).</summary>
    public double FinishedAtMs { get; private set; } = double.NaN;

    /// <summary>Frees the slot or queue place at once and counts the sequence as cancelled; no-op when already ended.</summary>
    public void Cancel() => _engine.Cancel(this);

    // Scheduling state, guarded by the engine's lock.
    internal SequenceState State;
    internal int Slot = -1; // position in the engine's dense running array, -1 when not running
    internal double NextDueMs;
    internal Sequence? QueuePrev;
    internal Sequence? QueueNext;
    internal KvCache.Block[]? KvBlocks; // cached prompt blocks held while running, null when none are held
    internal int PrivateBlocks;         // uncached blocks held while running

    /// <summary>Publishes the next token. Called by the engine under its lock.</summary>
    internal void EmitToken()
    {
        var index = _generated;
        Volatile.Write(ref _generated, index + 1);
        _tokens?.Writer.TryWrite(index);
    }

    /// <summary>Ends the sequence. Called by the engine under its lock; continuations are queued, not run inline.</summary>
    internal void Finish(SequenceOutcome outcome, double atMs)
    {
        State = SequenceState.Done;
        Slot = -1;
        FinishedAtMs = atMs;
        _tokens?.Writer.TryComplete();
        _completion.TrySetResult(outcome);
    }
}
