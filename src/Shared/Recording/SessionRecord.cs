namespace Contracts.Recording;

/// <summary>
/// A recorded session: the exchanges of one client that belong together (a chat, a WebSocket connection), so a
/// replay can rebuild each session in order with its think times.
/// </summary>
public sealed record SessionRecord
{
    /// <summary>The session id.</summary>
    public required string SessionId { get; init; }

    /// <summary>The client key of the session's first exchange.</summary>
    public string? Client { get; init; }

    /// <summary>Wall-clock start of the first exchange, microseconds since the Unix epoch.</summary>
    public long FirstSeenUnixMicros { get; init; }

    /// <summary>Wall-clock start of the latest exchange, microseconds since the Unix epoch.</summary>
    public long LastSeenUnixMicros { get; init; }

    /// <summary>Exchanges recorded in the session so far.</summary>
    public long Count { get; init; }
}

/// <summary>A recording's summary, as <c>GET /admin/recordings</c> and <c>replay list</c> show it.</summary>
public sealed record RecordingInfo
{
    /// <summary>The recording's name.</summary>
    public required string Name { get; init; }

    /// <summary><see cref="RecordingStates.Recording"/> or <see cref="RecordingStates.Stopped"/>.</summary>
    public required string State { get; init; }

    /// <summary>Exchanges stored (after retention trimming, where the store trims).</summary>
    public long Count { get; init; }

    /// <summary>Bytes of serialized exchanges written.</summary>
    public long Bytes { get; init; }

    /// <summary>Sessions seen.</summary>
    public long Sessions { get; init; }

    /// <summary>Start of the first exchange, microseconds since the Unix epoch; null when empty.</summary>
    public long? FirstUnixMicros { get; init; }

    /// <summary>Start of the latest exchange, microseconds since the Unix epoch; null when empty.</summary>
    public long? LastUnixMicros { get; init; }

    /// <summary>Where it is stored: <c>redis</c> or <c>file</c>.</summary>
    public string Store { get; init; } = "file";
}

/// <summary>Values of <see cref="RecordingInfo.State"/>.</summary>
public static class RecordingStates
{
    /// <summary>Exchanges are being captured.</summary>
    public const string Recording = "recording";

    /// <summary>Capture has stopped; the data stays.</summary>
    public const string Stopped = "stopped";
}
