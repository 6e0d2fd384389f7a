using System.Text.RegularExpressions;
using Contracts.Recording;
using Microsoft.Extensions.Options;

namespace Gateway.Recording;

/// <summary>
/// Replaces secrets by <see cref="Redaction.Marker"/> before a record leaves the process: credential and cookie
/// headers (always), configured headers, configured gRPC metadata keys, and the values of configured JSON fields
/// wherever they appear in a JSON body, an SSE event or a WebSocket message — also in a body cut at the capture cap,
/// since the field is found by pattern, not by parsing.
/// </summary>
internal sealed class Redactor
{
    private readonly HashSet<string> _headers;
    private readonly HashSet<string> _grpcMetadata;
    private readonly Regex? _jsonFields;

    public Redactor(IOptions<RecordingOptions> options)
    {
        var r = options.Value.Redaction;
        _headers = new HashSet<string>(RedactionOptions.BuiltInHeaders.Concat(r.Headers), StringComparer.OrdinalIgnoreCase);
        _grpcMetadata = new HashSet<string>(r.GrpcMetadata, StringComparer.OrdinalIgnoreCase);
        var fields = r.JsonFields.Count > 0 ? r.JsonFields : [.. RedactionOptions.DefaultJsonFields];
        if (fields.Count > 0)
        {
            // "field" : "string value" | number | true | false | null  (JSON string escapes respected)
            var names = string.Join("|", fields.Select(Regex.Escape));
            _jsonFields = new Regex($"(\"(?:{names})\"\\s*:\\s*)(\"(?:[^\"\\\\]|\\\\.)*\"?|-?[0-9][0-9.eE+-]*|true|false|null)",
                RegexOptions.CultureInvariant | RegexOptions.Compiled, TimeSpan.FromMilliseconds(100));
        }
    }

    /// <summary>Headers with redacted values replaced (a new array only when something changed).</summary>
    public RecordedHeader[] Headers(RecordedHeader[] headers, bool isGrpc)
    {
        RecordedHeader[]? copy = null;
        for (var i = 0; i < headers.Length; i++)
        {
            var name = headers[i].Name;
            if (_headers.Contains(name) || (isGrpc && _grpcMetadata.Contains(name)))
            {
                copy ??= (RecordedHeader[])headers.Clone();
                copy[i] = new RecordedHeader(name, Redaction.Marker);
            }
        }

        return copy ?? headers;
    }

    /// <summary>
    /// A query string (with or without its leading <c>?</c>) with the values of <see cref="RedactionOptions.BuiltInQueryParameters"/>
    /// replaced by <see cref="Redaction.Marker"/>; the same string when none is present.
    /// </summary>
    public static string? Query(string? query)
    {
        if (string.IsNullOrEmpty(query) || query.IndexOf('=', StringComparison.Ordinal) < 0)
        {
            return query;
        }

        var prefix = query[0] == '?' ? "?" : "";
        var parts = query[prefix.Length..].Split('&');
        var changed = false;
        for (var i = 0; i < parts.Length; i++)
        {
            var eq = parts[i].IndexOf('=', StringComparison.Ordinal);
            var name = Uri.UnescapeDataString(eq < 0 ? parts[i] : parts[i][..eq]);
            if (eq >= 0 && Array.Exists(RedactionOptions.BuiltInQueryParameters, p => string.Equals(p, name, StringComparison.OrdinalIgnoreCase)))
            {
                parts[i] = parts[i][..(eq + 1)] + Uri.EscapeDataString(Redaction.Marker);
                changed = true;
            }
        }

        return changed ? prefix + string.Join('&', parts) : query;
    }

    /// <summary>Text with the values of configured JSON fields replaced.</summary>
    public string Json(string text)
    {
        if (_jsonFields is null || text.Length == 0)
        {
            return text;
        }

        try
        {
            return _jsonFields.Replace(text, "$1\"" + Redaction.Marker + "\"");
        }
        catch (RegexMatchTimeoutException)
        {
            // Never let a pathological body through unredacted.
            return Redaction.Marker;
        }
    }
}
