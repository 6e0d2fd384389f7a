using System.Globalization;
using System.CommandLine;
using Microsoft.Extensions.Logging;

namespace Replay.Cli;

/// <summary>
/// The command line: <c>replay run</c> (replay a recording or a trace), <c>replay load</c> (synthetic or template
/// load on a profile), <c>replay list</c> (recordings and their sessions). Runnable in-process:
/// <see cref="RunAsync"/> takes the arguments and the output writers and returns the exit code (<see cref="ExitCodes"/>).
/// </summary>
internal static partial class ReplayApp
{
    /// <summary>Runs the tool.</summary>
    /// <param name="args">The arguments, as after the program name.</param>
    /// <param name="output">Standard output (progress, summary).</param>
    /// <param name="error">Standard error (problems, warnings).</param>
    /// <param name="cancellationToken">Stops the run (Ctrl-C); a partial report is written.</param>
    /// <param name="time">The clock; <see cref="TimeProvider.System"/> when null.</param>
    /// <returns>The exit code.</returns>
    public static async Task<int> RunAsync(string[] args, TextWriter output, TextWriter error, CancellationToken cancellationToken, TimeProvider? time = null)
    {
        time ??= TimeProvider.System;
        var logger = new TextWriterLogger(error, LogLevel.Information);
        var invocation = new Invocation();
        var root = new RootCommand("Replays recorded LLM traffic or production traces as load (faithful, time-scaled or amplified), or drives open- and closed-model load, with coordinated-omission-corrected measurement.");
        var run = BuildRun(output, error, logger, time, invocation);
        var load = BuildLoad(output, error, logger, time, invocation);
        var sweep = BuildSweep(output, error, logger, time, invocation);
        root.Add(run);
        root.Add(load);
        root.Add(sweep);
        root.Add(BuildWorker(output, error, logger, time));
        root.Add(BuildList(output, error));
        root.Add(BuildProbe(output, error));
        root.Add(BuildCompare(output, error));

        // A scenario file stands for flags: read and check it (errors name its lines), then parse its flags with the
        // command line's, which win.
        var at = Array.FindIndex(args, static a => a == "--scenario" || a.StartsWith("--scenario=", StringComparison.Ordinal));
        if (at > 0)
        {
            var path = args[at].Length > "--scenario".Length ? args[at]["--scenario=".Length..] : at + 1 < args.Length ? args[at + 1] : null;
            if (path is null)
            {
                await error.WriteLineAsync("replay: --scenario needs a file (YAML or JSON).").ConfigureAwait(false);
                return ExitCodes.UsageOrInput;
            }

            var rest = args.Where((_, i) => i != 0 && i != at && !(i == at + 1 && args[at] == "--scenario")).ToArray();
            var commands = new Dictionary<string, Command>(StringComparer.Ordinal) { ["run"] = run, ["load"] = load, ["sweep"] = sweep };
            if (!commands.TryGetValue(args[0], out var invoked))
            {
                await error.WriteLineAsync("replay: --scenario applies to run, load and sweep.").ConfigureAwait(false);
                return ExitCodes.UsageOrInput;
            }

            var given = new HashSet<string>(StringComparer.Ordinal);
            foreach (var option in commands.Values.SelectMany(static c => c.Options))
            {
                if (rest.Any(a => a.Split('=')[0] == option.Name || option.Aliases.Contains(a.Split('=')[0])))
                {
                    given.Add(option.Name);
                }
            }

            var (scenario, problems) = ScenarioFile.Load(path, args[0], commands, given);
            if (scenario is null)
            {
                foreach (var problem in problems)
                {
                    await error.WriteLineAsync($"replay: {problem}").ConfigureAwait(false);
                }

                return ExitCodes.UsageOrInput;
            }

            invocation.Origins = scenario.Origins;
            args = [scenario.Command, .. scenario.Arguments, .. rest];
        }

        var parse = root.Parse(args);
        if (parse.Errors.Count > 0)
        {
            foreach (var message in ParseProblems(parse, args))
            {
                var origin = invocation.Origins is null ? string.Empty : RunCommand.Origin(new ReplaySettings { Command = string.Empty, Origins = invocation.Origins }, message);
                await error.WriteLineAsync($"replay: {origin}{message}").ConfigureAwait(false);
            }

            var command = parse.CommandResult.Command == root ? "run" : parse.CommandResult.Command.Name;
            await error.WriteLineAsync($"replay: see 'replay --help' or 'replay {command} --help'.").ConfigureAwait(false);
            return ExitCodes.UsageOrInput;
        }

        try
        {
            return await parse.InvokeAsync(new InvocationConfiguration { Output = output, Error = error, EnableDefaultExceptionHandler = false, ProcessTerminationTimeout = null }, cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            return ExitCodes.Cancelled;
        }
        catch (Exception ex)
        {
            Log.Unexpected(logger, ex);
            return ExitCodes.InternalError;
        }
    }

    /// <summary>What one invocation learned before parsing: where scenario flags came from.</summary>
    private sealed class Invocation
    {
        public IReadOnlyDictionary<string, string>? Origins { get; set; }
    }

    private sealed class Common(Invocation invocation)
    {
        public readonly Option<string?> Scenario = new("--scenario") { Description = "A scenario file (YAML or JSON) whose keys are this command's flags without the dashes; flags given here win. Errors name the file's line." };
        public readonly Option<string?> Target = new("--target", "-t") { Description = "Base URL for every protocol: http(s):// (WebSocket derives ws(s)://), e.g. http://127.0.0.1:8080." };
        public readonly Option<string?> HttpTarget = new("--http-target") { Description = "Base URL of HTTP/SSE requests (overrides --target)." };
        public readonly Option<string?> GrpcTarget = new("--grpc-target") { Description = "Base URL of gRPC calls, e.g. http://127.0.0.1:8081 (h2c) (overrides --target)." };
        public readonly Option<string?> WsTarget = new("--ws-target") { Description = "Base URL of WebSocket connections, ws:// or wss:// (overrides --target)." };
        public readonly Option<bool> Http2 = new("--http2") { Description = "Send HTTP requests over HTTP/2 (prior knowledge on http://, ALPN on https://)." };
        public readonly Option<bool> Insecure = new("--insecure", "-k") { Description = "Accept any TLS certificate (self-signed test targets)." };
        public readonly Option<string[]> Header = new("--header", "-H") { Description = "Add or replace a header on every request: 'Name: value' (repeatable).", Arity = ArgumentArity.ZeroOrMore };
        public readonly Option<string[]> DropHeader = new("--drop-header") { Description = "Never send this header (repeatable).", Arity = ArgumentArity.ZeroOrMore };
        public readonly DurationOption Duration = new("--duration", "-d") { Description = "Timed replay: take the first part of source time (e.g. 60s). Profile or --users: how long to send." };
        public readonly Option<long?> Limit = new("--limit", "-n") { Description = "Send at most N requests (the first N of a timed source)." };
        public readonly Option<string?> Profile = new("--profile") { Description = "Open-model profile: constant, ramp, steps, spike, poisson, gamma (implied constant by --rate)." };
        public readonly Option<double?> Rate = new("--rate", "-r") { Description = "Arrival rate, requests/s (the starting rate of ramp/steps, the base rate of spike)." };
        public readonly Option<double?> To = new("--to") { Description = "Final rate of ramp and steps, requests/s." };
        public readonly DurationOption StepEvery = new("--step-every") { Description = "steps: length of each step (e.g. 10s)." };
        public readonly Option<double?> StepFactor = new("--step-factor") { Description = "steps: multiply the rate by this each step (1.5 = +50%)." };
        public readonly Option<double?> StepAdd = new("--step-add") { Description = "steps: add this many requests/s each step." };
        public readonly Option<double?> SpikeRate = new("--spike-rate") { Description = "spike: the rate during the spike, requests/s." };
        public readonly DurationOption SpikeAt = new("--spike-at") { Description = "spike: when it starts (e.g. 5s)." };
        public readonly DurationOption SpikeFor = new("--spike-for") { Description = "spike: how long it lasts (e.g. 2s)." };
        public readonly Option<string?> Arrivals = new("--arrivals") { Description = "How arrivals spread around the rate: uniform (default), poisson, gamma." };
        public readonly Option<double> Burstiness = new("--burstiness") { Description = "Gamma arrivals' shape: 1 = Poisson, < 1 burstier, > 1 smoother (as vLLM's benchmark).", DefaultValueFactory = _ => 1 };
        public readonly Option<int> Seed = new("--seed") { Description = "Seed of every random draw (arrivals, clone offsets).", DefaultValueFactory = _ => 1 };
        public readonly Option<int?> Users = new("--users", "-u") { Description = "Closed model: N concurrent users, each sending its next session when the previous ended." };
        public readonly DurationOption Warmup = new("--warmup") { Description = "Before the measured run, send at the starting rate (or with the users) for this long, unmeasured, so JIT and connection set-up do not count (as wrk2's calibration period)." };
        public readonly Option<bool> SessionArrivals = new("--session-arrivals") { Description = "Open model: each arrival starts a whole session (all its requests in order, with think times, one WebSocket connection) instead of one request; --rate is then sessions/s." };
        public readonly DurationOption Think = new("--think") { Description = "Closed model: pause between a user's sessions (e.g. 100ms)." };
        public readonly DurationOption Timeout = new("--timeout") { Description = "A request without a complete response by then fails as a timeout (default 60s)." };
        public readonly Option<int> MaxInflight = new("--max-inflight") { Description = "Most sessions in flight; beyond it the schedule waits (and the wait counts as latency).", DefaultValueFactory = _ => 100_000 };
        public readonly Option<int?> Connections = new("--connections") { Description = "Most sockets held at once: HTTP/1.1 requests in flight plus WebSocket connections (default 20,000, lowered to fit the open-file limit)." };
        public readonly Option<string?> Report = new("--report", "-o") { Description = "Directory to write report.json and report.html into." };
        public readonly Option<string[]> MetricsUrl = new("--metrics-url") { Description = "A model server's Prometheus metrics (repeatable) whose vllm:prefix_cache_* counters give the run's prefix cache hit rate (default: the HTTP target's /metrics, when it has them).", Arity = ArgumentArity.ZeroOrMore };
        public readonly Option<string?> LogRequests = new("--log-requests") { Description = "Write one JSON line per request (session, order, times, status) to this file." };
        public readonly Option<string[]> Slo = new("--slo") { Description = "An SLO for goodput, e.g. \"ttft_p95<500ms\", \"e2e_p99<2s\", \"itl<50ms\" (repeatable).", Arity = ArgumentArity.ZeroOrMore };
        public readonly Option<string[]> Assert = new("--assert") { Description = "Fail the run (exit 1) unless it holds, e.g. \"p95<500ms\", \"error_rate<1%\", \"achieved_rps>=1500\" (repeatable).", Arity = ArgumentArity.ZeroOrMore };
        public readonly Option<string> Progress = new("--progress") { Description = "Console progress: auto (live on a terminal, plain lines otherwise), live, plain, none.", DefaultValueFactory = _ => "auto" };
        public readonly Option<string> Model = new("--model") { Description = "The model field of generated OpenAI requests.", DefaultValueFactory = _ => "sim-llm" };
        public readonly Option<bool> Stream = new("--stream") { Description = "Generated OpenAI requests (trace rows, load) ask for SSE streaming." };
        public readonly Option<string?> GenerateWith = new("--generate-with") { Description = "Generated conversations: an OpenAI-compatible base URL (the simulator too) that writes each session's next user turn from the conversation so far; needs --session-arrivals or --users." };
        public readonly Option<int?> Turns = new("--turns") { Description = "User turns per conversation (default 4 with --generate-with); without --generate-with each session is a synthetic conversation: every turn --prompt-tokens of new text, sent after all earlier user and assistant messages." };
        public readonly DurationOption TurnThink = new("--turn-think") { Description = "Generated conversations: pause after an answer before the next turn (e.g. 500ms)." };
        public readonly Option<string?> GenerateModel = new("--generate-model") { Description = "The model field sent to --generate-with (default: --model)." };
        public readonly Option<int> GenerateMaxTokens = new("--generate-max-tokens") { Description = "Most tokens of a generated user turn.", DefaultValueFactory = _ => 32 };
        public readonly Option<string?> GenerateCache = new("--generate-cache") { Description = "Directory caching generated turns by seed, so a run repeats exactly (default ~/.cache/replay/conversations)." };
        public readonly Option<int> Workers = new("--workers") { Description = "Split the run among N 'replay worker' processes that share --redis (open model and timed replays); their histograms are merged exactly.", DefaultValueFactory = _ => 0 };
        public readonly Option<string?> Redis = new("--redis") { Description = "Redis the workers coordinate through: redis://HOST:PORT or a StackExchange.Redis connection string." };

        public void AddTo(Command command)
        {
            foreach (var option in new Option[]
            {
                Scenario, Target, HttpTarget, GrpcTarget, WsTarget, Http2, Insecure, Header, DropHeader, Duration, Limit, Profile, Rate, To,
                StepEvery, StepFactor, StepAdd, SpikeRate, SpikeAt, SpikeFor, Arrivals, Burstiness, Seed, Users, Think, Warmup, SessionArrivals, Timeout,
                MaxInflight, Connections, Report, MetricsUrl, LogRequests, Slo, Assert, Progress, Model, Stream, Workers, Redis, GenerateWith, Turns, TurnThink, GenerateModel, GenerateMaxTokens, GenerateCache,
            })
            {
                command.Add(option);
            }
        }

        public ReplaySettings Read(ParseResult p, string command) => new()
        {
            Command = command,
            Target = p.GetValue(Target),
            HttpTarget = p.GetValue(HttpTarget),
            GrpcTarget = p.GetValue(GrpcTarget),
            WebSocketTarget = p.GetValue(WsTarget),
            Http2 = p.GetValue(Http2),
            Insecure = p.GetValue(Insecure),
            Headers = p.GetValue(Header) ?? [],
            DropHeaders = p.GetValue(DropHeader) ?? [],
            Duration = p.GetValue(Duration),
            Limit = p.GetValue(Limit),
            Profile = p.GetValue(Profile),
            Rate = p.GetValue(Rate),
            To = p.GetValue(To),
            StepEvery = p.GetValue(StepEvery),
            StepFactor = p.GetValue(StepFactor),
            StepAdd = p.GetValue(StepAdd),
            SpikeRate = p.GetValue(SpikeRate),
            SpikeAt = p.GetValue(SpikeAt),
            SpikeFor = p.GetValue(SpikeFor),
            Arrivals = p.GetValue(Arrivals),
            Burstiness = p.GetValue(Burstiness),
            Seed = p.GetValue(Seed),
            Users = p.GetValue(Users),
            Think = p.GetValue(Think),
            Warmup = p.GetValue(Warmup),
            SessionArrivals = p.GetValue(SessionArrivals),
            Timeout = p.GetValue(Timeout) ?? ReplaySettings.DefaultTimeout,
            MaxInflight = p.GetValue(MaxInflight),
            Connections = p.GetValue(Connections),
            ReportDirectory = p.GetValue(Report),
            LogRequests = p.GetValue(LogRequests),
            MetricsUrls = p.GetValue(MetricsUrl) ?? [],
            Slos = p.GetValue(Slo) ?? [],
            Asserts = p.GetValue(Assert) ?? [],
            Progress = p.GetValue(Progress) ?? "auto",
            Model = p.GetValue(Model) ?? "sim-llm",
            Stream = p.GetValue(Stream),
            Workers = p.GetValue(Workers),
            Redis = p.GetValue(Redis),
            Origins = invocation.Origins,
            GenerateWith = p.GetValue(GenerateWith),
            Turns = p.GetValue(Turns),
            TurnThink = p.GetValue(TurnThink),
            GenerateModel = p.GetValue(GenerateModel),
            GenerateMaxTokens = p.GetValue(GenerateMaxTokens),
            GenerateCache = p.GetValue(GenerateCache),
        };
    }

    /// <summary>
    /// The parser's problems in our words: an unknown flag names the command and suggests the nearest flag it has, as
    /// scenario files do (<c>--rat</c> → <c>--rate</c>, at most two edits), and the value that followed an unknown flag
    /// is not reported again as an argument of its own.
    /// </summary>
    internal static List<string> ParseProblems(ParseResult parse, string[] args)
    {
        const string Unrecognized = "Unrecognized command or argument '";
        var command = parse.CommandResult.Command;
        var flags = command.Options.SelectMany(static o => o.Aliases.Prepend(o.Name)).Where(static n => n.StartsWith('-')).Distinct(StringComparer.Ordinal).ToList();
        var unknownFlags = new HashSet<int>();
        var problems = new List<string>();
        foreach (var e in parse.Errors)
        {
            if (!e.Message.StartsWith(Unrecognized, StringComparison.Ordinal) || !e.Message.EndsWith("'.", StringComparison.Ordinal))
            {
                problems.Add(e.Message);
                continue;
            }

            var token = e.Message[Unrecognized.Length..^2];
            var at = Array.IndexOf(args, token);
            if (token.StartsWith('-'))
            {
                unknownFlags.Add(at);
                var name = token.Split('=')[0];
                var near = ScenarioFile.Nearest(name, flags);
                var where = command.Parents.Any() ? $" for 'replay {command.Name}'" : string.Empty;
                problems.Add($"unknown flag '{name}'{where}{(near is null ? string.Empty : $" (did you mean '{near}'?)")}.");
            }
            else if (at <= 0 || !unknownFlags.Contains(at - 1))
            {
                problems.Add(e.Message);
            }
        }

        return problems;
    }

    private static Command BuildRun(TextWriter output, TextWriter error, ILogger logger, TimeProvider time, Invocation invocation)
    {
        var common = new Common(invocation);
        var source = new Option<string?>("--source", "-s") { Description = "What to replay: file:DIR (or a directory) or redis://HOST:PORT with --recording NAME; azure-llm:FILE (Azure LLM inference trace CSV); template:FILE." };
        var recording = new Option<string?>("--recording") { Description = "The recording's name in a store." };
        var speed = new Option<double>("--speed") { Description = "Time scale: 2 replays twice as fast (offsets and think times halved).", DefaultValueFactory = _ => 1 };
        var amplify = new Option<double>("--amplify", "-x") { Description = "Volume multiplier: clone whole sessions with fresh ids and spread start offsets (fractions allowed, e.g. 2.5).", DefaultValueFactory = _ => 1 };
        var amplifyFresh = new Option<bool>("--amplify-fresh-prompts") { Description = "Amplified clones' prompts share nothing with other sessions (default: a clone shares the prompt prefixes its original shared, and no more)." };
        var maxGap = new DurationOption("--max-gap") { Description = "Shorten idle stretches of source time (no exchange in flight) longer than this to it, e.g. 5s; the report says how much source time was removed." };
        var spread = new DurationOption("--spread") { Description = "Clones start up to this much later than their original (source time), default 1s." };
        var sessionHeader = new Option<string>("--session-header") { Description = "Header carrying a session id, rewritten for clones.", DefaultValueFactory = _ => "x-session-id" };
        var compare = new Option<bool>("--compare") { Description = "Compare each response with the recorded one (status, body hash) and count the differences." };
        var wsMode = new Option<string?>("--ws-mode") { Description = "Recorded WebSocket connections: auto (default: turns when the recording shows request/response turns, else frames), turns (each message waits for a \"done\"/\"error\" reply), frames (messages at their recorded offsets, server frames read as they come, the recorded close)." };
        var command = new Command("run", "Replay a recording (file store or Redis), an Azure LLM trace or a template against a target.");
        command.Add(source);
        command.Add(recording);
        command.Add(speed);
        command.Add(amplify);
        command.Add(amplifyFresh);
        command.Add(spread);
        command.Add(maxGap);
        command.Add(sessionHeader);
        command.Add(compare);
        command.Add(wsMode);
        common.AddTo(command);
        command.SetAction((p, ct) => RunCommand.ExecuteAsync(
            common.Read(p, "run") with
            {
                Source = p.GetValue(source),
                Recording = p.GetValue(recording),
                Speed = p.GetValue(speed),
                Amplify = p.GetValue(amplify),
                AmplifyFreshPrompts = p.GetValue(amplifyFresh),
                Spread = p.GetValue(spread),
                MaxGap = p.GetValue(maxGap),
                SessionHeader = p.GetValue(sessionHeader) ?? "x-session-id",
                Compare = p.GetValue(compare),
                WebSocketMode = p.GetValue(wsMode),
            },
            output,
            error,
            logger,
            time,
            ct));
        return command;
    }

    private static Command BuildLoad(TextWriter output, TextWriter error, ILogger logger, TimeProvider time, Invocation invocation)
    {
        var common = new Common(invocation);
        var template = new Option<string?>("--template") { Description = "A request template file (JSON): the requests to draw, with weights." };
        var maxTokens = new Option<int>("--max-tokens") { Description = "Output tokens asked for by the synthetic request.", DefaultValueFactory = _ => 16 };
        var promptTokens = new Option<int>("--prompt-tokens") { Description = "Prompt length of the synthetic request, in cl100k tokens.", DefaultValueFactory = _ => 16 };
        var prefixGroups = new Option<int?>("--prefix-groups") { Description = "Shared-prefix workload: each synthetic prompt starts with one of N fixed prefixes (taken round-robin), then --prompt-tokens of its own; with --prefix-tokens." };
        var prefixTokens = new Option<int?>("--prefix-tokens") { Description = "Length of each --prefix-groups prefix, in cl100k tokens." };
        var protocol = new Option<string>("--protocol") { Description = "Synthetic request's protocol: http (OpenAI chat completion), grpc (inference.v1.Generation), websocket (/v1/stream).", DefaultValueFactory = _ => "http" };
        var path = new Option<string>("--path") { Description = "Path of the synthetic HTTP request.", DefaultValueFactory = _ => "/v1/chat/completions" };
        var command = new Command("load", "Drive synthetic load (an OpenAI chat completion, or a template's requests) on an open-model profile or with N closed-model users.");
        command.Add(template);
        command.Add(maxTokens);
        command.Add(promptTokens);
        command.Add(prefixGroups);
        command.Add(prefixTokens);
        command.Add(protocol);
        command.Add(path);
        common.AddTo(command);
        command.SetAction((p, ct) => RunCommand.ExecuteAsync(
            common.Read(p, "load") with
            {
                Template = p.GetValue(template),
                MaxTokens = p.GetValue(maxTokens),
                PromptTokens = p.GetValue(promptTokens),
                PrefixGroups = p.GetValue(prefixGroups),
                PrefixTokens = p.GetValue(prefixTokens),
                Protocol = p.GetValue(protocol) ?? "http",
                Path = p.GetValue(path) ?? "/v1/chat/completions",
            },
            output,
            error,
            logger,
            time,
            ct));
        return command;
    }

    private static Command BuildSweep(TextWriter output, TextWriter error, ILogger logger, TimeProvider time, Invocation invocation)
    {
        var common = new Common(invocation);
        var source = new Option<string?>("--source", "-s") { Description = "Sweep with a source's requests (as replay run --source) instead of the synthetic request or --template." };
        var recording = new Option<string?>("--recording") { Description = "The recording's name in a store." };
        var template = new Option<string?>("--template") { Description = "A request template file: the requests to draw, with weights." };
        var maxTokens = new Option<int>("--max-tokens") { Description = "Output tokens asked for by the synthetic request.", DefaultValueFactory = _ => 16 };
        var promptTokens = new Option<int>("--prompt-tokens") { Description = "Prompt length of the synthetic request, in cl100k tokens.", DefaultValueFactory = _ => 16 };
        var prefixGroups = new Option<int?>("--prefix-groups") { Description = "Shared-prefix workload: each synthetic prompt starts with one of N fixed prefixes (taken round-robin), then --prompt-tokens of its own; with --prefix-tokens. Each step reports the model servers' prefix cache hit rate." };
        var prefixTokens = new Option<int?>("--prefix-tokens") { Description = "Length of each --prefix-groups prefix, in cl100k tokens." };
        var protocol = new Option<string>("--protocol") { Description = "Synthetic request's protocol: http, grpc, websocket.", DefaultValueFactory = _ => "http" };
        var path = new Option<string>("--path") { Description = "Path of the synthetic HTTP request.", DefaultValueFactory = _ => "/v1/chat/completions" };
        var patience = new Option<int>("--patience") { Description = "Steps in a row without goodput growth (while latency climbs) before the sweep stops.", DefaultValueFactory = _ => 2 };
        var growth = new Option<double>("--growth") { Description = "Smallest goodput gain that counts as growing, as a fraction (0.05 = 5%).", DefaultValueFactory = _ => 0.05 };
        var profileOut = new Option<string?>("--profile-out") { Description = "Where to write the gateway shaping profile (default: shaping-profile.json in --report, or the current directory)." };
        var cluster = new Option<string>("--cluster") { Description = "The gateway cluster id the profile limits (its Admission section).", DefaultValueFactory = _ => "model-http" };
        var route = new Option<string>("--route") { Description = "The gateway route id the profile's rate policy is put on.", DefaultValueFactory = _ => "openai" };
        var command = new Command("sweep", "Find a target's capacity: raise an open-model rate step by step (--rate, --step-factor/--step-add, --step-every, --to), measure goodput against the --slo's, stop past the knee, and write a gateway shaping profile that holds the target there.");
        foreach (var o in new Option[] { source, recording, template, maxTokens, promptTokens, prefixGroups, prefixTokens, protocol, path, patience, growth, profileOut, cluster, route })
        {
            command.Add(o);
        }

        common.AddTo(command);
        command.SetAction(async (p, ct) =>
        {
            var read = common.Read(p, p.GetValue(source) is null ? "load" : "run");
            var problems = new List<string>();
            if (read.Users is not null || read.Profile is not null || read.Duration is not null || read.SessionArrivals)
            {
                problems.Add("--users, --profile, --duration and --session-arrivals do not apply to sweep: its steps are open-model constant rates (--rate, --step-factor/--step-add, --step-every, --to).");
            }

            if (read.Rate is { } given && !(given > 0))
            {
                problems.Add(string.Create(CultureInfo.InvariantCulture, $"--rate (the first step's rate, requests/s) must be > 0 (was {given}); leave it out to calibrate."));
            }

            if (read.Workers > 0 || read.GenerateWith is not null)
            {
                problems.Add("--workers and --generate-with do not apply to sweep: its steps run from this process, one request per arrival.");
            }

            var stepLength = read.StepEvery ?? TimeSpan.FromSeconds(10);
            if (stepLength < TimeSpan.FromSeconds(1))
            {
                problems.Add($"--step-every must be a duration of at least 1s (was {ValueParsers.FormatDuration(stepLength)}).");
            }

            if (read.StepFactor is { } f && !(f > 1))
            {
                problems.Add(string.Create(CultureInfo.InvariantCulture, $"--step-factor must be > 1 (was {f})."));
            }

            if (read.StepAdd is { } a && !(a > 0))
            {
                problems.Add(string.Create(CultureInfo.InvariantCulture, $"--step-add must be > 0 (was {a})."));
            }

            if (p.GetValue(patience) < 1 || !(p.GetValue(growth) is > 0 and < 1))
            {
                problems.Add("--patience must be >= 1 and --growth between 0 and 1 (e.g. 0.05).");
            }

            if (read.To is { } to && (!(to > 0) || (read.Rate is { } start && !(to >= start))))
            {
                problems.Add(string.Create(CultureInfo.InvariantCulture, $"--to must be > 0 and >= --rate (was {to})."));
            }

            if (problems.Count > 0)
            {
                foreach (var problem in problems)
                {
                    await error.WriteLineAsync($"replay: {problem}").ConfigureAwait(false);
                }

                return ExitCodes.UsageOrInput;
            }

            var timeout = read.Timeout;
            if (p.GetResult(common.Timeout) is null or { Implicit: true })
            {
                // Past the knee, requests that cannot meet the SLOs any more need not run for a minute: three times the
                // largest time bound (at least 2 s) keeps each step's drain short; --timeout overrides it.
                var bound = 0.0;
                foreach (var text in read.Slos)
                {
                    if (Measurement.Slo.TryParse(text, out _) is { Metric: not Measurement.SloMetric.Itl } slo)
                    {
                        bound = Math.Max(bound, slo.ThresholdMicros / 1_000_000.0);
                    }
                }

                timeout = bound > 0 ? TimeSpan.FromMilliseconds(Math.Round(Math.Max(2, 3 * bound) * 1000)) : TimeSpan.FromSeconds(30);
            }

            var settings = read with
            {
                Source = p.GetValue(source),
                Recording = p.GetValue(recording),
                Template = p.GetValue(template),
                MaxTokens = p.GetValue(maxTokens),
                PromptTokens = p.GetValue(promptTokens),
                PrefixGroups = p.GetValue(prefixGroups),
                PrefixTokens = p.GetValue(prefixTokens),
                Protocol = p.GetValue(protocol) ?? "http",
                Path = p.GetValue(path) ?? "/v1/chat/completions",
                Duration = stepLength,
                Rate = read.Rate ?? 1, // the workload's plan needs a rate; each step sets its own
                To = null,
                StepEvery = null,
                StepFactor = null,
                StepAdd = null,
                Timeout = timeout,
            };
            var options = new SweepCommand.Options
            {
                StartRate = read.Rate,
                MaxRate = read.To,
                StepLength = stepLength,
                StepFactor = read.StepFactor ?? (read.StepAdd is null ? 1.25 : 1),
                StepAdd = read.StepAdd ?? 0,
                Knee = new Capacity.KneeFinder.Options(p.GetValue(growth), p.GetValue(patience)),
                ProfileOut = p.GetValue(profileOut),
                Cluster = p.GetValue(cluster) ?? "model-http",
                Route = p.GetValue(route) ?? "openai",
            };
            return await SweepCommand.ExecuteAsync(settings, options, output, error, logger, time, ct).ConfigureAwait(false);
        });
        return command;
    }

    private static Command BuildWorker(TextWriter output, TextWriter error, ILogger logger, TimeProvider time)
    {
        var redis = new Option<string>("--redis") { Description = "The Redis runs are coordinated through: redis://HOST:PORT or a StackExchange.Redis connection string.", Required = true };
        var name = new Option<string?>("--name") { Description = "This worker's consumer name in the group (default HOST-PID); must be unique among live workers." };
        var logRequests = new Option<string?>("--log-requests") { Description = "Write one JSON line per request this worker sends to this file." };
        var command = new Command("worker", "Join the replay workers' Redis consumer group and send the slices of runs started with --workers N, until stopped (Ctrl-C).");
        command.Add(redis);
        command.Add(name);
        command.Add(logRequests);
        command.SetAction(async (p, ct) =>
        {
            StackExchange.Redis.ConnectionMultiplexer connection;
            try
            {
                connection = await StackExchange.Redis.ConnectionMultiplexer.ConnectAsync(Contracts.Recording.RedisConnection.Parse(p.GetValue(redis)!)).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is StackExchange.Redis.RedisException or ArgumentException)
            {
                await error.WriteLineAsync($"replay: --redis '{p.GetValue(redis)}': cannot connect ({ex.Message}).").ConfigureAwait(false);
                return ExitCodes.UsageOrInput;
            }

            await using (connection.ConfigureAwait(false))
            {
                var worker = new Workers.Worker(connection, p.GetValue(name) ?? $"{Environment.MachineName}-{Environment.ProcessId}", p.GetValue(logRequests), output, error, logger, time);
                return await worker.RunAsync(ct).ConfigureAwait(false);
            }
        });
        return command;
    }

    private static Command BuildList(TextWriter output, TextWriter error)
    {
        var source = new Option<string>("--source", "-s") { Description = "The store: file:DIR (or a directory) or redis://HOST:PORT.", Required = true };
        var recording = new Option<string?>("--recording") { Description = "Show this recording's sessions." };
        var command = new Command("list", "List the recordings of a store, or one recording's sessions.");
        command.Add(source);
        command.Add(recording);
        command.SetAction((p, ct) => ListCommand.ExecuteAsync(p.GetValue(source)!, p.GetValue(recording), output, error, ct));
        return command;
    }

    private static Command BuildProbe(TextWriter output, TextWriter error)
    {
        var http = new Option<string?>("--http") { Description = "A gateway's HTTP listener or a model server (an OpenAI chat completion and its SSE stream)." };
        var grpc = new Option<string?>("--grpc") { Description = "A gRPC listener or server (inference.v1 Generate and GenerateStream)." };
        var websocket = new Option<string?>("--websocket") { Description = "A WebSocket listener (ws://HOST:PORT, path /v1/stream unless given): a two-turn session." };
        var insecure = new Option<bool>("--insecure") { Description = "Accept any TLS certificate (a self-signed test certificate)." };
        var timeout = new DurationOption("--timeout") { Description = "How long each probe may take (default 10s)." };
        var header = new Option<string[]>("--header", "-H") { Description = "Add or replace a header on every probe: 'Name: value' (repeatable; gRPC metadata and the WebSocket upgrade too), e.g. -H 'Authorization: Bearer sk-...'.", Arity = ArgumentArity.ZeroOrMore };
        var command = new Command("probe", "One quick request per protocol, printing what came back; exit 0 when every probe succeeded.");
        command.Add(header);
        command.Add(http);
        command.Add(grpc);
        command.Add(websocket);
        command.Add(insecure);
        command.Add(timeout);
        command.SetAction(async (p, ct) =>
        {
            var limit = p.GetValue(timeout) ?? TimeSpan.FromSeconds(10);
            if (limit <= TimeSpan.Zero)
            {
                await error.WriteLineAsync($"replay: --timeout must be > 0 (was {ValueParsers.FormatDuration(limit)}).").ConfigureAwait(false);
                return ExitCodes.UsageOrInput;
            }

            var headers = new List<KeyValuePair<string, string>>();
            foreach (var h in p.GetValue(header) ?? [])
            {
                if (!ValueParsers.TryParseHeader(h, out var parsed))
                {
                    await error.WriteLineAsync($"replay probe: --header '{h}' is not 'Name: value'.").ConfigureAwait(false);
                    return ExitCodes.UsageOrInput;
                }

                headers.Add(parsed);
            }

            return await ProbeCommand.ExecuteAsync(p.GetValue(http), p.GetValue(grpc), p.GetValue(websocket), p.GetValue(insecure), limit, output, error, ct, headers).ConfigureAwait(false);
        });
        return command;
    }

    private static Command BuildCompare(TextWriter output, TextWriter error)
    {
        var a = new Argument<string>("A") { Description = "The first run: its --report directory or report.json." };
        var b = new Argument<string>("B") { Description = "The second run." };
        var labelA = new Option<string>("--label-a") { Description = "Name of the first run.", DefaultValueFactory = _ => "A" };
        var labelB = new Option<string>("--label-b") { Description = "Name of the second run.", DefaultValueFactory = _ => "B" };
        var outFile = new Option<string>("--out") { Description = "The comparison page to write.", DefaultValueFactory = _ => "compare.html" };
        var command = new Command("compare", "Put two runs' reports side by side: a table on the console and one page with both runs' figures and charts.");
        command.Add(a);
        command.Add(b);
        command.Add(labelA);
        command.Add(labelB);
        command.Add(outFile);
        command.SetAction((p, ct) => Reporting.CompareCommand.ExecuteAsync(p.GetValue(a)!, p.GetValue(b)!, p.GetValue(labelA)!, p.GetValue(labelB)!, p.GetValue(outFile)!, output, error, ct));
        return command;
    }
}
