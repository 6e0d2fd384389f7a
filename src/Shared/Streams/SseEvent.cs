namespace Contracts.Streams;

/// <summary>
/// One complete Server-Sent Event as <see cref="SseEventReader"/> dispatches it (WHATWG HTML §9.2.6 "dispatch the event").
/// A <c>ref struct</c> over the reader's buffers: valid only during the <see cref="ISseHandler.OnEvent"/> call;
/// copy what must outlive it.
/// </summary>
public readonly ref struct SseEvent
{
    /// <summary>Creates an event (the reader does this; public for tests of handlers).</summary>
    public SseEvent(ReadOnlySpan<byte> eventType, ReadOnlySpan<byte> data, ReadOnlySpan<byte> lastEventId, long startOffset, long endOffset)
    {
        EventType = eventType;
        Data = data;
        LastEventId = lastEventId;
        StartOffset = startOffset;
        EndOffset = endOffset;
    }

    /// <summary>
    /// The <c>event:</c> field's value, UTF-8; empty when the event named none (the spec's default type is <c>message</c>,
    /// see <see cref="Type"/>).
    /// </summary>
    public ReadOnlySpan<byte> EventType { get; }

    /// <summary>The event type with the spec's default applied: <see cref="EventType"/>, or <c>message</c> when empty.</summary>
    public ReadOnlySpan<byte> Type => EventType.IsEmpty ? "message"u8 : EventType;

    /// <summary>
    /// The data, UTF-8: the values of every <c>data:</c> line of the event joined with LF (U+000A), without the final LF.
    /// Never empty-and-absent: an event without any <c>data:</c> line is not dispatched (spec), but <c>data:</c> with
    /// an empty value gives an event with empty data.
    /// </summary>
    public ReadOnlySpan<byte> Data { get; }

    /// <summary>The last event ID buffer when the event was dispatched (an <c>id:</c> field persists across events, per spec), UTF-8.</summary>
    public ReadOnlySpan<byte> LastEventId { get; }

    /// <summary>Offset in the stream, in bytes from its first byte (a BOM included), where the event's first field line begins.</summary>
    public long StartOffset { get; }

    /// <summary>
    /// Offset in the stream, in bytes, just past the line end of the blank line that completed the event; for a CRLF, just
    /// past its CR (the event is dispatched at the CR, before the LF arrives, so the offset never depends on the chunking).
    /// </summary>
    public long EndOffset { get; }
}

/// <summary>
/// Receives what <see cref="SseEventReader.Append"/> finds, synchronously, during the call that completed it: the time of
/// the call is the time the event's last byte arrived, so a caller can timestamp events here.
/// Implement it on the class that owns the reader (no delegate, no closure, no allocation per event).
/// </summary>
public interface ISseHandler
{
    /// <summary>A complete event. <paramref name="e"/> and its spans are valid only during this call.</summary>
    void OnEvent(in SseEvent e);

    /// <summary>
    /// An event whose data (or one of whose lines) exceeded <see cref="SseEventReader.MaxEventBytes"/>: its bytes were
    /// skipped, not buffered, and it was not dispatched. Counted in <see cref="SseEventReader.SkippedEvents"/>.
    /// </summary>
    /// <param name="startOffset">Stream offset of the event's first field line, in bytes.</param>
    /// <param name="endOffset">Stream offset just past the blank line that ended it, in bytes.</param>
    void OnEventSkipped(long startOffset, long endOffset)
    {
    }
}
