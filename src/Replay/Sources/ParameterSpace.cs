using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Replay.Sources;

/// <summary>
/// A template request's parameter space: named parameters, each with levels, and the cases (one level per parameter)
/// that a run sends, with the request's <c>{{name}}</c> placeholders filled in.
/// </summary>
/// <remarks>
/// <para>A parameter's levels come from (in this order, duplicates dropped):</para>
/// <list type="bullet">
/// <item><c>values</c>: each value is a level;</item>
/// <item><c>classes</c> ({name: [values]}): each equivalence class is one level; a case that uses it gets a value
/// drawn from the class (seeded by <c>--seed</c> and the case, so a run repeats), since any member of a class should
/// behave like the others (equivalence partitioning, Myers, <i>The Art of Software Testing</i>, ch. 4);</item>
/// <item><c>range</c> [min, max]: the boundary values min, min + 1, max − 1, max and a nominal middle value (for
/// whole numbers; min, middle and max otherwise), where faults cluster (boundary-value analysis, ibid.);</item>
/// <item><c>boundaries</c>: further values to try as levels of their own.</item>
/// </list>
/// <para><c>combinations</c>: <c>pairwise</c> (default; <see cref="Pairwise"/>) or <c>all</c> (the full product,
/// at most 100,000 cases). A string that is exactly <c>{{name}}</c> becomes the value with its JSON type (a number
/// stays a number); a string containing <c>{{name}}</c> gets the value's text.</para>
/// </remarks>
internal sealed class ParameterSpace
{
    private const int MaxCases = 100_000;

    private ParameterSpace(List<Parameter> parameters, bool all)
    {
        Parameters = parameters;
        All = all;
    }

    /// <summary>One level of a parameter: a fixed value, or an equivalence class to draw from.</summary>
    internal sealed record Level(string Label, IReadOnlyList<JsonNode?> Values);

    /// <summary>A parameter and its levels.</summary>
    internal sealed record Parameter(string Name, IReadOnlyList<Level> Levels);

    /// <summary>The parameters, in the file's order.</summary>
    public IReadOnlyList<Parameter> Parameters { get; }

    /// <summary>True for <c>combinations: all</c>.</summary>
    public bool All { get; }

    /// <summary>The size of the full product of the levels.</summary>
    public double FullProduct => Parameters.Aggregate(1.0, static (p, x) => p * x.Levels.Count);

    /// <summary>Reads <c>parameters</c> and <c>combinations</c> of a template request; null (and errors) when they are malformed.</summary>
    public static ParameterSpace? Parse(JsonElement request, string at, List<string> errors)
    {
        if (!request.TryGetProperty("parameters", out var p))
        {
            return null;
        }

        var before = errors.Count;
        if (p.ValueKind != JsonValueKind.Object || !p.EnumerateObject().Any())
        {
            errors.Add($"{at}.parameters must be a non-empty object of parameters ({{\"name\": {{\"values\": [...]}}}}).");
            return null;
        }

        var all = false;
        if (request.TryGetProperty("combinations", out var c))
        {
            var text = c.ValueKind == JsonValueKind.String ? c.GetString() : null;
            if (text is not ("pairwise" or "all"))
            {
                errors.Add($"{at}.combinations must be \"pairwise\" or \"all\" (was {c.GetRawText()}).");
            }

            all = text == "all";
        }

        var parameters = new List<Parameter>();
        foreach (var property in p.EnumerateObject())
        {
            var where = $"{at}.parameters.{property.Name}";
            var spec = property.Value;
            if (spec.ValueKind != JsonValueKind.Object)
            {
                errors.Add($"{where} must be an object with values, classes, range and/or boundaries.");
                continue;
            }

            var levels = new List<Level>();
            var seen = new HashSet<string>(StringComparer.Ordinal);
            void Add(Level level)
            {
                if (seen.Add(level.Label))
                {
                    levels.Add(level);
                }
            }

            foreach (var field in spec.EnumerateObject())
            {
                switch (field.Name)
                {
                    case "values" or "boundaries":
                        if (field.Value.ValueKind != JsonValueKind.Array || field.Value.GetArrayLength() == 0)
                        {
                            errors.Add($"{where}.{field.Name} must be a non-empty array.");
                            break;
                        }

                        foreach (var v in field.Value.EnumerateArray())
                        {
                            Add(new Level(v.GetRawText(), [JsonNode.Parse(v.GetRawText())]));
                        }

                        break;
                    case "classes":
                        if (field.Value.ValueKind != JsonValueKind.Object || !field.Value.EnumerateObject().Any())
                        {
                            errors.Add($"{where}.classes must be an object of named classes, each a non-empty array of values.");
                            break;
                        }

                        foreach (var cls in field.Value.EnumerateObject())
                        {
                            if (cls.Value.ValueKind != JsonValueKind.Array || cls.Value.GetArrayLength() == 0)
                            {
                                errors.Add($"{where}.classes.{cls.Name} must be a non-empty array of values.");
                                continue;
                            }

                            Add(new Level("class " + cls.Name, [.. cls.Value.EnumerateArray().Select(static v => JsonNode.Parse(v.GetRawText()))]));
                        }

                        break;
                    case "range":
                        if (field.Value.ValueKind != JsonValueKind.Array || field.Value.GetArrayLength() != 2
                            || field.Value[0].ValueKind != JsonValueKind.Number || field.Value[1].ValueKind != JsonValueKind.Number
                            || field.Value[0].GetDouble() > field.Value[1].GetDouble())
                        {
                            errors.Add($"{where}.range must be [min, max], two numbers with min <= max (was {field.Value.GetRawText()}).");
                            break;
                        }

                        foreach (var v in Boundaries(field.Value[0], field.Value[1]))
                        {
                            Add(new Level(v.ToJsonString(), [v]));
                        }

                        break;
                    default:
                        errors.Add($"{where}.{field.Name} is not a parameter field (values, classes, range, boundaries).");
                        break;
                }
            }

            if (levels.Count == 0 && errors.Count == before)
            {
                errors.Add($"{where} has no level: give values, classes, range or boundaries.");
            }

            parameters.Add(new Parameter(property.Name, levels));
        }

        if (errors.Count > before)
        {
            return null;
        }

        var space = new ParameterSpace(parameters, all);
        if (all && space.FullProduct > MaxCases)
        {
            errors.Add(string.Create(CultureInfo.InvariantCulture, $"{at}: combinations \"all\" would make {space.FullProduct:0} cases (at most {MaxCases}); use \"pairwise\"."));
            return null;
        }

        return space;
    }

