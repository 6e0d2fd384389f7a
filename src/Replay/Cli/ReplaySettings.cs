namespace Replay.Cli;

/// <summary>
/// The values of <c>replay run</c> / <c>replay load</c> as parsed from the command line (durations already
/// <see cref="TimeSpan"/>s, by <see cref="DurationOption"/>), before
/// <see cref="SettingsValidator"/> checks their ranges and combinations and reports every problem at once, each naming its flag.
/// </summary>
internal sealed record ReplaySettings
{
    /// <summary><c>run</c> or <c>load</c>.</summary>
    public required string Command { get; init; }

    public string? Source { get; init; }
    public string? Recording { get; init; }
    public string? Template { get; init; }
    public string? Target { get; init; }
    public string? HttpTarget { get; init; }
    public string? GrpcTarget { get; init; }
    public string? WebSocketTarget { get; init; }
    public bool Http2 { get; init; }
    public bool Insecure { get; init; }
    public IReadOnlyList<string> Headers { get; init; } = [];
    public IReadOnlyList<string> DropHeaders { get; init; } = [];
    public string SessionHeader { get; init; } = "x-session-id";
    public double Speed { get; init; } = 1;
    public double Amplify { get; init; } = 1;
    public TimeSpan? Spread { get; init; }

    /// <summary><c>--amplify-fresh-prompts</c>: clones' prompts share nothing with other sessions (default: what their original shared).</summary>
    public bool AmplifyFreshPrompts { get; init; }

    /// <summary><c>--max-gap</c>: idle stretches of source time longer than this are cut to it; null: none cut.</summary>
    public TimeSpan? MaxGap { get; init; }
    public TimeSpan? Duration { get; init; }
    public long? Limit { get; init; }
    public string? Profile { get; init; }
    public double? Rate { get; init; }
    public double? To { get; init; }
    public TimeSpan? StepEvery { get; init; }
    public double? StepFactor { get; init; }
    public double? StepAdd { get; init; }
    public double? SpikeRate { get; init; }
    public TimeSpan? SpikeAt { get; init; }
    public TimeSpan? SpikeFor { get; init; }
    public string? Arrivals { get; init; }
    public double Burstiness { get; init; } = 1;
    public int Seed { get; init; } = 1;
    public int? Users { get; init; }
    public TimeSpan? Think { get; init; }
    public TimeSpan? Warmup { get; init; }
    public bool SessionArrivals { get; init; }
    /// <summary><c>--timeout</c> when not given.</summary>
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(60);

    public TimeSpan Timeout { get; init; } = DefaultTimeout;
    public int MaxInflight { get; init; } = 100_000;
    public int? Connections { get; init; }
    public string? ReportDirectory { get; init; }
    public string? LogRequests { get; init; }

    /// <summary><c>--metrics-url</c>: Prometheus endpoints of model servers read for the prefix cache hit rate (empty: the HTTP target's <c>/metrics</c>).</summary>
    public IReadOnlyList<string> MetricsUrls { get; init; } = [];
    public IReadOnlyList<string> Slos { get; init; } = [];
    public IReadOnlyList<string> Asserts { get; init; } = [];
    public bool Compare { get; init; }

    /// <summary><c>--ws-mode</c>: auto (null), turns or frames.</summary>
    public string? WebSocketMode { get; init; }
    public string Progress { get; init; } = "auto";
    public string Model { get; init; } = "sim-llm";
    public bool Stream { get; init; }
    public int MaxTokens { get; init; } = 16;
    public int PromptTokens { get; init; } = 16;

    /// <summary><c>--prefix-groups</c>: synthetic prompts start with one of this many shared prefixes (null: none).</summary>
    public int? PrefixGroups { get; init; }

    /// <summary><c>--prefix-tokens</c>: length of each shared prefix, cl100k tokens.</summary>
    public int? PrefixTokens { get; init; }
    public string Protocol { get; init; } = "http";
    public string Path { get; init; } = "/v1/chat/completions";

    /// <summary><c>--workers N</c>: split the run among N <c>replay worker</c> processes (0: send from this process).</summary>
    public int Workers { get; init; }

    /// <summary><c>--redis</c>: the Redis the workers coordinate through.</summary>
    public string? Redis { get; init; }

    /// <summary><c>--generate-with</c>: an OpenAI-compatible base URL that writes the user turns of generated conversations.</summary>
    public string? GenerateWith { get; init; }

    /// <summary><c>--turns</c>: user turns per conversation; without <c>--generate-with</c> it makes each session a synthetic conversation (null: not given).</summary>
    public int? Turns { get; init; }

    /// <summary>Turns of a generated conversation when <c>--turns</c> is not given.</summary>
    public const int DefaultTurns = 4;

    /// <summary><c>--turn-think</c>: pause after an answer before the next generated turn.</summary>
    public TimeSpan? TurnThink { get; init; }

    /// <summary><c>--generate-model</c>: the model field sent to the generator (default: <see cref="Model"/>).</summary>
    public string? GenerateModel { get; init; }

    /// <summary><c>--generate-max-tokens</c>: most tokens of a generated user turn.</summary>
    public int GenerateMaxTokens { get; init; } = 32;

    /// <summary><c>--generate-cache</c>: where generated turns are cached by seed.</summary>
    public string? GenerateCache { get; init; }

    /// <summary>For values read from a scenario file: flag (<c>--rate</c>) → where it was set (<c>load.yaml:7</c>), so problems name the line.</summary>
    public IReadOnlyDictionary<string, string>? Origins { get; init; }
}
