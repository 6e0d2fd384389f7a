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

    /// <summary>Model name served by <c>GET /v1/models</c> and echoed when a request names none. Default <c>sim-llm</c>.</summary>
    public string Model { get; init; } = "sim-llm";

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

    /// <summary>The HTTP/1.1 listener (OpenAI-compatible API, SSE, WebSocket, metrics). Default 127.0.0.1:9000.</summary>
    public SimListenerOptions Http { get; init; } = new() { Port = 9000 };

    /// <summary>The gRPC listener (HTTP/2 cleartext). Default 127.0.0.1:9001.</summary>
    public SimListenerOptions Grpc { get; init; } = new() { Port = 9001 };
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
