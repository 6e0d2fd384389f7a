using HdrHistogram;

namespace Replay.Measurement;

/// <summary>
/// Export and exact merge, for runs split among workers: a worker exports what it measured, the coordinator adds it
/// into one <see cref="RunMetrics"/>.
/// </summary>
/// <remarks>
/// Histograms travel as their recorded buckets (each bucket's highest equivalent value and its count) and are added
/// bucket by bucket (<c>RecordValueWithCount</c> into a histogram of the same range and precision), so the merged
/// histogram is the one a single process would have recorded: its p99 is the p99 of every sample, not an average of
/// the workers' percentiles. Times travel as seconds from the run's start (its epoch), which every worker shares.
/// </remarks>
internal sealed partial class RunMetrics
{
    private const int ExportVersion = 3;

    /// <summary>Everything measured so far, as bytes for <see cref="Merge"/>.</summary>
    public byte[] Export()
    {
        using var stream = new MemoryStream();
        using (var w = new BinaryWriter(stream))
        {
            lock (_gate)
            {
                w.Write(ExportVersion);
                w.Write(Intended);
                w.Write(Sent);
                w.Write(Completed);
                w.Write(Failures);
                w.Write(OutputTokens);
                w.Write(Good);
                w.Write(Compared);
                w.Write(StatusMismatches);
                w.Write(BodyDifferences);
                w.Write(WebSocketMessagesSent);
                w.Write(WebSocketMessagesReceived);
                w.Write(UnparseableEvents);
                w.Write(FirstUnparseable ?? string.Empty);
                w.Write(SecondsSinceStart(LastIntendedTimestamp));
                w.Write(SecondsSinceStart(LastSentTimestamp));
                w.Write(SecondsSinceStart(LastCompletedTimestamp));
                WriteLongs(w, _failuresByKind);
                WriteLongs(w, _sloMet);
                foreach (var h in Whole())
                {
                    WriteHistogram(w, h);
                }

                WriteGroups(w, _byStatus);
                WriteGroups(w, _byRoute);
                WriteGroups(w, _refusedByLimit);
                w.Write(_series.Count);
                for (var i = 0; i < _series.Count; i++)
                {
                    var b = _series[i];
                    w.Write(b.Intended);
                    w.Write(b.Sent);
                    w.Write(b.Completed);
                    w.Write(b.Failures);
                    w.Write(b.Refused);
                    w.Write(b.StatusErrors);
                    w.Write(b.Timeouts);
                    w.Write(b.ConnectionErrors);
                    w.Write(b.Tokens);
                    w.Write(b.Good);
                    w.Write(b.LagMax);
                    w.Write(b.RefusedByLimit?.Count ?? 0);
                    foreach (var (limit, count) in b.RefusedByLimit ?? [])
                    {
                        w.Write(limit);
                        w.Write(count);
                    }

                    foreach (var perSecond in _perSecond)
                    {
                        var second = perSecond.Held.GetValueOrDefault(i);
                        w.Write(second is not null);
                        if (second is not null)
                        {
                            WriteHistogram(w, second);
                        }
                    }
                }
            }
        }

        return stream.ToArray();
    }

