using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace Replay.Cli;

/// <summary>
/// A scenario file: a workload written once (sources, template, profile, SLOs, assertions, targets), in YAML or JSON,
/// run with <c>replay run --scenario FILE</c>. Its keys are the command's flags without the dashes
/// (<c>rate: 200</c> is <c>--rate 200</c>; <c>max_tokens</c> and <c>max-tokens</c> both work), lists are repeated flags
/// (<c>slo: [...]</c>), <c>headers</c> is a map; <c>command</c> says <c>run</c>, <c>load</c> or <c>sweep</c>
/// (default: <c>run</c> with a <c>source</c>, else <c>load</c>). Flags given on the command line win.
/// </summary>
/// <remarks>
/// The schema is the command line itself: each key must name one of the command's options, and its value must have
/// that option's type (number, whole number, true/false, text, a list for a repeatable flag), durations must parse
/// with the flags' parser (<see cref="ValueParsers.TryParseDuration"/>: <c>500ms</c>, <c>10s</c>, <c>00:01:30</c>), and the closed sets (<c>profile</c>, <c>arrivals</c>, <c>protocol</c>, <c>progress</c>)
/// must hold one of their values. Every problem is reported at once as <c>FILE:LINE: …</c>, and problems found later by
/// the run's own validation name the line of the key that set the flag. Relative paths (<c>template</c>,
/// <c>source</c>, <c>report</c>, <c>log_requests</c>, <c>profile_out</c>) are relative to the scenario file.
/// </remarks>
internal static class ScenarioFile
{
    private static readonly HashSet<string> s_paths = new(StringComparer.Ordinal) { "template", "report", "log-requests", "profile-out", "generate-cache" };
    private static readonly Dictionary<string, string[]> s_choices = new(StringComparer.Ordinal)
    {
        ["profile"] = ["constant", "ramp", "steps", "spike", "poisson", "gamma"],
        ["arrivals"] = ["uniform", "poisson", "gamma"],
        ["protocol"] = ["http", "grpc", "websocket"],
        ["progress"] = ["auto", "live", "plain", "none"],
        ["ws-mode"] = ["auto", "turns", "frames"],
        ["command"] = ["run", "load", "sweep"],
    };

    /// <summary>A scenario read and checked: the command, the arguments it stands for, and where each flag was set.</summary>
    internal sealed record Loaded(string Command, IReadOnlyList<string> Arguments, IReadOnlyDictionary<string, string> Origins);

    /// <summary>One node of the parsed file, with its line.</summary>
    internal sealed class Node
    {
        public required int Line { get; init; }
        public string? Scalar { get; init; }
        public bool Quoted { get; init; }
        public List<Node>? Items { get; init; }
        public List<(string Key, int Line, Node Value)>? Entries { get; init; }
        public string Kind => Entries is not null ? "a map" : Items is not null ? "a list" : Scalar is null ? "null" : "a single value";
    }

