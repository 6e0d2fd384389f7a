using Contracts.Recording;

namespace Replay.Sources;

/// <summary>
/// Turns a recording (from any <see cref="IRecordingStore"/>) into sessions: exchanges grouped by session id and
/// ordered by sequence; each session starts at its first exchange's offset from the recording's first exchange;
/// each later exchange waits for the previous one's response plus the recorded think time
/// (<c>start[k] − (start[k−1] + duration[k−1])</c>, never negative). A WebSocket exchange becomes one connection whose
/// client messages (<c>dir = in</c>) are the turns, each sent after the server's frames before it plus the recorded gap.
/// </summary>
/// <remarks>
/// An unreadable record (corrupt JSON, unknown schema version) or one that cannot be replayed (a request body cut at
/// the capture cap) is skipped and counted, never fatal. <c>--duration</c> keeps the exchanges that started within
/// the first part of the recording (after <c>--max-gap</c> shortened its idle stretches); <c>--limit</c> the first N
/// exchanges by start time. Records stored out of time order are sorted, and counted (<see cref="OutOfOrder"/>).
/// </remarks>
internal static class RecordingSource
{
    private readonly record struct Item(ExchangeRecord Record, long StartMicros);

    /// <summary>Reads <paramref name="name"/> from <paramref name="store"/>.</summary>
    /// <exception cref="InputException">The recording does not exist, or holds no exchange that can be replayed.</exception>
    public static async Task<Workload> LoadAsync(IRecordingStore store, string storeDescription, string name, SourceSettings settings, CancellationToken cancellationToken)
    {
        if (!RecordingNames.IsValid(name))
        {
            throw new InputException($"--recording '{name}' is not a valid recording name (1 to {RecordingNames.MaxLength} letters, digits, '-', '_' or '.').");
        }

        var info = await store.GetAsync(name, cancellationToken).ConfigureAwait(false);
        if (info is null)
        {
            var known = await store.ListAsync(cancellationToken).ConfigureAwait(false);
            var names = known.Count == 0 ? "none" : string.Join(", ", known.Select(static r => r.Name));
            throw new InputException($"--recording '{name}' not found in the {storeDescription} (recordings there: {names}).");
        }

        var skipped = new List<SkippedRecord>();
        long skippedTotal = 0;
        void Skip(string position, string reason)
        {
            skippedTotal++;
            if (skipped.Count < SkippedRecord.MaxKept)
            {
                skipped.Add(new SkippedRecord(position, reason));
            }
        }

        var items = new List<Item>();
        await foreach (var stored in store.ReadExchangesAsync(name, cancellationToken).ConfigureAwait(false))
        {
            if (stored.Record is not { } record)
            {
                Skip(stored.Position, stored.Error ?? "unreadable record");
                continue;
            }

            if (Unreplayable(record) is { } why)
            {
                Skip(stored.Position, why);
                continue;
            }

            items.Add(new Item(record, record.Timing.StartUnixMicros));
        }

        if (items.Count == 0)
        {
            throw new InputException(skippedTotal > 0
                ? $"--recording '{name}' has no exchange that can be replayed ({skippedTotal} skipped; first: {skipped[0].Position}: {skipped[0].Reason})."
                : $"--recording '{name}' is empty.");
        }

        var outOfOrder = SourceTimeline.Sort(items, static i => i.StartMicros);
        var starts = new long[items.Count];
        var durations = new long[items.Count];
        for (var i = 0; i < items.Count; i++)
        {
            starts[i] = items[i].StartMicros;
            durations[i] = (long)(items[i].Record.Timing.DurationMs * 1000);
        }

        var moved = SourceTimeline.CloseGaps(starts, durations, settings.MaxGap is { } gap ? (long)(gap.TotalMilliseconds * 1000) : null, out var removedMicros);
        for (var i = 0; i < items.Count; i++)
        {
            items[i] = items[i] with { StartMicros = moved[i] };
        }

        var origin = items[0].StartMicros;
        var cutoff = settings.SourceDuration is { } d ? origin + (long)(d.TotalMilliseconds * 1000) : long.MaxValue;
        var limit = settings.Limit ?? long.MaxValue;

        var bySession = new Dictionary<string, List<Item>>(StringComparer.Ordinal);
        var order = new List<string>();
        long taken = 0, lastStart = origin;
        foreach (var item in items)
        {
            if (item.StartMicros >= cutoff || taken >= limit)
            {
                break;
            }

            taken++;
            lastStart = item.StartMicros;
            removedMicros = starts[(int)taken - 1] - moved[(int)taken - 1]; // what was cut before the last record taken
            if (!bySession.TryGetValue(item.Record.SessionId, out var list))
            {
                bySession[item.Record.SessionId] = list = [];
                order.Add(item.Record.SessionId);
            }

            list.Add(item);
        }

        var sessions = new List<PlannedSession>(order.Count);
        foreach (var id in order)
        {
            var exchanges = bySession[id];
            exchanges.Sort(static (a, b) => a.Record.Sequence != b.Record.Sequence ? a.Record.Sequence.CompareTo(b.Record.Sequence) : a.StartMicros.CompareTo(b.StartMicros));
            var requests = new List<PlannedRequest>(exchanges.Count);
            Item? previous = null;
            foreach (var x in exchanges)
            {
                var think = previous is not { } p ? 0 : Math.Max(0, ((x.StartMicros - p.StartMicros) / 1000.0) - p.Record.Timing.DurationMs);
                requests.Add(ToRequest(x.Record, think, settings.WebSocketMode));
                previous = x;
            }

            sessions.Add(new PlannedSession
            {
                Id = id,
                OriginalId = id,
                StartOffsetMs = (exchanges[0].StartMicros - origin) / 1000.0,
                Requests = requests,
            });
        }

        sessions.Sort(static (a, b) => a.StartOffsetMs.CompareTo(b.StartOffsetMs));
        return new Workload($"{storeDescription}, recording {name}", sessions, skipped, skippedTotal)
        {
            OutOfOrder = outOfOrder,
            SourceTimeRemovedMs = removedMicros / 1000.0,
            SpanMs = (lastStart - origin) / 1000.0,
        };
    }

