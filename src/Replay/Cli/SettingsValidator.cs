using System.Globalization;
using Replay.Clients;
using Replay.Measurement;
using Replay.Reporting;
using Replay.Scheduling;
using Replay.Sources;

namespace Replay.Cli;

/// <summary>The checked, parsed form of <see cref="ReplaySettings"/>.</summary>
internal sealed record ValidatedRun
{
    public required ReplaySettings Raw { get; init; }
    public required SourceSettings Source { get; init; }
    public required ClientSettings Clients { get; init; }
    public required RunMode Mode { get; init; }
    public string? ProfileName { get; init; }
    public TimeSpan? Duration { get; init; }
    public TimeSpan Spread { get; init; }
    public TimeSpan Think { get; init; }
    public TimeSpan Warmup { get; init; }
    public TimeSpan? StepEvery { get; init; }
    public TimeSpan? SpikeAt { get; init; }
    public TimeSpan? SpikeFor { get; init; }
    public ArrivalKind Arrivals { get; init; }
    public Uri? GenerateWith { get; init; }
    public TimeSpan TurnThink { get; init; }
    public required IReadOnlyList<Slo> Slos { get; init; }
    public required IReadOnlyList<Assertion> Assertions { get; init; }
}

/// <summary>
/// Checks every option of a run and reports all problems at once (as YARP's ConfigValidator does), each message
/// naming the flag and the value found, e.g. <c>--speed must be &gt; 0 (was 0).</c>.
/// </summary>
internal static class SettingsValidator
{
    /// <summary>The largest arrival rate accepted (requests/s per run): far above what one generator process sends, low enough that a typo cannot plan 2^63 requests.</summary>
    internal const double MaxRate = 1_000_000;

    private static readonly string[] s_profiles = ["constant", "ramp", "steps", "spike", "poisson", "gamma"];

    /// <summary>
    /// The option groups, each checked by one validator, in this order (later groups read what earlier ones parsed:
    /// the mode needs the profile and the users). Like YARP's list of route validators: every group runs, every problem
    /// is reported.
    /// </summary>
    private static readonly Action<ReplaySettings, Checks>[] s_groups =
    [
        SourceAndTargets,
        Volume,
        OpenModel,
        ClosedModel,
        Mode,
        Sending,
        Workload,
        Workers,
        Conversations,
        Output,
    ];

    /// <summary>Validates; returns the parsed run or the list of problems.</summary>
    public static (ValidatedRun? Run, IReadOnlyList<string> Errors) Validate(ReplaySettings s)
    {
        var c = new Checks { Load = s.Command == "load" };
        foreach (var group in s_groups)
        {
            group(s, c);
        }

        if (c.Errors.Count > 0)
        {
            return (null, c.Errors);
        }

        var run = new ValidatedRun
        {
            Raw = s,
            Mode = c.Mode,
            ProfileName = c.Profile,
            Duration = c.Duration,
            Spread = c.Spread,
            Think = c.Think,
            Warmup = c.Warmup,
            StepEvery = c.StepEvery,
            SpikeAt = c.SpikeAt,
            SpikeFor = c.SpikeFor,
            Arrivals = c.Arrivals,
            GenerateWith = c.GenerateWith,
            TurnThink = c.TurnThink,
            Slos = c.Slos,
            Assertions = c.Assertions,
            Source = new SourceSettings
            {
                Source = s.Source,
                Recording = s.Recording,
                Template = s.Template,
                SourceDuration = c.Mode == RunMode.Faithful ? c.Duration : null,
                MaxGap = c.MaxGap,
                Limit = c.Mode == RunMode.Faithful ? s.Limit : null,
                Model = s.Model,
                Stream = s.Stream,
                MaxTokens = s.MaxTokens,
                PromptTokens = s.PromptTokens,
                PromptText = s.Protocol == "http" ? Sources.PromptText.Create(s.PrefixGroups ?? 0, s.PrefixTokens ?? 0, s.Seed, (ulong)Random.Shared.NextInt64()) : null,
                Protocol = s.Protocol,
                Path = s.Path,
                SessionHeader = s.SessionHeader,
                WebSocketMode = c.WebSocketMode,
                Seed = s.Seed,
                Conversation = s.GenerateWith is null && s.Turns is null ? null : new ConversationPlan(s.Turns ?? ReplaySettings.DefaultTurns, c.TurnThink.TotalMilliseconds, s.Path, s.Model, s.MaxTokens, s.Stream) { Generated = s.GenerateWith is not null },
            },
            Clients = new ClientSettings
            {
                HttpTarget = c.Http,
                GrpcTarget = c.Grpc,
                WebSocketTarget = c.WebSocket,
                Http2 = s.Http2,
                Insecure = s.Insecure,
                Timeout = c.Timeout,
                MaxConnections = s.Connections ?? ClientSettings.DefaultMaxConnections,
                HeaderOverrides = c.Overrides,
                DropHeaders = s.DropHeaders,
                Compare = s.Compare,
            },
        };
        return (run, []);
    }

