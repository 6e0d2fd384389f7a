using System.Buffers;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Contracts.Recording;

/// <summary>
/// The one serializer of the recording schema, used by every store (Redis, file) and by both the gateway and the
/// replay tool: UTF-8 JSON, snake_case names, nulls omitted, System.Text.Json source generation.
/// </summary>
public static class RecordingSerializer
{
    /// <summary>Serializes an exchange to UTF-8 JSON.</summary>
    public static byte[] Serialize(ExchangeRecord record) => JsonSerializer.SerializeToUtf8Bytes(record, RecordingJsonContext.Relaxed.ExchangeRecord);

    /// <summary>Serializes an exchange into <paramref name="writer"/> (no intermediate array).</summary>
    public static void Serialize(ExchangeRecord record, IBufferWriter<byte> writer)
    {
        using var json = new Utf8JsonWriter(writer);
        JsonSerializer.Serialize(json, record, RecordingJsonContext.Relaxed.ExchangeRecord);
    }

    /// <summary>Serializes a session to UTF-8 JSON.</summary>
    public static byte[] Serialize(SessionRecord record) => JsonSerializer.SerializeToUtf8Bytes(record, RecordingJsonContext.Relaxed.SessionRecord);

    /// <summary>
    /// Parses an exchange.
    /// </summary>
    /// <exception cref="RecordingFormatException">The bytes are not a valid exchange of a schema version this code reads.</exception>
    public static ExchangeRecord DeserializeExchange(ReadOnlySpan<byte> utf8)
    {
        ExchangeRecord? record;
        try
        {
            record = JsonSerializer.Deserialize(utf8, RecordingJsonContext.Relaxed.ExchangeRecord);
        }
        catch (JsonException ex)
        {
            throw new RecordingFormatException($"not a valid exchange record: {ex.Message}", ex);
        }

        if (record is null)
        {
            throw new RecordingFormatException("not a valid exchange record: null");
        }

        if (record.SchemaVersion is < 1 or > ExchangeRecord.CurrentSchemaVersion)
        {
            throw new RecordingFormatException($"exchange record of schema version {record.SchemaVersion}; this version reads 1 to {ExchangeRecord.CurrentSchemaVersion}");
        }

        return record;
    }

    /// <summary>Parses a session.</summary>
    /// <exception cref="RecordingFormatException">The bytes are not a valid session record.</exception>
    public static SessionRecord DeserializeSession(ReadOnlySpan<byte> utf8)
    {
        try
        {
            return JsonSerializer.Deserialize(utf8, RecordingJsonContext.Relaxed.SessionRecord)
                ?? throw new RecordingFormatException("not a valid session record: null");
        }
        catch (JsonException ex)
        {
            throw new RecordingFormatException($"not a valid session record: {ex.Message}", ex);
        }
    }
}

/// <summary>A stored record could not be read; the message says why (and where, when a store knows).</summary>
public sealed class RecordingFormatException : Exception
{
    /// <summary>Creates the exception.</summary>
    public RecordingFormatException(string message, Exception? inner = null)
        : base(message, inner)
    {
    }

    /// <summary>Creates the exception.</summary>
    public RecordingFormatException()
    {
    }

    /// <summary>Creates the exception.</summary>
    public RecordingFormatException(string message)
        : base(message)
    {
    }
}

/// <summary>Writes a <see cref="RecordedHeader"/> as <c>["name","value"]</c>.</summary>
internal sealed class RecordedHeaderConverter : JsonConverter<RecordedHeader>
{
    public override RecordedHeader Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        if (reader.TokenType != JsonTokenType.StartArray)
        {
            throw new JsonException("a header must be a [name, value] array");
        }

        reader.Read();
        var name = reader.GetString() ?? throw new JsonException("header name is null");
        reader.Read();
        var value = reader.GetString() ?? string.Empty;
        reader.Read();
        if (reader.TokenType != JsonTokenType.EndArray)
        {
            throw new JsonException("a header must be a [name, value] array");
        }

        return new RecordedHeader(name, value);
    }

    public override void Write(Utf8JsonWriter writer, RecordedHeader value, JsonSerializerOptions options)
    {
        writer.WriteStartArray();
        writer.WriteStringValue(value.Name);
        writer.WriteStringValue(value.Value);
        writer.WriteEndArray();
    }
}

/// <summary>One line of the file store / export format: an envelope with a type.</summary>
internal sealed record RecordingFileLine
{
    /// <summary><c>recording</c> (a state change), <c>session</c> or <c>exchange</c>.</summary>
    public required string Type { get; init; }

    public RecordingInfo? Recording { get; init; }

    public SessionRecord? Session { get; init; }

    public ExchangeRecord? Exchange { get; init; }
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(ExchangeRecord))]
[JsonSerializable(typeof(SessionRecord))]
[JsonSerializable(typeof(RecordingInfo))]
[JsonSerializable(typeof(RecordingFileLine))]
internal sealed partial class RecordingJsonContext : JsonSerializerContext
{
    /// <summary>
    /// The context used everywhere: as declared, plus an encoder that leaves quotes and non-ASCII text as they are
    /// (the default escapes HTML-sensitive characters, which bodies of JSON are full of: a third larger for nothing).
    /// Records are data, never embedded in HTML unescaped.
    /// </summary>
    public static RecordingJsonContext Relaxed { get; } = new(new JsonSerializerOptions
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    });
}