    /// <summary>
    /// Reads <paramref name="path"/> against the options of <paramref name="commands"/> (by name); the arguments
    /// exclude flags in <paramref name="explicitFlags"/> (given on the command line, which win).
    /// </summary>
    /// <returns>The scenario, or null and every problem (each naming the file and line).</returns>
    public static (Loaded? Scenario, IReadOnlyList<string> Errors) Load(string path, string invokedAs, IReadOnlyDictionary<string, Command> commands, ISet<string> explicitFlags)
    {
        var errors = new List<string>();
        var name = Path.GetFileName(path);
        if (!File.Exists(path))
        {
            return (null, [$"--scenario '{path}': no such file."]);
        }

        var text = File.ReadAllText(path);
        Node root;
        try
        {
            root = path.EndsWith(".json", StringComparison.OrdinalIgnoreCase) || text.TrimStart().StartsWith('{') ? ParseJson(text) : ParseYaml(text);
        }
        catch (YamlException ex)
        {
            return (null, [string.Create(CultureInfo.InvariantCulture, $"{name}:{ex.Start.Line}: not valid YAML: {ex.Message}")]);
        }
        catch (InvalidOperationException)
        {
            // YamlDotNet's scanner fails this way when the file ends inside a flow collection.
            var lines = text.Split('\n').Length;
            return (null, [string.Create(CultureInfo.InvariantCulture, $"{name}:{lines}: not valid YAML: the file ends inside a [list] or {{map}} that was never closed.")]);
        }
        catch (JsonException ex)
        {
            return (null, [string.Create(CultureInfo.InvariantCulture, $"{name}:{(ex.LineNumber ?? 0) + 1}: not valid JSON: {FirstSentence(ex.Message)}")]);
        }

        if (root.Entries is null)
        {
            return (null, [string.Create(CultureInfo.InvariantCulture, $"{name}:{root.Line}: a scenario is a map of settings (rate: 200, duration: 30s, …), found {root.Kind}.")]);
        }

        // The command: declared, or implied by a source.
        var declared = root.Entries.FirstOrDefault(static e => Normalize(e.Key) == "command");
        var hasSource = root.Entries.Any(static e => Normalize(e.Key) == "source");
        var command = invokedAs == "run" ? declared.Value?.Scalar ?? (hasSource ? "run" : "load") : invokedAs;
        if (declared.Value is { } d && d.Scalar != command)
        {
            errors.Add(string.Create(CultureInfo.InvariantCulture, $"{name}:{declared.Line}: command must be one of run, load, sweep{(invokedAs == "run" ? string.Empty : $" and match 'replay {invokedAs}'")} (was '{d.Scalar ?? d.Kind}')."));
            return (null, errors);
        }

        if (!commands.TryGetValue(command, out var target))
        {
            return (null, [string.Create(CultureInfo.InvariantCulture, $"{name}:{declared.Line}: command must be run, load or sweep (was '{command}').")]);
        }

        var options = new Dictionary<string, Option>(StringComparer.Ordinal);
        foreach (var option in target.Options)
        {
            if (option.Name.StartsWith("--", StringComparison.Ordinal) && option.Name != "--scenario" && option.Name != "--help")
            {
                options[option.Name[2..]] = option;
            }
        }

        var directory = Path.GetDirectoryName(Path.GetFullPath(path))!;
        var arguments = new List<string>();
        var origins = new Dictionary<string, string>(StringComparer.Ordinal);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (rawKey, line, value) in root.Entries)
        {
            var key = Normalize(rawKey);
            var at = string.Create(CultureInfo.InvariantCulture, $"{name}:{line}");
            if (key == "command")
            {
                continue;
            }

            if (!seen.Add(key))
            {
                errors.Add($"{at}: '{rawKey}' is given twice.");
                continue;
            }

            if (!options.TryGetValue(key, out var option))
            {
                var near = Nearest(key, options.Keys);
                errors.Add($"{at}: unknown key '{rawKey}'{(near is null ? string.Empty : $" (did you mean '{near.Replace('-', '_')}'?)")}; a scenario's keys are the flags of 'replay {command}' without the dashes.");
                continue;
            }

            var flag = "--" + key;
            var before = errors.Count;
            var values = Values(key, option, value, at, directory, errors);
            if (errors.Count > before || explicitFlags.Contains(flag))
            {
                continue;
            }

            origins[flag] = at;
            foreach (var v in values)
            {
                arguments.Add(v is null ? flag : $"{flag}={v}");
            }
        }