    /// <summary>What the groups parsed so far, and every problem found.</summary>
    private sealed class Checks
    {
        public readonly List<string> Errors = [];
        public bool Load;
        public Uri? Http;
        public Uri? Grpc;
        public Uri? WebSocket;
        public TimeSpan Spread;
        public TimeSpan? Duration;
        public string? Profile;
        public ArrivalKind Arrivals = ArrivalKind.Uniform;
        public WebSocketMode? WebSocketMode;
        public TimeSpan? StepEvery;
        public TimeSpan? SpikeAt;
        public TimeSpan? SpikeFor;
        public RunMode Mode;
        public TimeSpan Warmup;
        public TimeSpan? MaxGap;
        public TimeSpan Think;
        public TimeSpan Timeout;
        public Uri? GenerateWith;
        public TimeSpan TurnThink;
        public readonly List<KeyValuePair<string, string>> Overrides = [];
        public readonly List<Slo> Slos = [];
        public readonly List<Assertion> Assertions = [];
    }

    /// <summary><c>--source</c> (run) and the targets: <c>--target</c>, <c>--http-target</c>, <c>--grpc-target</c>, <c>--ws-target</c>.</summary>
    private static void SourceAndTargets(ReplaySettings s, Checks c)
    {
        var errors = c.Errors;
        if (!c.Load && string.IsNullOrWhiteSpace(s.Source))
        {
            errors.Add("--source is required: file:DIR (or a directory) with --recording NAME, redis://HOST:PORT with --recording NAME, azure-llm:FILE or template:FILE.");
        }

        c.Http = Target(s.HttpTarget ?? s.Target, "--http-target", errors, ws: false);
        c.Grpc = Target(s.GrpcTarget ?? s.Target, "--grpc-target", errors, ws: false);
        c.WebSocket = s.WebSocketTarget is not null ? Target(s.WebSocketTarget, "--ws-target", errors, ws: true) : ToWebSocket(c.Http);
        if (s.Target is null && s.HttpTarget is null && s.GrpcTarget is null && s.WebSocketTarget is null)
        {
            errors.Add("--target is required (or give --http-target, --grpc-target and/or --ws-target), e.g. --target http://127.0.0.1:8080.");
        }

        switch (s.WebSocketMode?.ToLowerInvariant())
        {
            case null or "auto":
                break;
            case "turns":
                c.WebSocketMode = Sources.WebSocketMode.Turns;
                break;
            case "frames":
                c.WebSocketMode = Sources.WebSocketMode.Frames;
                break;
            default:
                errors.Add($"--ws-mode must be auto, turns or frames (was '{s.WebSocketMode}').");
                break;
        }
    }

    /// <summary>A timed replay's volume and span: <c>--speed</c>, <c>--amplify</c>, <c>--spread</c>, <c>--duration</c>, <c>--limit</c>.</summary>
    private static void Volume(ReplaySettings s, Checks c)
    {
        var errors = c.Errors;
        Positive(s.Speed, "--speed", errors);
        if (!(s.Amplify > 0) || s.Amplify > 1000)
        {
            errors.Add(Fmt($"--amplify must be > 0 and <= 1000 (was {s.Amplify})."));
        }

        c.Spread = s.Spread ?? TimeSpan.FromSeconds(1);
        c.Duration = PositiveDuration(s.Duration, "--duration", errors);
        if (s.Limit is < 1)
        {
            errors.Add(Fmt($"--limit must be >= 1 (was {s.Limit})."));
        }
    }

