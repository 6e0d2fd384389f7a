using System.Text;
using System.Text.Json;
using Replay.Scheduling;
using Replay.Sources;

namespace Replay.Tests.Scheduling;

/// <summary>Amplified clones share the prompt prefixes their original shared, and no more (or nothing, --amplify-fresh-prompts).</summary>
public sealed class ClonePromptsTests
{
    private const string System = "You are a helpful assistant. Answer briefly.";

    private static PlannedRequest Chat(string session, params (string Role, string Text)[] messages) => new()
    {
        Protocol = RequestProtocol.Http,
        PathAndQuery = "/v1/chat/completions",
        Route = "chat",
        Headers = [new("x-session-id", session), new("content-type", "application/json")],
        Body = JsonSerializer.SerializeToUtf8Bytes(new { model = "m", messages = messages.Select(static m => new { role = m.Role, content = m.Text }) }),
    };

    private static List<PlannedSession> Recording() =>
    [
        .. new[] { ("s0", "Tell me about rivers please"), ("s1", "Tell me about mountains") }.Select(static (x, i) => new PlannedSession
        {
            Id = x.Item1,
            OriginalId = x.Item1,
            StartOffsetMs = i * 10,
            Requests =
            [
                Chat(x.Item1, ("system", System), ("user", x.Item2)),
                Chat(x.Item1, ("system", System), ("user", x.Item2), ("assistant", $"answer for {x.Item1}"), ("user", "And more?")),
            ],
        }),
    ];

    private static List<(string Role, string Text)> Messages(PlannedRequest r)
    {
        using var json = JsonDocument.Parse(r.Body!.Value);
        return [.. json.RootElement.GetProperty("messages").EnumerateArray().Select(static m => (m.GetProperty("role").GetString()!, m.GetProperty("content").GetString()!))];
    }

    [Fact]
    public void A_clone_shares_what_its_original_shared_and_parts_where_it_parted()
    {
        var result = Amplifier.Amplify(Recording(), 2, 0, 1, "x-session-id");
        var clone = result.Single(static s => s.Id == "s0~1");
        var original = result.Single(static s => s.Id == "s0");
        var first = Messages(clone.Requests[0]);
        var second = Messages(clone.Requests[1]);

        // The system prompt every session sent stays as it is: the clone finds it cached, as its original did.
        Assert.Equal(("system", System), first[0]);

        // The user message shared "Tell me about " with the other session: the clone keeps that and parts right after.
        var marker = ClonePrompts.Marker("s0~1");
        Assert.Matches("^~[0-9a-f]{8} $", marker);
        Assert.Equal(("user", $"Tell me about {marker}rivers please"), first[1]);
        Assert.NotEqual(Messages(original.Requests[0])[1], first[1]);

        // The clone's own conversation keeps its structure: turn 2 resends turn 1's messages exactly as the clone sent them.
        Assert.Equal(first, second.Take(2));
        Assert.Equal(("assistant", $"answer for s{marker}0"), second[2]); // parted from "answer for s1" after "answer for s"
        Assert.Equal(("user", "And more?"), second[3]); // every session sent it
    }

    [Fact]
    public void Fresh_prompts_share_nothing()
    {
        var result = Amplifier.Amplify(Recording(), 2, 0, 1, "x-session-id", freshPrompts: true);
        var clone = result.Single(static s => s.Id == "s1~1");
        var first = Messages(clone.Requests[0]);
        var marker = ClonePrompts.Marker("s1~1");
        Assert.Equal(marker + System, first[0].Text);
        Assert.Equal(marker + "Tell me about mountains", first[1].Text);
        Assert.Equal(first, Messages(clone.Requests[1]).Take(2));
    }
}