    /// <summary>
    /// The skip reason of a WebSocket session the gateway refused (closed with 1013 or 1008) before any client message:
    /// a recorded refusal, counted in the workload's skipped exchanges under this reason (docs/replay.md).
    /// </summary>
    internal const string RefusedWebSocketReason = "recorded refusal: WebSocket session closed by the gateway (1013/1008) before any client message";

    private static bool RefusalClose(string? text) =>
        text is not null && text.Length >= 4 && int.TryParse(text.AsSpan(0, 4), System.Globalization.CultureInfo.InvariantCulture, out var code)
        && Contracts.Wire.GatewayCloseReason.IsRefusalStatus(code);

    /// <summary>Why an exchange cannot be sent again, or null when it can.</summary>
    private static string? Unreplayable(ExchangeRecord x)
    {
        if (x.Request.Body is { Truncated: true } body)
        {
            return $"request body was cut at the capture cap ({body.Length} bytes in full); it cannot be sent again";
        }

        if (x.Protocol == Protocols.WebSocket)
        {
            if (x.Units is null || !x.Units.Any(static u => u.Dir == Directions.ToServer && u.Kind is UnitKinds.Text or UnitKinds.Binary))
            {
                // Stranger review of issue 16: a session the gateway accepted only to close it (1013 overload, 1008 rate
                // limit) before any client message has nothing to send again; it is counted under its own reason, not
                // mixed with sessions whose messages are missing.
                if (x.Outcome == Outcomes.Refused || x.Units?.Any(static u => u.Dir == Directions.ToClient && u.Kind == UnitKinds.Close && RefusalClose(u.Text)) == true)
                {
                    return RefusedWebSocketReason;
                }

                return "WebSocket exchange without client messages";
            }

            if (x.Units.Any(static u => u.Dir == Directions.ToServer && u.Truncated))
            {
                return "a WebSocket client message was cut at the capture cap";
            }
        }
        else if (x.Protocol is not (Protocols.Http or Protocols.Grpc))
        {
            return $"unknown protocol '{x.Protocol}'";
        }

        if (string.IsNullOrEmpty(x.Request.Path) || x.Request.Path[0] != '/')
        {
            return $"request path '{x.Request.Path}' is not absolute";
        }

        return null;
    }