    /// <summary>The open model: <c>--profile</c>, <c>--rate</c>, <c>--to</c>, <c>--arrivals</c>, <c>--burstiness</c>, the steps' and the spike's flags.</summary>
    private static void OpenModel(ReplaySettings s, Checks c)
    {
        var errors = c.Errors;
        var profile = s.Profile?.ToLowerInvariant();
        if (profile is null && s.Rate is not null)
        {
            profile = "constant";
        }

        if (profile is not null && Array.IndexOf(s_profiles, profile) < 0)
        {
            errors.Add($"--profile must be one of {string.Join(", ", s_profiles)} (was '{s.Profile}').");
        }

        switch ((s.Arrivals ?? (profile is "poisson" ? "poisson" : profile is "gamma" ? "gamma" : "uniform")).ToLowerInvariant())
        {
            case "uniform":
                break;
            case "poisson":
                c.Arrivals = ArrivalKind.Poisson;
                break;
            case "gamma":
                c.Arrivals = ArrivalKind.Gamma;
                break;
            default:
                errors.Add($"--arrivals must be uniform, poisson or gamma (was '{s.Arrivals}').");
                break;
        }

        if (!(s.Burstiness > 0))
        {
            errors.Add(Fmt($"--burstiness must be > 0 (was {s.Burstiness}); 1 is Poisson, below 1 burstier."));
        }

        if (profile is not null)
        {
            if (s.Users is not null)
            {
                errors.Add("--users (closed model) and --profile/--rate (open model) exclude each other.");
            }

            if (s.Rate is not { } rate || !(rate > 0))
            {
                errors.Add(Fmt($"--rate must be > 0 requests/s for --profile {profile} (was {s.Rate?.ToString(CultureInfo.InvariantCulture) ?? "missing"})."));
            }

            foreach (var (name, value) in new[] { ("--rate", s.Rate), ("--to", s.To), ("--spike-rate", s.SpikeRate), ("--step-add", s.StepAdd) })
            {
                if (value > MaxRate)
                {
                    errors.Add(Fmt($"{name} must be at most {MaxRate:N0} requests/s (was {value}); split a larger load among machines with --workers."));
                }
            }

            if (s.Duration is null && profile != "steps")
            {
                errors.Add($"--duration is required with --profile {profile} (e.g. --duration 60s).");
            }

            if (profile is "ramp" or "steps" && s.To is not > 0)
            {
                errors.Add($"--to must be > 0 requests/s for --profile {profile} (the final rate).");
            }

            if (profile == "steps")
            {
                c.StepEvery = PositiveDuration(s.StepEvery, "--step-every", errors);
                if (s.StepEvery is null)
                {
                    errors.Add("--step-every is required for --profile steps (e.g. --step-every 10s).");
                }

                if (s.StepFactor is null && s.StepAdd is null)
                {
                    errors.Add("--profile steps needs --step-factor (e.g. 1.5 for +50%) or --step-add (requests/s added per step).");
                }

                if (s.StepFactor is { } f && !(f > 1))
                {
                    errors.Add(Fmt($"--step-factor must be > 1 (was {f})."));
                }

                if (s.StepAdd is { } a && !(a > 0))
                {
                    errors.Add(Fmt($"--step-add must be > 0 (was {a})."));
                }
            }

            if (profile == "spike")
            {
                if (s.SpikeRate is not > 0)
                {
                    errors.Add("--spike-rate must be > 0 requests/s for --profile spike.");
                }

                c.SpikeAt = s.SpikeAt;
                c.SpikeFor = PositiveDuration(s.SpikeFor, "--spike-for", errors);
                if (s.SpikeAt is null || s.SpikeFor is null)
                {
                    errors.Add("--profile spike needs --spike-at (when it starts) and --spike-for (how long it lasts).");
                }
            }

            if (s.Amplify != 1)
            {
                errors.Add("--amplify applies to a timed replay (no --profile/--rate): with an open-model profile raise --rate instead.");
            }
        }

        c.Profile = profile;
    }

