using System.Globalization;
using System.Text.RegularExpressions;

namespace Replay.Cli;

/// <summary>Parses command-line values that System.CommandLine has no type for.</summary>
internal static partial class ValueParsers
{
    [GeneratedRegex(@"^\s*(\d+(?:\.\d+)?)\s*(us|µs|ms|s|m|h)?\s*$", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant)]
    private static partial Regex DurationPattern();

    /// <summary>A duration such as <c>500ms</c>, <c>10s</c>, <c>2m</c>, <c>1h</c> (a plain number is seconds).</summary>
    public static bool TryParseDuration(string text, out TimeSpan value)
    {
        value = default;
        var m = DurationPattern().Match(text);
        if (!m.Success)
        {
            return false;
        }

        var number = double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture);
        var ms = (m.Groups[2].Success ? m.Groups[2].Value.ToLowerInvariant() : "s") switch
        {
            "us" or "µs" => number / 1000,
            "ms" => number,
            "m" => number * 60_000,
            "h" => number * 3_600_000,
            _ => number * 1000,
        };
        if (!double.IsFinite(ms) || ms > TimeSpan.MaxValue.TotalMilliseconds / 2)
        {
            return false;
        }

        value = TimeSpan.FromMilliseconds(ms);
        return true;
    }

    /// <summary>A header <c>Name: value</c>.</summary>
    public static bool TryParseHeader(string text, out KeyValuePair<string, string> header)
    {
        header = default;
        var colon = text.IndexOf(':', StringComparison.Ordinal);
        if (colon <= 0)
        {
            return false;
        }

        var name = text[..colon].Trim();
        if (name.Length == 0 || name.Any(static c => c <= ' ' || c >= 127 || c is '(' or ')' or '<' or '>' or '@' or ',' or ';' or ':' or '\\' or '"' or '/' or '[' or ']' or '?' or '=' or '{' or '}'))
        {
            return false;
        }

        header = new(name, text[(colon + 1)..].Trim());
        return true;
    }
}