    /// <summary>The cases: one level index per parameter.</summary>
    public List<int[]> Cases()
    {
        var levels = Parameters.Select(static p => p.Levels.Count).ToArray();
        if (!All)
        {
            return Pairwise.Cases(levels);
        }

        var cases = new List<int[]> { new int[levels.Length] };
        for (var p = 0; p < levels.Length; p++)
        {
            var next = new List<int[]>(cases.Count * levels[p]);
            foreach (var c in cases)
            {
                for (var v = 0; v < levels[p]; v++)
                {
                    var copy = (int[])c.Clone();
                    copy[p] = v;
                    next.Add(copy);
                }
            }

            cases = next;
        }

        return cases;
    }

    /// <summary>The request with case <paramref name="caseIndex"/>'s values put into its placeholders (and without <c>parameters</c>/<c>combinations</c>).</summary>
    public JsonElement Instantiate(JsonElement request, int[] levels, int caseIndex, int seed)
    {
        var values = new Dictionary<string, JsonNode?>(StringComparer.Ordinal);
        for (var p = 0; p < Parameters.Count; p++)
        {
            var level = Parameters[p].Levels[levels[p]];
            var draw = level.Values.Count == 1 ? 0 : new Random(StableSeed.Mix(seed, caseIndex, p)).Next(level.Values.Count);
            values[Parameters[p].Name] = level.Values[draw];
        }

        var node = JsonNode.Parse(request.GetRawText())!.AsObject();
        node.Remove("parameters");
        node.Remove("combinations");
        var filled = Substitute(node, values);
        using var document = JsonDocument.Parse(filled!.ToJsonString());
        return document.RootElement.Clone();
    }

    private static JsonNode? Substitute(JsonNode? node, Dictionary<string, JsonNode?> values)
    {
        switch (node)
        {
            case JsonObject o:
                var obj = new JsonObject();
                foreach (var (k, v) in o)
                {
                    obj[k] = Substitute(v, values);
                }

                return obj;
            case JsonArray a:
                var array = new JsonArray();
                foreach (var v in a)
                {
                    array.Add(Substitute(v, values));
                }

                return array;
            case JsonValue v when v.GetValueKind() == JsonValueKind.String:
                var text = v.GetValue<string>();
                if (text.StartsWith("{{", StringComparison.Ordinal) && text.EndsWith("}}", StringComparison.Ordinal) && values.TryGetValue(text[2..^2].Trim(), out var whole))
                {
                    return whole?.DeepClone();
                }

                foreach (var (name, value) in values)
                {
                    text = text.Replace("{{" + name + "}}", value is JsonValue jv && jv.GetValueKind() == JsonValueKind.String ? jv.GetValue<string>() : value?.ToJsonString() ?? "null", StringComparison.Ordinal);
                }

                return JsonValue.Create(text);
            default:
                return node?.DeepClone();
        }
    }

    private static IEnumerable<JsonNode> Boundaries(JsonElement min, JsonElement max)
    {
        if (min.TryGetInt64(out var lo) && max.TryGetInt64(out var hi))
        {
            foreach (var v in new[] { lo, lo + 1, lo + ((hi - lo) / 2), hi - 1, hi }.Where(v => v >= lo && v <= hi).Distinct())
            {
                yield return JsonValue.Create(v);
            }

            yield break;
        }

        var a = min.GetDouble();
        var b = max.GetDouble();
        foreach (var v in new[] { a, (a + b) / 2, b }.Distinct())
        {
            yield return JsonValue.Create(v);
        }
    }
}