    /// <summary>The closed model: <c>--users</c> and what it excludes.</summary>
    private static void ClosedModel(ReplaySettings s, Checks c)
    {
        var errors = c.Errors;
        if (s.Users is { } users && (users < 1 || users > 1_000_000))
        {
            errors.Add(Fmt($"--users must be between 1 and 1000000 (was {users})."));
        }

        if (s.Users is not null && c.Duration is null && s.Limit is null)
        {
            errors.Add("--users (closed model) needs --duration or --limit to know when to stop.");
        }

        if (s.Users is not null && s.Amplify != 1)
        {
            errors.Add("--amplify applies to a timed replay: with --users raise the number of users instead.");
        }
    }

    /// <summary>Which model the flags make (timed replay, open, closed), and the flags that belong to one: <c>--warmup</c>, <c>--max-gap</c>, <c>--session-arrivals</c>.</summary>
    private static void Mode(ReplaySettings s, Checks c)
    {
        var errors = c.Errors;
        var untimed = c.Load || (s.Source is { } src && src.StartsWith("template:", StringComparison.OrdinalIgnoreCase));
        c.Mode = c.Profile is not null ? RunMode.Open : s.Users is not null ? RunMode.Closed : RunMode.Faithful;
        if (untimed && c.Mode == RunMode.Faithful)
        {
            errors.Add(c.Load
                ? "replay load needs --rate (open model, with --duration) or --users (closed model)."
                : "a template has no timing of its own: give --rate/--profile (open model) or --users (closed model).");
        }

        c.Warmup = s.Warmup ?? TimeSpan.Zero;
        if (c.Warmup > TimeSpan.Zero && c.Mode == RunMode.Faithful)
        {
            errors.Add("--warmup applies to --rate/--profile and --users runs; a timed replay sends exactly what the source holds.");
        }

        c.MaxGap = PositiveDuration(s.MaxGap, "--max-gap", errors);
        if (s.MaxGap is not null && c.Mode != RunMode.Faithful)
        {
            errors.Add("--max-gap applies to a replay with the source's own timing (no --rate/--profile/--users): it shortens idle stretches of source time.");
        }

        if (s.SessionArrivals && c.Mode != RunMode.Open)
        {
            errors.Add("--session-arrivals applies to an open-model run (--rate/--profile).");
        }
    }

    /// <summary>How requests are sent: <c>--think</c>, <c>--timeout</c>, <c>--max-inflight</c>, <c>--connections</c>, <c>--header</c>.</summary>
    private static void Sending(ReplaySettings s, Checks c)
    {
        var errors = c.Errors;
        c.Think = s.Think ?? TimeSpan.Zero;
        c.Timeout = PositiveDuration(s.Timeout, "--timeout", errors) ?? ReplaySettings.DefaultTimeout;
        if (s.MaxInflight < 1)
        {
            errors.Add(Fmt($"--max-inflight must be >= 1 (was {s.MaxInflight})."));
        }

        if (s.Connections is < 1)
        {
            errors.Add(Fmt($"--connections must be >= 1 (was {s.Connections})."));
        }

        foreach (var h in s.Headers)
        {
            if (ValueParsers.TryParseHeader(h, out var header))
            {
                c.Overrides.Add(header);
            }
            else
            {
                errors.Add($"--header '{h}' is not 'Name: value'.");
            }
        }
    }