        return errors.Count > 0 ? (null, errors) : (new Loaded(command, arguments, origins), []);
    }

    /// <summary>The command-line values of one key (null: a flag without a value), or errors.</summary>
    private static List<string?> Values(string key, Option option, Node value, string at, string directory, List<string> errors)
    {
        var type = option.ValueType;
        var result = new List<string?>();
        if (key == "headers" || key == "header")
        {
            if (value.Entries is { } headers)
            {
                foreach (var (hName, _, hValue) in headers)
                {
                    if (hValue.Scalar is null)
                    {
                        errors.Add($"{at}: headers.{hName} must be text (was {hValue.Kind}).");
                    }
                    else
                    {
                        result.Add($"{hName}: {hValue.Scalar}");
                    }
                }

                return result;
            }
        }

        if (type == typeof(string[]))
        {
            var items = value.Items ?? (value.Scalar is not null ? [value] : null);
            if (items is null)
            {
                errors.Add($"{at}: {key} must be a list of text values (was {value.Kind}).");
                return result;
            }

            foreach (var item in items)
            {
                if (item.Scalar is null)
                {
                    errors.Add(string.Create(CultureInfo.InvariantCulture, $"{at[..at.LastIndexOf(':')]}:{item.Line}: each item of {key} must be text (was {item.Kind})."));
                }
                else
                {
                    result.Add(item.Scalar);
                }
            }

            return result;
        }

        if (value.Scalar is not { } scalar)
        {
            errors.Add($"{at}: {key} must be a single value (was {value.Kind}).");
            return result;
        }

        if (type == typeof(bool))
        {
            if (!bool.TryParse(scalar, out var b))
            {
                errors.Add($"{at}: {key} must be true or false (was '{scalar}').");
            }
            else if (b)
            {
                result.Add(null);
            }

            return result;
        }

        var core = Nullable.GetUnderlyingType(type) ?? type;
        if (core == typeof(int) || core == typeof(long))
        {
            if (!long.TryParse(scalar, NumberStyles.Integer, CultureInfo.InvariantCulture, out _))
            {
                errors.Add($"{at}: {key} must be a whole number (was '{scalar}').");
            }
        }
        else if (core == typeof(double))
        {
            if (!double.TryParse(scalar, NumberStyles.Float, CultureInfo.InvariantCulture, out _))
            {
                errors.Add($"{at}: {key} must be a number (was '{scalar}').");
            }
        }
        else if (core == typeof(TimeSpan))
        {
            // A duration option (DurationOption): the command line's parser, the command line's message.
            if (!ValueParsers.TryParseDuration(scalar, out _))
            {
                errors.Add($"{at}: {ValueParsers.NotADuration(key, scalar)}");
            }
        }
        else if (s_choices.TryGetValue(key, out var choices) && Array.IndexOf(choices, scalar.ToLowerInvariant()) < 0)
        {
            errors.Add($"{at}: {key} must be one of {string.Join(", ", choices)} (was '{scalar}').");
        }

        if (s_paths.Contains(key) && !Path.IsPathRooted(scalar))
        {
            scalar = Path.GetFullPath(Path.Combine(directory, scalar));
        }
        else if (key == "source" && scalar.IndexOf(':', StringComparison.Ordinal) is var colon and > 0
            && scalar[..colon] is "file" or "template" or "azure-llm" && !Path.IsPathRooted(scalar[(colon + 1)..]))
        {
            scalar = scalar[..(colon + 1)] + Path.GetFullPath(Path.Combine(directory, scalar[(colon + 1)..]));
        }

        result.Add(scalar);
        return result;
    }

    private static string Normalize(string key)
    {
        var k = key.Trim().Replace('_', '-').ToLowerInvariant();
        return k switch
        {
            "headers" => "header",
            "drop-headers" => "drop-header",
            "slos" => "slo",
            "asserts" or "assertions" => "assert",
            _ => k,
        };
    }

    private static string FirstSentence(string message)
    {
        var i = message.IndexOf(" Path:", StringComparison.Ordinal);
        return i > 0 ? message[..i] : message;
    }

    /// <summary>The known key closest to <paramref name="key"/> by edit distance, when it is close (at most 2 edits).</summary>
    internal static string? Nearest(string key, IEnumerable<string> known)
    {
        string? best = null;
        var bestDistance = 3;
        foreach (var k in known)
        {
            var d = Distance(key, k);
            if (d < bestDistance)
            {
                best = k;
                bestDistance = d;
            }
        }

        return best;

        static int Distance(string a, string b)
        {
            var previous = new int[b.Length + 1];
            var current = new int[b.Length + 1];
            for (var j = 0; j <= b.Length; j++)
            {
                previous[j] = j;
            }

            for (var i = 1; i <= a.Length; i++)
            {
                current[0] = i;
                for (var j = 1; j <= b.Length; j++)
                {
                    current[j] = Math.Min(Math.Min(current[j - 1] + 1, previous[j] + 1), previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
                }

                (previous, current) = (current, previous);
            }

            return previous[b.Length];
        }
    }

    private static Node ParseYaml(string text)
    {
        var stream = new YamlStream();
        stream.Load(new StringReader(text));
        if (stream.Documents.Count == 0)
        {
            return new Node { Line = 1, Scalar = string.Empty };
        }

        return FromYaml(stream.Documents[0].RootNode);

        static Node FromYaml(YamlNode node)
        {
            var line = (int)node.Start.Line;
            switch (node)
            {
                case YamlMappingNode map:
                    var entries = new List<(string, int, Node)>();
                    foreach (var (k, v) in map.Children)
                    {
                        entries.Add((k is YamlScalarNode s ? s.Value ?? string.Empty : k.ToString(), (int)k.Start.Line, FromYaml(v)));
                    }

                    return new Node { Line = line, Entries = entries };
                case YamlSequenceNode list:
                    return new Node { Line = line, Items = [.. list.Children.Select(FromYaml)] };
                case YamlScalarNode scalar:
                    return new Node { Line = line, Scalar = scalar.Value ?? string.Empty, Quoted = scalar.Style is ScalarStyle.SingleQuoted or ScalarStyle.DoubleQuoted };
                default:
                    return new Node { Line = line, Scalar = node.ToString() };
            }
        }
    }

    /// <summary>JSON (comments and trailing commas allowed) into nodes that keep their line: Utf8JsonReader gives byte offsets, turned into lines.</summary>
    private static Node ParseJson(string text)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        var lineStarts = new List<int> { 0 };
        for (var i = 0; i < bytes.Length; i++)
        {
            if (bytes[i] == (byte)'\n')
            {
                lineStarts.Add(i + 1);
            }
        }

        var reader = new Utf8JsonReader(bytes, new JsonReaderOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
        if (!reader.Read())
        {
            return new Node { Line = 1, Scalar = string.Empty };
        }

        var root = Read(ref reader, lineStarts);
        if (reader.Read())
        {
            throw new JsonException("more than one value in the file", null, LineOf(reader.TokenStartIndex, lineStarts) - 1, 0);
        }

        return root;

        static int LineOf(long offset, List<int> starts)
        {
            var i = starts.BinarySearch((int)offset);
            return (i >= 0 ? i : ~i - 1) + 1;
        }

        static Node Read(ref Utf8JsonReader reader, List<int> starts)
        {
            var line = LineOf(reader.TokenStartIndex, starts);
            switch (reader.TokenType)
            {
                case JsonTokenType.StartObject:
                    var entries = new List<(string, int, Node)>();
                    while (reader.Read() && reader.TokenType != JsonTokenType.EndObject)
                    {
                        var key = reader.GetString()!;
                        var keyLine = LineOf(reader.TokenStartIndex, starts);
                        reader.Read();
                        entries.Add((key, keyLine, Read(ref reader, starts)));
                    }

                    return new Node { Line = line, Entries = entries };
                case JsonTokenType.StartArray:
                    var items = new List<Node>();
                    while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
                    {
                        items.Add(Read(ref reader, starts));
                    }

                    return new Node { Line = line, Items = items };
                case JsonTokenType.String:
                    return new Node { Line = line, Scalar = reader.GetString(), Quoted = true };
                case JsonTokenType.Number:
                    return new Node { Line = line, Scalar = Encoding.UTF8.GetString(reader.ValueSpan) };
                case JsonTokenType.True:
                    return new Node { Line = line, Scalar = "true" };
                case JsonTokenType.False:
                    return new Node { Line = line, Scalar = "false" };
                default:
                    return new Node { Line = line, Scalar = null, Items = null, Entries = null };
            }
        }
    }
}
