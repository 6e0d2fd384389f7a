using System.Globalization;
using System.Text;
using System.Buffers;
using System.Text.Json;
using Google.Protobuf;
using Inference.V1;
using Replay.Clients;
using Replay.Sources;

namespace Replay.Scheduling;

/// <summary>
/// Multiplies a workload's volume by cloning whole sessions: each session is sent ⌊N⌋ times, and the fractional part
/// f = N − ⌊N⌋ gives one more copy to exactly round(f × sessions) sessions, chosen evenly (session i gets one when
/// ⌊(i+1)·f⌋ &gt; ⌊i·f⌋). Clones get fresh session ids (<c>ID~k</c>) where the original id is carried: the session
/// header's value, a JSON session field's exact value (<see cref="SessionFields"/>, in the body or a WebSocket message),
/// a gRPC <c>session_id</c>; nothing else is touched. A start offset moves later by a uniform
/// draw in [0, spread), so 3x keeps the recorded shape at any scale coarser than the spread instead of sending three
/// synchronized bursts. A clone keeps the order and think times of its session, and shares with the other sessions the
/// prompt prefixes its original shared and no more (<see cref="ClonePrompts"/>; with <c>--amplify-fresh-prompts</c>,
/// nothing).
/// </summary>
internal static class Amplifier
{
    /// <summary>Amplifies <paramref name="sessions"/>; the result is ordered by start offset.</summary>
    /// <param name="sessions">The planned sessions (already time-scaled).</param>
    /// <param name="factor">N &gt; 0; 1 returns the sessions unchanged.</param>
    /// <param name="spreadMs">Width of the clones' start jitter in milliseconds, ≥ 0.</param>
    /// <param name="seed">Seed of the jitter.</param>
    /// <param name="sessionHeader">The header carrying a session id.</param>
    /// <param name="freshPrompts">Clones' prompts share nothing with other sessions (else what their original shared).</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="factor"/> is not positive or <paramref name="spreadMs"/> negative.</exception>
    public static IReadOnlyList<PlannedSession> Amplify(IReadOnlyList<PlannedSession> sessions, double factor, double spreadMs, int seed, string sessionHeader, bool freshPrompts = false)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(factor);
        ArgumentOutOfRangeException.ThrowIfNegative(spreadMs);
        if (factor == 1)
        {
            return sessions;
        }

        var whole = (int)Math.Floor(factor);
        var fraction = factor - whole;
        var random = new Random(seed);
        var prompts = factor >= 2 || fraction > 0 ? ClonePrompts.Build(sessions, freshPrompts) : null;
        var result = new List<PlannedSession>((int)Math.Ceiling(sessions.Count * factor));
        for (var i = 0; i < sessions.Count; i++)
        {
            var copies = whole + (Math.Floor((i + 1) * fraction) > Math.Floor(i * fraction) ? 1 : 0);
            var session = sessions[i];
            for (var k = 0; k < copies; k++)
            {
                result.Add(k == 0 ? session : Clone(session, k, spreadMs * random.NextDouble(), sessionHeader, prompts!));
            }
        }