    /// <summary>The synthetic request of <c>load</c>: <c>--max-tokens</c>, <c>--prompt-tokens</c>, <c>--protocol</c>, <c>--path</c>.</summary>
    private static void Workload(ReplaySettings s, Checks c)
    {
        var errors = c.Errors;
        if (s.MaxTokens < 1)
        {
            errors.Add(Fmt($"--max-tokens must be >= 1 (was {s.MaxTokens})."));
        }

        if (s.PromptTokens < 0 || s.PromptTokens > 1_000_000)
        {
            errors.Add(Fmt($"--prompt-tokens must be between 0 and 1000000 (was {s.PromptTokens})."));
        }

        if (s.Protocol is not ("http" or "grpc" or "websocket"))
        {
            errors.Add($"--protocol must be http, grpc or websocket (was '{s.Protocol}').");
        }

        if (s.PrefixGroups is { } groups && groups is < 1 or > 100_000)
        {
            errors.Add(Fmt($"--prefix-groups must be between 1 and 100000 (was {groups})."));
        }

        if (s.PrefixTokens is { } prefixTokens && prefixTokens is < 1 or > 1_000_000)
        {
            errors.Add(Fmt($"--prefix-tokens must be between 1 and 1000000 (was {prefixTokens})."));
        }

        if (s.PrefixGroups is not null && s.PrefixTokens is null)
        {
            errors.Add("--prefix-groups needs --prefix-tokens (the length of each shared prefix, in tokens).");
        }
        else if (s.PrefixTokens is not null && s.PrefixGroups is null)
        {
            errors.Add("--prefix-tokens needs --prefix-groups (how many distinct shared prefixes).");
        }

        if (s.PrefixGroups is not null && s.Protocol != "http")
        {
            errors.Add($"--prefix-groups applies to --protocol http (chat completions) only (was '{s.Protocol}').");
        }

        if (string.IsNullOrEmpty(s.Path) || s.Path[0] != '/')
        {
            errors.Add($"--path must start with '/' (was '{s.Path}').");
        }
    }

    /// <summary>Runs split among workers: <c>--workers</c>, <c>--redis</c>.</summary>
    private static void Workers(ReplaySettings s, Checks c)
    {
        var errors = c.Errors;
        if (s.Workers < 0 || s.Workers > 1000)
        {
            errors.Add(Fmt($"--workers must be between 0 and 1000 (was {s.Workers})."));
        }

        if (s.Workers > 0 && string.IsNullOrWhiteSpace(s.Redis))
        {
            errors.Add("--workers needs --redis (redis://HOST:PORT), the Redis the workers share.");
        }

        if (s.Workers > 0 && c.Mode == RunMode.Closed)
        {
            errors.Add("--workers splits open-model (--rate/--profile) and timed replays; closed-model users (--users) are not split.");
        }
    }

    /// <summary>Generated conversations: <c>--generate-with</c>, <c>--turns</c>, <c>--turn-think</c>, <c>--generate-max-tokens</c>.</summary>
    private static void Conversations(ReplaySettings s, Checks c)
    {
        var errors = c.Errors;
        c.TurnThink = s.TurnThink ?? TimeSpan.Zero;
        if (s.GenerateWith is { } g)
        {
            if (!Uri.TryCreate(g, UriKind.Absolute, out var generateWith) || generateWith.Scheme is not ("http" or "https"))
            {
                generateWith = null;
                errors.Add($"--generate-with '{g}' is not an absolute http:// or https:// URL (an OpenAI-compatible base URL, e.g. http://127.0.0.1:9000).");
            }

            c.GenerateWith = generateWith;
            if (s.GenerateMaxTokens is < 1 or > 4096)
            {
                errors.Add(Fmt($"--generate-max-tokens must be between 1 and 4096 (was {s.GenerateMaxTokens})."));
            }
        }

        if (s.GenerateWith is null && s.Turns is null)
        {
            return;
        }

        // Generated (--generate-with) or synthetic (--turns alone) conversations.
        var flag = s.GenerateWith is null ? "--turns" : "--generate-with";
        if (!c.Load || s.Template is not null || s.Protocol != "http")
        {
            errors.Add($"{flag} applies to replay load's synthetic HTTP chat request (no --template, --protocol http): each session becomes a conversation.");
        }

        if (!s.SessionArrivals && c.Mode != RunMode.Closed)
        {
            errors.Add($"{flag} needs sessions: --session-arrivals (open model) or --users (closed model).");
        }

        if (s.Workers > 0)
        {
            errors.Add($"{flag} is not split among --workers (each conversation needs the previous answers).");
        }

        if (s.Turns is < 1 or > 1000)
        {
            errors.Add(Fmt($"--turns must be between 1 and 1000 (was {s.Turns})."));
        }
    }

