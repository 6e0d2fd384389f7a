using System.Collections.Concurrent;
using Contracts.Recording;

namespace Gateway.Recording;

/// <summary>
/// Sessions of one recording, in this gateway: each exchange gets its sequence number in its session when it arrives,
/// and the session's summary (client, first and last seen, count) is kept for the store. Sessions idle longer than
/// the configured timeout are forgotten so memory stays bounded.
/// </summary>
internal sealed class SessionTracker
{
    private readonly ConcurrentDictionary<string, State> _sessions = new(StringComparer.Ordinal);

    /// <summary>Sessions held.</summary>
    public int Count => _sessions.Count;

    /// <summary>Counts an exchange of the session that arrived at <paramref name="unixMicros"/>; returns its sequence number (from 1).</summary>
    public long Next(string sessionId, string? client, long unixMicros)
    {
        var state = _sessions.GetOrAdd(sessionId, static (_, a) => new State(a.client, a.unixMicros), (client, unixMicros));
        lock (state)
        {
            state.Count++;
            state.Last = Math.Max(state.Last, unixMicros);
            state.Dirty = true;
            return state.Count;
        }
    }

    /// <summary>The summary of a session, if held.</summary>
    public SessionRecord? Get(string sessionId) => _sessions.TryGetValue(sessionId, out var s) ? Snapshot(sessionId, s) : null;

    /// <summary>Summaries of the sessions in <paramref name="sessionIds"/> changed since the last call, marked clean.</summary>
    public List<SessionRecord> TakeChanged(IEnumerable<string> sessionIds)
    {
        var list = new List<SessionRecord>();
        foreach (var id in sessionIds)
        {
            if (_sessions.TryGetValue(id, out var s))
            {
                lock (s)
                {
                    if (!s.Dirty)
                    {
                        continue;
                    }

                    s.Dirty = false;
                }

                list.Add(Snapshot(id, s));
            }
        }

        return list;
    }

    /// <summary>Forgets sessions last seen before <paramref name="olderThanUnixMicros"/>.</summary>
    public int Evict(long olderThanUnixMicros)
    {
        var evicted = 0;
        foreach (var (id, s) in _sessions)
        {
            if (Volatile.Read(ref s.Last) < olderThanUnixMicros && _sessions.TryRemove(id, out _))
            {
                evicted++;
            }
        }

        return evicted;
    }

    private static SessionRecord Snapshot(string id, State s)
    {
        lock (s)
        {
            return new SessionRecord { SessionId = id, Client = s.Client, FirstSeenUnixMicros = s.First, LastSeenUnixMicros = s.Last, Count = s.Count };
        }
    }

    private sealed class State(string? client, long first)
    {
        public string? Client { get; } = client;

        public long First { get; } = first;

        public long Last = first;

        public long Count { get; set; }

        public bool Dirty { get; set; }
    }
}
