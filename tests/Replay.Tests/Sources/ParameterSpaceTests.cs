using System.Text;
using System.Text.Json;
using Replay.Sources;

namespace Replay.Tests.Sources;

/// <summary>Template parameter spaces: equivalence classes and boundary values as levels, reduced to pairwise cases.</summary>
public sealed class ParameterSpaceTests
{
    public static TheoryData<int[], int, double> Spaces => new()
    {
        // levels per parameter, pairwise cases (IPOG, deterministic), full product
        { [7, 3, 3, 2, 2], 22, 252 },          // the template below: at least 7 × 3 = 21 are needed
        { [3, 3, 3, 3, 3, 3, 3, 3, 3, 3], 20, 59_049 },
        { [4, 4, 4, 4, 4, 4], 28, 4_096 },
        { [2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2], 14, 1_048_576 },
        { [5], 5, 5 },
    };

    [Theory]
    [MemberData(nameof(Spaces))]
    public void Pairwise_cases_cover_every_pair_with_far_fewer_cases_than_the_full_product(int[] levels, int expected, double product)
    {
        var cases = Pairwise.Cases(levels);

        Assert.Equal(0, Pairwise.MissingPairs(levels, cases));
        Assert.Equal(expected, cases.Count);
        Assert.Equal(product, levels.Aggregate(1.0, static (p, l) => p * l));
        Assert.All(cases, c => Assert.True(c.Select((v, i) => v >= 0 && v < levels[i]).All(static ok => ok)));
        if (levels.Length > 2)
        {
            Assert.True(cases.Count * 10 <= product, $"{cases.Count} cases for a product of {product}");
        }
    }

    private const string Template = """
        { "requests": [
          { "name": "chat", "weight": 3, "stream": "{{stream}}",
            "body": { "model": "{{model}}", "messages": [{ "role": "user", "content": "tell me about {{topic}}" }],
                      "max_tokens": "{{max_tokens}}", "temperature": "{{temperature}}" },
            "parameters": {
              "max_tokens": { "classes": { "short": [2, 3, 4], "typical": [16, 32] }, "range": [1, 64] },
              "temperature": { "values": [0, 0.7], "boundaries": [2] },
              "topic": { "classes": { "weather": ["rain", "snow", "fog"], "code": ["C#", "Rust"], "history": ["Rome"] } },
              "stream": { "values": [true, false] },
              "model": { "values": ["sim-llm", "other"] } } },
          { "name": "health", "method": "GET", "path": "/health" } ] }
        """;

    [Fact]
    public async Task A_template_sends_each_pairwise_case_with_class_values_drawn_by_seed_and_boundaries_as_given()
    {
        using var dir = TestHost.CreateTempDirectory();
        var path = dir.Combine("space.json");
        await File.WriteAllTextAsync(path, Template);

        var workload = await TemplateSource.LoadAsync(path, new SourceSettings { Seed = 1 }, CancellationToken.None);
        var again = await TemplateSource.LoadAsync(path, new SourceSettings { Seed = 1 }, CancellationToken.None);
        var other = await TemplateSource.LoadAsync(path, new SourceSettings { Seed = 2 }, CancellationToken.None);

        Assert.Contains("chat: 5 parameters, 252 combinations, 22 pairwise cases", workload.Description, StringComparison.Ordinal);
        var chats = Bodies(workload);
        Assert.Equal(22, chats.Distinct().Count()); // every case is sent
        Assert.Equal(Bodies(again), chats);        // the same seed draws the same class members
        Assert.NotEqual(Bodies(other), chats);     // another seed draws others
        var maxTokens = chats.Select(static b => JsonDocument.Parse(b).RootElement.GetProperty("max_tokens")).ToList();
        Assert.All(maxTokens, static m => Assert.Equal(JsonValueKind.Number, m.ValueKind)); // "{{max_tokens}}" keeps the number type
        var values = maxTokens.Select(static m => m.GetInt32()).ToHashSet();
        Assert.Superset(new HashSet<int> { 1, 2, 32, 63, 64 }, values); // range [1, 64]: min, min + 1, middle, max - 1, max
        Assert.Contains(values, static v => v is 2 or 3 or 4);       // the "short" class
        Assert.Contains(values, static v => v is 16 or 32);          // the "typical" class
        var topics = chats.Select(static b => JsonDocument.Parse(b).RootElement.GetProperty("messages")[0].GetProperty("content").GetString()!).ToHashSet();
        Assert.All(topics, static t => Assert.Matches("^tell me about (rain|snow|fog|C#|Rust|Rome)$", t));
        Assert.Contains(workload.Sessions, static s => s.Requests[0].Route == "health");
        Assert.Contains(workload.Sessions, static s => s.Requests[0].Streamed);
        Assert.Contains(workload.Sessions, static s => s.Requests[0].Route == "chat" && !s.Requests[0].Streamed);

        static List<string> Bodies(Workload w) => [.. w.Sessions.Where(static s => s.Requests[0].Route == "chat").Select(static s => Encoding.UTF8.GetString(s.Requests[0].Body!.Value.Span)).Distinct()];
    }

    [Fact]
    public async Task A_malformed_parameter_space_is_refused_naming_each_place()
    {
        using var dir = TestHost.CreateTempDirectory();
        var path = dir.Combine("bad.json");
        await File.WriteAllTextAsync(path, """
            { "requests": [ { "body": { "max_tokens": "{{n}}" }, "combinations": "some",
              "parameters": { "n": { "range": [9, 1] }, "m": { "classes": { "empty": [] } }, "k": { "levels": [1] } } } ] }
            """);

        var ex = await Assert.ThrowsAsync<InputException>(() => TemplateSource.LoadAsync(path, new SourceSettings(), CancellationToken.None));

        Assert.Contains("requests[0].combinations must be \"pairwise\" or \"all\"", ex.Message, StringComparison.Ordinal);
        Assert.Contains("requests[0].parameters.n.range must be [min, max]", ex.Message, StringComparison.Ordinal);
        Assert.Contains("requests[0].parameters.m.classes.empty must be a non-empty array", ex.Message, StringComparison.Ordinal);
        Assert.Contains("requests[0].parameters.k.levels is not a parameter field", ex.Message, StringComparison.Ordinal);
    }
}