    /// <summary>What the run reports: <c>--report</c>, <c>--progress</c>, <c>--slo</c>, <c>--assert</c>.</summary>
    private static void Output(ReplaySettings s, Checks c)
    {
        var errors = c.Errors;
        foreach (var m in s.MetricsUrls)
        {
            if (!Uri.TryCreate(m, UriKind.Absolute, out var url) || url.Scheme is not ("http" or "https"))
            {
                errors.Add($"--metrics-url '{m}' is not an absolute http:// or https:// URL (a model server's metrics, e.g. http://10.0.0.5:8000/metrics).");
            }
        }

        if (s.ReportDirectory is { } reportDirectory)
        {
            CheckReportDirectory(reportDirectory, "--report", errors);
        }

        if (s.Progress is not ("auto" or "live" or "plain" or "none"))
        {
            errors.Add($"--progress must be auto, live, plain or none (was '{s.Progress}').");
        }

        foreach (var text in s.Slos)
        {
            if (Slo.TryParse(text, out var error) is { } slo)
            {
                c.Slos.Add(slo);
            }
            else
            {
                errors.Add(error!);
            }
        }

        foreach (var text in s.Asserts)
        {
            if (Assertion.TryParse(text, out var error) is { } assertion)
            {
                c.Assertions.Add(assertion);
            }
            else
            {
                errors.Add(error!);
            }
        }
    }

    private static Uri? Target(string? text, string flag, List<string> errors, bool ws)
    {
        if (text is null)
        {
            return null;
        }

        if (!Uri.TryCreate(text, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https" or "ws" or "wss"))
        {
            errors.Add($"{(flag == "--ws-target" ? flag : "--target/" + flag)} '{text}' is not an absolute http://, https://{(ws ? ", ws:// or wss://" : string.Empty)} URL.");
            return null;
        }

        // ws:// given as a general target: HTTP and gRPC go to the same host over http.
        if (!ws && uri.Scheme is "ws" or "wss")
        {
            uri = new UriBuilder(uri) { Scheme = uri.Scheme == "wss" ? "https" : "http", Path = "/" }.Uri;
        }

        return uri;
    }

    private static Uri? ToWebSocket(Uri? http) =>
        http is null ? null : new UriBuilder(http) { Scheme = http.Scheme == "https" ? "wss" : "ws" }.Uri;

    private static void Positive(double value, string flag, List<string> errors)
    {
        if (!(value > 0) || !double.IsFinite(value))
        {
            errors.Add(Fmt($"{flag} must be > 0 (was {value})."));
        }
    }

    /// <summary>
    /// A duration that must be &gt; 0, or null when not given. Durations were parsed with the command line
    /// (<see cref="DurationOption"/>), never negative; only the range is left to check.
    /// </summary>
    private static TimeSpan? PositiveDuration(TimeSpan? value, string flag, List<string> errors)
    {
        if (value is { } v && v <= TimeSpan.Zero)
        {
            errors.Add($"{flag} must be > 0 (was {ValueParsers.FormatDuration(v)}).");
            return null;
        }

        return value;
    }

    private static string Fmt(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);

    /// <summary>
    /// Checks before the run that the report can be written (a directory, created now when missing), so that a run is
    /// not lost to a bad path at its end.
    /// </summary>
    internal static void CheckReportDirectory(string directory, string option, List<string> errors)
    {
        var full = Path.GetFullPath(directory);
        if (File.Exists(full))
        {
            errors.Add($"{option} must be a directory; '{full}' is a file.");
            return;
        }

        try
        {
            Directory.CreateDirectory(full);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            errors.Add($"{option}: cannot create the directory '{full}': {ex.Message}");
        }
    }
}