        result.Sort(static (a, b) => a.StartOffsetMs.CompareTo(b.StartOffsetMs));
        return result;
    }

    /// <summary>The id of clone <paramref name="k"/> of a session.</summary>
    public static string CloneId(string id, int k) => string.Create(CultureInfo.InvariantCulture, $"{id}~{k}");

    private static PlannedSession Clone(PlannedSession session, int k, double shiftMs, string sessionHeader, ClonePrompts prompts)
    {
        var id = CloneId(session.OriginalId, k);
        var requests = new PlannedRequest[session.Requests.Count];
        var marker = ClonePrompts.Marker(id);
        for (var i = 0; i < requests.Length; i++)
        {
            requests[i] = Rewrite(prompts.Rewrite(session.Requests[i], marker), session.OriginalId, id, sessionHeader);
        }

        return session with { Id = id, StartOffsetMs = session.StartOffsetMs + shiftMs, Requests = requests };
    }

    /// <summary>The request with <paramref name="oldId"/> replaced by <paramref name="newId"/>; the same instance when the id does not occur in it.</summary>
    internal static PlannedRequest Rewrite(PlannedRequest request, string oldId, string newId, string sessionHeader)
    {
        var changed = false;
        var headers = request.Headers;
        foreach (var h in request.Headers)
        {
            if (IsSessionHeader(h.Key, sessionHeader) && h.Value == oldId)
            {
                var list = new List<KeyValuePair<string, string>>(request.Headers.Count);
                foreach (var x in request.Headers)
                {
                    list.Add(IsSessionHeader(x.Key, sessionHeader) && x.Value == oldId ? new(x.Key, newId) : x);
                }

                headers = list;
                changed = true;
                break;
            }
        }

        var body = request.Body;
        if (body is { } b && oldId.Length > 0)
        {
            var replaced = request.Protocol == RequestProtocol.Grpc ? RewriteGrpc(b, oldId, newId) : ReplaceSessionFields(b, oldId, newId);
            if (replaced is not null)
            {
                body = replaced;
                changed = true;
            }
        }

        var turns = request.Turns;
        if (turns is not null)
        {
            List<WebSocketTurn>? copy = null;
            for (var i = 0; i < turns.Count; i++)
            {
                if (!turns[i].Binary && ReplaceSessionFields(turns[i].Payload, oldId, newId) is { } payload)
                {
                    copy ??= [.. turns];
                    copy[i] = turns[i] with { Payload = payload };
                }
            }

            if (copy is not null)
            {
                turns = copy;
                changed = true;
            }
        }

        return changed ? request with { Headers = headers, Body = body, Turns = turns } : request;
    }

    /// <summary>The JSON properties that carry a session id (exact name, any depth): only their values are rewritten.</summary>
    internal static readonly string[] SessionFields = ["session_id", "sessionId", "session", "conversation_id", "conversationId", "user"];

    private static bool IsSessionHeader(string name, string sessionHeader) =>
        name.Equals(sessionHeader, StringComparison.OrdinalIgnoreCase) || name.Equals("x-session-id", StringComparison.OrdinalIgnoreCase);

    /// <summary>
    /// A JSON text with the string value of each session field (<see cref="SessionFields"/>) that equals
    /// <paramref name="oldId"/> exactly replaced by <paramref name="newId"/>; every other byte is kept as recorded. Null
    /// when nothing is replaced or the text is not JSON. (A plain substring replacement rewrote <c>"role":"user"</c> and
    /// <c>"max_tokens":16</c> for sessions named <c>user</c> and <c>1</c>.)
    /// </summary>
    internal static byte[]? ReplaceSessionFields(ReadOnlyMemory<byte> bytes, string oldId, string newId)
    {
        var span = bytes.Span;
        List<(int Start, int Length)>? hits = null;
        try
        {
            var reader = new Utf8JsonReader(span, new JsonReaderOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
            var inSessionField = false;
            while (reader.Read())
            {
                switch (reader.TokenType)
                {
                    case JsonTokenType.PropertyName:
                        inSessionField = false;
                        foreach (var field in SessionFields)
                        {
                            inSessionField |= reader.ValueTextEquals(field);
                        }

                        break;
                    case JsonTokenType.String when inSessionField && reader.ValueTextEquals(oldId):
                        (hits ??= []).Add(((int)reader.TokenStartIndex, reader.ValueSpan.Length + 2)); // the quotes and the raw value
                        inSessionField = false;
                        break;
                    default:
                        inSessionField = false;
                        break;
                }
            }
        }
        catch (JsonException)
        {
            return null; // not JSON: sent as recorded
        }

        if (hits is null)
        {
            return null;
        }

        var replacement = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(newId));
        var output = new ArrayBufferWriter<byte>(span.Length + (hits.Count * replacement.Length));
        var at = 0;
        foreach (var (start, length) in hits)
        {
            output.Write(span[at..start]);
            output.Write(replacement);
            at = start + length;
        }

        output.Write(span[at..]);
        return output.WrittenSpan.ToArray();
    }

    /// <summary>A gRPC body of <c>inference.v1.GenerateRequest</c> with its <c>session_id</c> replaced (protobuf lengths change, so it is re-encoded).</summary>
    private static byte[]? RewriteGrpc(ReadOnlyMemory<byte> framed, string oldId, string newId)
    {
        if (!GrpcFraming.TryUnframe(framed.Span, out var message))
        {
            return null;
        }

        try
        {
            var request = GenerateRequest.Parser.ParseFrom(message);
            if (request.SessionId != oldId)
            {
                return null;
            }

            request.SessionId = newId;
            return GrpcFraming.Frame(request);
        }
        catch (InvalidProtocolBufferException)
        {
            return null; // another message type: sent as recorded
        }
    }
}
