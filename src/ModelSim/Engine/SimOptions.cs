using System.Net;

namespace ModelSim.Engine;

/// <summary>
/// Settings of the simulated model server, bound from the <c>Sim</c> configuration section (any standard .NET
/// configuration source: <c>appsettings.json</c>, environment <c>Sim__Slots=32</c>, command line <c>--Sim:Slots=32</c>).
/// Validated at start-up by <see cref="SimOptionsValidator"/>; docs/modelsim.md lists every key.
/// </summary>
internal sealed record SimOptions
{
    /// <summary>The configuration section the options are bound from.</summary>
    public const string SectionName = "Sim";

    /// <summary>
    /// The model served: listed by <c>GET /v1/models</c>, the <c>model_name</c> label of the <c>vllm:*</c> metrics, and the
    /// only name a request may ask for (a request naming another model is a 404 <c>model_not_found</c>, gRPC
    /// <c>NOT_FOUND</c>); a request naming none gets it. Default <c>sim-llm</c>.
    /// </summary>
    public string Model { get; init; } = "sim-llm";

    /// <summary>
    /// True to serve a request whatever model it names (echoing the name), as the simulator did before it checked
    /// names; for clients that send a placeholder name. Default false: another name is a 404, as vLLM answers.
    /// </summary>
    public bool AcceptAnyModel { get; init; }

    /// <summary>Sequences generated at once (the batch size, one slot each); 1 to 100 000. Default 32.</summary>
    public int Slots { get; init; } = 32;

    /// <summary>Requests that may wait (FIFO) for a free slot; beyond that they are refused at once. 0 to 1 000 000; default 256.</summary>
    public int Queue { get; init; } = 256;

    /// <summary>Fixed prefill time of every request, in milliseconds (fractions allowed); ≥ 0. Default 20.</summary>
    public double PrefillMs { get; init; } = 20;

    /// <summary>Prefill time per prompt token, in milliseconds; ≥ 0. Default 0.05 (20 000 prompt tokens/s per sequence).</summary>
    public double PrefillPerTokenMs { get; init; } = 0.05;

    /// <summary>Decode step time of a lone sequence (one output token), in milliseconds; ≥ 0. Default 10.</summary>
    public double PerTokenMs { get; init; } = 10;

    /// <summary>
    /// How much slower a decode step is with a full batch than with one sequence: the step time is
    /// <c>PerTokenMs × (1 + BatchSlowdown × (running − 1) / (Slots − 1))</c>. ≥ 0; 0 = no slowdown. Default 0.5.
    /// </summary>
    public double BatchSlowdown { get; init; } = 0.5;

    /// <summary>Output tokens of an OpenAI-style request that sends neither <c>max_tokens</c> nor <c>max_completion_tokens</c>. Default 16.</summary>
    public int DefaultMaxTokens { get; init; } = 16;

    /// <summary>Largest <c>max_tokens</c> accepted; larger is a 400. 1 to 1 000 000; default 4096.</summary>
    public int MaxTokensLimit { get; init; } = 4096;

    /// <summary>Queue depth that, when passed, collapses the server (as an OOM kill would); 0 = never. Must be &lt; <see cref="Queue"/>.</summary>
    public int CollapseQueue { get; init; }

    /// <summary>How long a collapse lasts, in milliseconds: every request is answered 500 meanwhile. &gt; 0; default 5000.</summary>
    public double CollapseMs { get; init; } = 5000;

    /// <summary>Seed of the generated text: the same (seed, prompt) always gives the same tokens. Default 42.</summary>
    public int Seed { get; init; } = 42;

    /// <summary>The prefix (KV) cache: <c>Sim:PrefixCache:*</c>.</summary>
    public SimPrefixCacheOptions PrefixCache { get; init; } = new();

    /// <summary>The HTTP/1.1 listener (OpenAI-compatible API, SSE, WebSocket, metrics). Default 127.0.0.1:9000.</summary>
    public SimListenerOptions Http { get; init; } = new() { Port = 9000 };

    /// <summary>The gRPC listener (HTTP/2 cleartext). Default 127.0.0.1:9001.</summary>
    public SimListenerOptions Grpc { get; init; } = new() { Port = 9001 };
}

/// <summary>
/// The simulated KV cache with automatic prefix caching (vLLM's paged attention and block hashing): the prompt is cut
/// into blocks of <see cref="BlockTokens"/> tokens, each full block keyed by a hash chained over its parent's; cached
/// blocks skip prefill, and KV blocks bound how many sequences run. docs/modelsim.md explains the model.
/// </summary>
internal sealed record SimPrefixCacheOptions
{
    /// <summary>True (default) to model the KV cache; false restores the simulator without one, timing unchanged.</summary>
    public bool Enabled { get; init; } = true;

    /// <summary>Tokens per KV block (vLLM's <c>--block-size</c>); 1 to 1024. Default 16.</summary>
    public int BlockTokens { get; init; } = 16;

    /// <summary>
    /// KV blocks on the simulated GPU (vLLM's <c>num_gpu_blocks</c>); 1 to 100 000 000. Default 32 768: 524 288 tokens
    /// at 16 tokens a block, 16 384 tokens for each of the default 32 slots.
    /// </summary>
    public int Blocks { get; init; } = 32_768;
}

/// <summary>One Kestrel endpoint of the simulator.</summary>
internal sealed record SimListenerOptions
{
    /// <summary>IP address to bind; <c>localhost</c> means 127.0.0.1 and <c>*</c> means every IPv4 address. Default 127.0.0.1.</summary>
    public string Address { get; init; } = "127.0.0.1";

    /// <summary>TCP port, 0 to 65535; 0 binds any free port (read the bound one from <see cref="ModelSimServer"/>).</summary>
    public int Port { get; init; }

    /// <summary>Parses <see cref="Address"/>; false when it is neither an IP literal, <c>localhost</c> nor <c>*</c>.</summary>
    public bool TryGetIPAddress(out IPAddress address)
    {
        switch (Address?.Trim())
        {
            case "localhost":
                address = IPAddress.Loopback;
                return true;
            case "*":
                address = IPAddress.Any;
                return true;
            case { Length: > 0 } text when IPAddress.TryParse(text, out var parsed):
                address = parsed;
                return true;
            default:
                address = IPAddress.None;
                return false;
        }
    }
}
