using System.Globalization;
using System.Text.RegularExpressions;

namespace Replay.Cli;

/// <summary>Parses command-line values that System.CommandLine has no type for.</summary>
internal static partial class ValueParsers
{
    /// <summary>The forms a duration takes, as every duration error lists them.</summary>
    public const string DurationExamples = "500ms, 10s, 2m, 1h, 00:01:30";

    [GeneratedRegex(@"^(\d+(?:\.\d+)?)\s*(us|µs|ms|s|m|h)?$", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant)]
    private static partial Regex DurationPattern();

    [GeneratedRegex(@"^(\d+):([0-5]\d):([0-5]\d(?:\.\d+)?)$", RegexOptions.CultureInvariant)]
    private static partial Regex ClockPattern();

    /// <summary>
    /// The one duration parser, used by every duration flag (<see cref="DurationOption"/>), scenario files and the
    /// worker spec (<see cref="DurationJsonConverter"/>): a number with a unit, <c>250us</c>, <c>500ms</c>, <c>10s</c>,
    /// <c>1.5m</c>, <c>1h</c> (a plain number is seconds), or a clock <c>HH:MM:SS[.fraction]</c> (<c>00:01:30</c>).
    /// Never negative; at most half of <see cref="TimeSpan.MaxValue"/>.
    /// </summary>
    public static bool TryParseDuration(string? text, out TimeSpan value)
    {
        value = default;
        text = text?.Trim();
        if (string.IsNullOrEmpty(text))
        {
            return false;
        }

        double ms;
        if (ClockPattern().Match(text) is { Success: true } clock)
        {
            ms = (double.Parse(clock.Groups[1].Value, CultureInfo.InvariantCulture) * 3_600_000)
                + (int.Parse(clock.Groups[2].Value, CultureInfo.InvariantCulture) * 60_000)
                + (double.Parse(clock.Groups[3].Value, CultureInfo.InvariantCulture) * 1000);
        }
        else if (DurationPattern().Match(text) is { Success: true } m)
        {
            var number = double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture);
            ms = (m.Groups[2].Success ? m.Groups[2].Value.ToLowerInvariant() : "s") switch
            {
                "us" or "µs" => number / 1000,
                "ms" => number,
                "m" => number * 60_000,
                "h" => number * 3_600_000,
                _ => number * 1000,
            };
        }
        else
        {
            return false;
        }

        if (!double.IsFinite(ms) || ms > TimeSpan.MaxValue.TotalMilliseconds / 2)
        {
            return false;
        }

        value = TimeSpan.FromTicks((long)Math.Round(ms * TimeSpan.TicksPerMillisecond));
        return true;
    }

    /// <summary>
    /// A duration as <see cref="TryParseDuration"/> reads it back exactly: the largest whole unit (<c>2m</c>,
    /// <c>90s</c>, <c>1500ms</c>, <c>250us</c>), else the clock form with seven decimals.
    /// </summary>
    public static string FormatDuration(TimeSpan value)
    {
        var ticks = value.Ticks;
        return ticks switch
        {
            0 => "0s",
            < 0 => value.ToString("c", CultureInfo.InvariantCulture), // never parsed; shown as is
            _ when ticks % TimeSpan.TicksPerHour == 0 => Fmt($"{ticks / TimeSpan.TicksPerHour}h"),
            _ when ticks % TimeSpan.TicksPerMinute == 0 => Fmt($"{ticks / TimeSpan.TicksPerMinute}m"),
            _ when ticks % TimeSpan.TicksPerSecond == 0 => Fmt($"{ticks / TimeSpan.TicksPerSecond}s"),
            _ when ticks % TimeSpan.TicksPerMillisecond == 0 => Fmt($"{ticks / TimeSpan.TicksPerMillisecond}ms"),
            _ when ticks % TimeSpan.TicksPerMicrosecond == 0 => Fmt($"{ticks / TimeSpan.TicksPerMicrosecond}us"),
            _ => Fmt($"{(long)value.TotalHours}:{value.Minutes:00}:{value.Seconds:00}.{ticks % TimeSpan.TicksPerSecond:0000000}"),
        };

        static string Fmt(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
    }

    /// <summary>The message for a value that is not a duration, naming where it was given: <c>--duration: '10x' is not a duration (e.g. …)</c>.</summary>
    public static string NotADuration(string flag, string text) => $"{flag}: '{text}' is not a duration (e.g. {DurationExamples}).";

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
