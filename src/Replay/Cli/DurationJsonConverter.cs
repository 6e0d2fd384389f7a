using System.Text.Json;
using System.Text.Json.Serialization;

namespace Replay.Cli;

/// <summary>
/// A duration in JSON as on the command line (<c>"10s"</c>, <c>"500ms"</c>), written by
/// <see cref="ValueParsers.FormatDuration"/> and read by <see cref="ValueParsers.TryParseDuration"/>, the parser of
/// every duration flag: the worker spec carries the run's durations in the form the user would type.
/// </summary>
internal sealed class DurationJsonConverter : JsonConverter<TimeSpan>
{
    /// <inheritdoc/>
    /// <exception cref="JsonException">The value is not a duration string.</exception>
    public override TimeSpan Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
        reader.TokenType == JsonTokenType.String && ValueParsers.TryParseDuration(reader.GetString(), out var value)
            ? value
            : throw new JsonException($"not a duration (e.g. {ValueParsers.DurationExamples})");

    /// <inheritdoc/>
    public override void Write(Utf8JsonWriter writer, TimeSpan value, JsonSerializerOptions options) =>
        writer.WriteStringValue(ValueParsers.FormatDuration(value));
}
