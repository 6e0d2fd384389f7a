namespace Replay.Sources;

/// <summary>What the sources need from the command line.</summary>
internal sealed record SourceSettings
{
    /// <summary><c>--source</c>: <c>file:DIR</c>, a directory, <c>redis://HOST:PORT</c> (or a StackExchange.Redis connection string), <c>azure-llm:FILE</c>, <c>template:FILE</c>.</summary>
    public string? Source { get; init; }

    /// <summary><c>--recording</c>: the recording's name in a store.</summary>
    public string? Recording { get; init; }

    /// <summary><c>--template</c> (load): a request template file.</summary>
    public string? Template { get; init; }

    /// <summary><c>--duration</c> applied to a timed source: only the first part of source time is taken.</summary>
    public TimeSpan? SourceDuration { get; init; }

    /// <summary><c>--max-gap</c>: idle stretches of source time (no record in flight) longer than this are shortened to it; null keeps them.</summary>
    public TimeSpan? MaxGap { get; init; }

    /// <summary><c>--limit</c>: only the first N requests are taken.</summary>
    public long? Limit { get; init; }

    /// <summary><c>--model</c>: the <c>model</c> field of generated OpenAI requests.</summary>
    public string Model { get; init; } = "sim-llm";

    /// <summary><c>--stream</c>: generated OpenAI requests ask for SSE (trace rows, <c>load</c>).</summary>
    public bool Stream { get; init; }

    /// <summary><c>--max-tokens</c> of synthetic <c>load</c> requests.</summary>
    public int MaxTokens { get; init; } = 16;

    /// <summary><c>--prompt-tokens</c> of synthetic <c>load</c> requests.</summary>
    public int PromptTokens { get; init; } = 16;

    /// <summary>The text of synthetic HTTP prompts (<c>--prefix-groups</c>, <c>--prefix-tokens</c>); null keeps <c>hello hello …</c>.</summary>
    public PromptText? PromptText { get; init; }

    /// <summary><c>--protocol</c> of synthetic <c>load</c> requests: http, grpc or websocket.</summary>
    public string Protocol { get; init; } = "http";

    /// <summary><c>--path</c> of synthetic HTTP <c>load</c> requests.</summary>
    public string Path { get; init; } = "/v1/chat/completions";

    /// <summary><c>--seed</c>: draws made while reading a source (a template's equivalence classes).</summary>
    public int Seed { get; init; } = 1;

    /// <summary><c>--generate-with</c>: each session is a generated conversation of this shape.</summary>
    public ConversationPlan? Conversation { get; init; }

    /// <summary><c>--ws-mode</c>: how recorded WebSocket connections are replayed; null (<c>auto</c>) decides per connection from what the recording shows.</summary>
    public WebSocketMode? WebSocketMode { get; init; }

    /// <summary><c>--session-header</c>: the header carrying a session id (rewritten for amplified clones).</summary>
    public string SessionHeader { get; init; } = "x-session-id";
}
