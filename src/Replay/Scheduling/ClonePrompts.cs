using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Google.Protobuf;
using Inference.V1;
using Replay.Clients;
using Replay.Sources;

namespace Replay.Scheduling;

/// <summary>
/// The prompts of amplified clones. A clone must share with the rest of the traffic what its original shared (a
/// system prompt, few-shot examples, a common document) and no more: an exact copy would find its original's whole
/// prompt in a model server's prefix cache, and 3x amplification would show a hit rate the real traffic never had.
/// </summary>
/// <remarks>
/// <para>Every prompt text of the recording (each chat message's <c>content</c> string, a completion's <c>prompt</c>
/// string, a gRPC <c>GenerateRequest.prompt</c>) is indexed with the sessions it occurs in. A text's <b>shared
/// length</b> is the longest prefix it has in common with a text of another session: its whole length when another
/// session has the same text, else the longest common prefix with its nearest neighbours from other sessions in
/// ordinal order (in a sorted list the common prefix of two entries is the minimum over the adjacent pairs between
/// them, so the nearest other-session entry on each side gives the maximum).</para>
/// <para>A clone writes each text with its <see cref="Marker"/> (<c>~</c>, 8 hex digits of its session id's hash, a space) inserted at its shared length (nothing when the whole text is
/// shared), so the clone follows its original up to where the original parted from other sessions and then parts
/// too. The insertion depends only on the text, so a later turn that resends an earlier message resends it rewritten
/// the same way: a clone's own conversation still shares its turns' prefixes. With <see cref="Fresh"/> the marker goes
/// at the start of every text: the clone shares nothing with any other session. A clone's prompt is a few tokens
/// longer (the marker). WebSocket messages and prompts built at send time (trace rows) are left as they are.</para>
/// </remarks>
internal sealed class ClonePrompts
{
    private readonly Dictionary<string, int> _shared;

    private ClonePrompts(Dictionary<string, int> shared, bool fresh)
    {
        _shared = shared;
        Fresh = fresh;
    }

    /// <summary>Clones share nothing (<c>--amplify-fresh-prompts</c>).</summary>
    public bool Fresh { get; }

    /// <summary>Indexes the prompt texts of <paramref name="sessions"/>.</summary>
    public static ClonePrompts Build(IReadOnlyList<PlannedSession> sessions, bool fresh)
    {
        if (fresh)
        {
            return new ClonePrompts([], fresh: true);
        }

        // text → the one session it occurs in, or null when it occurs in several.
        var owners = new Dictionary<string, string?>(StringComparer.Ordinal);
        foreach (var session in sessions)
        {
            foreach (var request in session.Requests)
            {
                foreach (var text in Texts(request))
                {
                    if (!owners.TryGetValue(text, out var owner))
                    {
                        owners[text] = session.OriginalId;
                    }
                    else if (owner is not null && owner != session.OriginalId)
                    {
                        owners[text] = null;
                    }
                }
            }
        }

        var sorted = owners.Keys.ToArray();
        Array.Sort(sorted, StringComparer.Ordinal);
        var shared = new Dictionary<string, int>(sorted.Length, StringComparer.Ordinal);
        for (var i = 0; i < sorted.Length; i++)
        {
            var text = sorted[i];
            var owner = owners[text];
            if (owner is null)
            {
                shared[text] = text.Length;
                continue;
            }

            var best = 0;
            for (var j = i - 1; j >= 0; j--)
            {
                if (owners[sorted[j]] != owner)
                {
                    best = Math.Max(best, CommonPrefix(text, sorted[j]));
                    break;
                }
            }

            for (var j = i + 1; j < sorted.Length; j++)
            {
                if (owners[sorted[j]] != owner)
                {
                    best = Math.Max(best, CommonPrefix(text, sorted[j]));
                    break;
                }
            }

            shared[text] = best;
        }

        return new ClonePrompts(shared, fresh: false);
    }

    /// <summary>How much of <paramref name="text"/> a clone keeps before its marker.</summary>
    public int SharedLength(string text) => Fresh ? 0 : _shared.TryGetValue(text, out var n) ? n : 0;