    /// <summary>Adds what another process measured (<see cref="Export"/>) into these metrics.</summary>
    /// <exception cref="InvalidDataException">The bytes are not an export of this version or of the same SLOs.</exception>
    public void Merge(ReadOnlySpan<byte> export)
    {
        using var stream = new MemoryStream(export.ToArray());
        using var r = new BinaryReader(stream);
        if (r.ReadInt32() != ExportVersion)
        {
            throw new InvalidDataException("not a replay metrics export of version 3 (workers and coordinator must run the same build)");
        }

        lock (_gate)
        {
            foreach (var perSecond in _perSecond)
            {
                perSecond.Keep = true;
            }

            Intended += r.ReadInt64();
            Sent += r.ReadInt64();
            Completed += r.ReadInt64();
            Failures += r.ReadInt64();
            OutputTokens += r.ReadInt64();
            Good += r.ReadInt64();
            Compared += r.ReadInt64();
            StatusMismatches += r.ReadInt64();
            BodyDifferences += r.ReadInt64();
            WebSocketMessagesSent += r.ReadInt64();
            WebSocketMessagesReceived += r.ReadInt64();
            UnparseableEvents += r.ReadInt64();
            var firstUnparseable = r.ReadString();
            if (firstUnparseable.Length > 0)
            {
                FirstUnparseable ??= firstUnparseable;
            }
            LastIntendedTimestamp = Math.Max(LastIntendedTimestamp, At(r.ReadDouble()));
            LastSentTimestamp = Math.Max(LastSentTimestamp, At(r.ReadDouble()));
            LastCompletedTimestamp = Math.Max(LastCompletedTimestamp, At(r.ReadDouble()));
            AddLongs(r, _failuresByKind);
            AddLongs(r, _sloMet);
            foreach (var h in Whole())
            {
                ReadHistogramInto(r, h);
            }

            ReadGroups(r, _byStatus);
            ReadGroups(r, _byRoute);
            ReadGroups(r, _refusedByLimit);
            var seconds = r.ReadInt32();
            for (var i = 0; i < seconds; i++)
            {
                var b = Bucket(i);
                b.Intended += r.ReadInt64();
                b.Sent += r.ReadInt64();
                b.Completed += r.ReadInt64();
                b.Failures += r.ReadInt64();
                b.Refused += r.ReadInt64();
                b.StatusErrors += r.ReadInt64();
                b.Timeouts += r.ReadInt64();
                b.ConnectionErrors += r.ReadInt64();
                b.Tokens += r.ReadInt64();
                b.Good += r.ReadInt64();
                b.LagMax = Math.Max(b.LagMax, r.ReadDouble());
                var limits = r.ReadInt32();
                for (var j = 0; j < limits; j++)
                {
                    var limit = r.ReadString();
                    b.RefusedByLimit ??= new Dictionary<string, long>(StringComparer.Ordinal);
                    b.RefusedByLimit[limit] = b.RefusedByLimit.GetValueOrDefault(limit) + r.ReadInt64();
                }

                foreach (var perSecond in _perSecond)
                {
                    if (r.ReadBoolean())
                    {
                        ReadHistogramInto(r, perSecond.GetOrCreate(i));
                    }
                }
            }
        }
    }

    private LongHistogram[] Whole() => [Latency, SuccessLatency, ServiceTime, ScheduleLag, Ttft, InterToken, StreamTokensPerSecond];

    private long At(double seconds) => _startTimestamp + (long)Math.Round(seconds * _time.TimestampFrequency);

    private static void WriteLongs(BinaryWriter w, long[] values)
    {
        w.Write(values.Length);
        foreach (var v in values)
        {
            w.Write(v);
        }
    }

    private static void AddLongs(BinaryReader r, long[] into)
    {
        var n = r.ReadInt32();
        if (n != into.Length)
        {
            throw new InvalidDataException($"an export of {n} values where {into.Length} were expected (different SLOs?)");
        }

        for (var i = 0; i < n; i++)
        {
            into[i] += r.ReadInt64();
        }
    }

    /// <summary>A histogram as its recorded buckets: (highest equivalent value, count) pairs.</summary>
    internal static void WriteHistogram(BinaryWriter w, HistogramBase h)
    {
        var buckets = new List<(long Value, long Count)>();
        foreach (var v in h.RecordedValues())
        {
            buckets.Add((v.ValueIteratedTo, v.CountAtValueIteratedTo));
        }

        w.Write(buckets.Count);
        foreach (var (value, count) in buckets)
        {
            w.Write(value);
            w.Write(count);
        }
    }

    /// <summary>Adds the buckets written by <see cref="WriteHistogram"/> into <paramref name="into"/>.</summary>
    internal static void ReadHistogramInto(BinaryReader r, HistogramBase into)
    {
        var n = r.ReadInt32();
        for (var i = 0; i < n; i++)
        {
            var value = r.ReadInt64();
            var count = r.ReadInt64();
            into.RecordValueWithCount(Math.Clamp(value, 1, Histograms.HighestMicros), count);
        }
    }

    private static void WriteGroups(BinaryWriter w, Dictionary<string, Group> groups)
    {
        w.Write(groups.Count);
        foreach (var (key, g) in groups)
        {
            w.Write(key);
            w.Write(g.Count);
            w.Write(g.Failures);
            WriteHistogram(w, g.Latency);
        }
    }

    private static void ReadGroups(BinaryReader r, Dictionary<string, Group> groups)
    {
        var n = r.ReadInt32();
        for (var i = 0; i < n; i++)
        {
            var g = Get(groups, r.ReadString());
            g.Count += r.ReadInt64();
            g.Failures += r.ReadInt64();
            ReadHistogramInto(r, g.Latency);
        }
    }
}