    private static PlannedRequest ToRequest(ExchangeRecord x, double thinkMs, WebSocketMode? webSocketMode)
    {
        var pathAndQuery = x.Request.Path + (x.Request.Query ?? string.Empty);
        var headers = HeaderFilter.FromRecorded(x.Request.Headers);
        var route = x.Route ?? $"{x.Request.Method} {x.Request.Path}";
        if (x.Protocol == Protocols.WebSocket)
        {
            return new PlannedRequest
            {
                Protocol = RequestProtocol.WebSocket,
                Method = "GET",
                PathAndQuery = pathAndQuery,
                Headers = headers,
                Streamed = true,
                Route = x.Route ?? $"WS {x.Request.Path}",
                ThinkBeforeMs = thinkMs,
                Turns = Turns(x.Units!),
                WebSocketMode = webSocketMode ?? (ShowsTurns(x.Units!) ? WebSocketMode.Turns : WebSocketMode.Frames),
                Close = Close(x.Units!),
            };
        }

        var body = x.Request.Body?.GetBytes();
        return new PlannedRequest
        {
            Protocol = x.Protocol == Protocols.Grpc ? RequestProtocol.Grpc : RequestProtocol.Http,
            Method = x.Request.Method,
            PathAndQuery = pathAndQuery,
            Headers = headers,
            Body = body is { Length: > 0 } ? body : null,
            Streamed = x.Streamed,
            Route = route,
            ThinkBeforeMs = thinkMs,
            Recorded = new RecordedOutcome(x.Response.Status, x.Response.GrpcStatus, x.Streamed ? null : x.Response.Body?.Sha256),
        };
    }

    /// <summary>
    /// True when the connection is request/response turns, which the turn-by-turn mode needs: every client message is
    /// answered by server messages before the next one, and the last of each answer ends the turn (a JSON object with a
    /// top-level <c>done</c> or <c>error</c>, <see cref="Clients.WebSocketReplies"/>). Anything else (an echo server,
    /// a server that pushes on its own, client messages sent without waiting) is replayed frame by frame.
    /// </summary>
    internal static bool ShowsTurns(IReadOnlyList<StreamUnit> units)
    {
        var clientMessages = 0;
        var awaitingEnd = false;
        foreach (var u in units)
        {
            if (u.Kind is not (UnitKinds.Text or UnitKinds.Binary))
            {
                continue;
            }

            if (u.Dir == Directions.ToServer)
            {
                if (awaitingEnd)
                {
                    return false; // sent before the previous answer ended
                }

                clientMessages++;
                awaitingEnd = true;
            }
            else if (awaitingEnd && u.Kind == UnitKinds.Text && !u.Truncated
                && Clients.WebSocketReplies.Classify(System.Text.Encoding.UTF8.GetBytes(u.Text ?? string.Empty), out _) != Clients.WebSocketReply.Part)
            {
                awaitingEnd = false;
            }
            else if (!awaitingEnd)
            {
                return false; // the server spoke between turns, on its own
            }
        }

        return clientMessages > 0 && !awaitingEnd;
    }

    /// <summary>
    /// The recorded close: the first close frame's direction and offset, and the status the client sent (the gateway
    /// records a close as <c>CODE reason</c>). A status a client may not send (1005 "none", 1006, 1015, outside
    /// 1000–4999) becomes 1000; no close frame at all, null.
    /// </summary>
    internal static WebSocketClose? Close(IReadOnlyList<StreamUnit> units)
    {
        StreamUnit? first = null, client = null;
        foreach (var u in units)
        {
            if (u.Kind != UnitKinds.Close)
            {
                continue;
            }

            first ??= u;
            if (u.Dir == Directions.ToServer)
            {
                client ??= u;
            }
        }

        if (first is null)
        {
            return null;
        }

        var code = 1000;
        string? reason = null;
        if (client?.Text is { } text)
        {
            var space = text.IndexOf(' ', StringComparison.Ordinal);
            var number = space < 0 ? text : text[..space];
            if (int.TryParse(number, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var parsed)
                && parsed is (>= 1000 and <= 1003) or (>= 1007 and <= 1014) or (>= 3000 and <= 4999))
            {
                code = parsed;
                reason = space < 0 ? null : text[(space + 1)..];
            }
        }

        return new WebSocketClose(code, string.IsNullOrEmpty(reason) ? null : reason, Math.Max(0, first.OffsetMs), first.Dir == Directions.ToClient);
    }

    /// <summary>Client messages in order; each turn's think time is its offset minus the offset of the last frame before it.</summary>
    private static List<WebSocketTurn> Turns(IReadOnlyList<StreamUnit> units)
    {
        var turns = new List<WebSocketTurn>();
        double lastOffset = 0;
        foreach (var u in units)
        {
            if (u.Dir == Directions.ToServer && u.Kind is UnitKinds.Text or UnitKinds.Binary)
            {
                var binary = u.Kind == UnitKinds.Binary;
                var payload = binary ? Convert.FromBase64String(u.Base64 ?? string.Empty) : System.Text.Encoding.UTF8.GetBytes(u.Text ?? string.Empty);
                turns.Add(new WebSocketTurn(payload, binary, Math.Max(0, u.OffsetMs - lastOffset), Math.Max(0, u.OffsetMs)));
            }

            lastOffset = u.OffsetMs;
        }

        return turns;
    }
}