    /// <summary>
    /// The marker a clone inserts: <c>~</c> and 8 hex digits of the FNV-1a hash of its session id, then a space. Unique
    /// per clone session (not per copy number: clones 1 of two sessions would otherwise share <c>~1 </c> and the text
    /// after it, which their originals never shared).
    /// </summary>
    public static string Marker(string cloneId)
    {
        var hash = 2166136261u;
        foreach (var ch in cloneId)
        {
            hash = (hash ^ ch) * 16777619u;
        }

        return string.Create(System.Globalization.CultureInfo.InvariantCulture, $"~{hash:x8} ");
    }

    /// <summary>The clone's version of <paramref name="text"/>, given its <paramref name="marker"/>.</summary>
    public string Rewrite(string text, string marker)
    {
        var at = SharedLength(text);
        return text.Length == 0 || at >= text.Length ? text : string.Concat(text.AsSpan(0, at), marker, text.AsSpan(at));
    }

    /// <summary>The clone's version of <paramref name="request"/> (<paramref name="marker"/> from <see cref="Marker"/>): the same instance when it carries no prompt text to change.</summary>
    public PlannedRequest Rewrite(PlannedRequest request, string marker)
    {
        if (request.Body is not { } body)
        {
            return request;
        }

        if (request.Protocol == RequestProtocol.Grpc)
        {
            if (!GrpcFraming.TryUnframe(body.Span, out var message))
            {
                return request;
            }

            try
            {
                var generate = GenerateRequest.Parser.ParseFrom(message);
                var prompt = Rewrite(generate.Prompt, marker);
                if (prompt == generate.Prompt)
                {
                    return request;
                }

                generate.Prompt = prompt;
                return request with { Body = GrpcFraming.Frame(generate) };
            }
            catch (InvalidProtocolBufferException)
            {
                return request;
            }
        }

        if (request.Protocol != RequestProtocol.Http || ParseObject(body) is not { } json)
        {
            return request;
        }

        var changed = false;
        if (json["messages"] is JsonArray messages)
        {
            foreach (var m in messages)
            {
                if (m is JsonObject o && o["content"] is JsonValue v && v.TryGetValue<string>(out var content))
                {
                    var rewritten = Rewrite(content, marker);
                    if (rewritten != content)
                    {
                        o["content"] = rewritten;
                        changed = true;
                    }
                }
            }
        }

        if (json["prompt"] is JsonValue p && p.TryGetValue<string>(out var promptText))
        {
            var rewritten = Rewrite(promptText, marker);
            if (rewritten != promptText)
            {
                json["prompt"] = rewritten;
                changed = true;
            }
        }

        return changed ? request with { Body = Encoding.UTF8.GetBytes(json.ToJsonString()) } : request;
    }

    private static IEnumerable<string> Texts(PlannedRequest request)
    {
        if (request.Body is not { } body)
        {
            yield break;
        }

        if (request.Protocol == RequestProtocol.Grpc)
        {
            string? prompt = null;
            if (GrpcFraming.TryUnframe(body.Span, out var message))
            {
                try
                {
                    prompt = GenerateRequest.Parser.ParseFrom(message).Prompt;
                }
                catch (InvalidProtocolBufferException)
                {
                }
            }

            if (!string.IsNullOrEmpty(prompt))
            {
                yield return prompt;
            }

            yield break;
        }

        if (request.Protocol != RequestProtocol.Http || ParseObject(body) is not { } json)
        {
            yield break;
        }

        if (json["messages"] is JsonArray messages)
        {
            foreach (var m in messages)
            {
                if (m is JsonObject o && o["content"] is JsonValue v && v.TryGetValue<string>(out var content))
                {
                    yield return content;
                }
            }
        }

        if (json["prompt"] is JsonValue p && p.TryGetValue<string>(out var promptText))
        {
            yield return promptText;
        }
    }

    private static JsonObject? ParseObject(ReadOnlyMemory<byte> body)
    {
        var span = body.Span.TrimStart(" \t\r\n"u8);
        if (span.IsEmpty || span[0] != (byte)'{')
        {
            return null;
        }

        try
        {
            return JsonNode.Parse(body.Span) as JsonObject;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    private static int CommonPrefix(string a, string b) => a.AsSpan().CommonPrefixLength(b);
}
