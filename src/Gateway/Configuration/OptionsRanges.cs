using System.ComponentModel.DataAnnotations;
using System.Globalization;
using System.Reflection;
using Microsoft.Extensions.Options;

namespace Gateway.Configuration;

/// <summary>
/// The <see cref="RangeAttribute"/>s of the option records, checked by validators the <c>[OptionsValidator]</c> source
/// generator writes, and their failures rewritten as one line per key: <c>{key} must be {range} (was {value}).</c>
/// Each record's ranges are checked on their own (a dictionary entry under its own key), so every message names the
/// full configuration key.
/// </summary>
internal static class OptionsRanges
{
    /// <summary>Checks <paramref name="options"/>'s ranges; each failure names <c>{key}:{Property}</c>.</summary>
    /// <param name="ranges">The generated validator of <typeparamref name="T"/>.</param>
    /// <param name="key">The configuration key of <paramref name="options"/> (<c>Gateway:Shaping:Policies:per-key</c>).</param>
    /// <param name="options">The bound options.</param>
    /// <param name="raw">The configuration, to quote the value as written; null quotes the bound value.</param>
    /// <param name="errors">Where failures are added.</param>
    public static void Check<T>(IValidateOptions<T> ranges, string key, T options, IConfiguration? raw, List<string> errors)
        where T : class
    {
        var result = ranges.Validate(key, options);
        if (!result.Failed)
        {
            return;
        }

        foreach (var failure in result.Failures ?? [])
        {
            // The generated validator reports "{Member}: {message}".
            var colon = failure.IndexOf(':', StringComparison.Ordinal);
            var property = colon > 0 ? typeof(T).GetProperty(failure[..colon]) : null;
            if (property?.GetCustomAttribute<RangeAttribute>() is not { } range)
            {
                errors.Add($"{key}: {failure}");
                continue;
            }

            var full = $"{key}:{property.Name}";
            var was = raw?[full] ?? Format(property.GetValue(options));
            errors.Add($"{full} must be {Describe(range)} (was {was}).");
        }
    }

    /// <summary>The range in words: <c>&gt; 0</c>, <c>&gt;= 0</c>, <c>between 0 and 65535</c>, <c>a duration from 00:00:00.5 to 1.00:00:00</c>.</summary>
    public static string Describe(RangeAttribute range)
    {
        if (range.OperandType == typeof(TimeSpan))
        {
            return $"a duration from {range.Minimum} to {range.Maximum}";
        }

        var min = Convert.ToDouble(range.Minimum, CultureInfo.InvariantCulture);
        var max = Convert.ToDouble(range.Maximum, CultureInfo.InvariantCulture);
        var minText = Format(range.Minimum);
        return range.MinimumIsExclusive ? $"> {minText} and <= {Format(range.Maximum)}"
            : max >= int.MaxValue ? (min == 1 ? "> 0" : $">= {minText}")
            : $"between {minText} and {Format(range.Maximum)}";
    }

    private static string Format(object? value) => value switch
    {
        null => "null",
        TimeSpan t => t.ToString("c", CultureInfo.InvariantCulture),
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        _ => value.ToString() ?? "",
    };
}

// The validators the source generator writes from each record's DataAnnotations (one per record: nested records and
// dictionary entries are checked under their own keys by the section validators).
[OptionsValidator] internal sealed partial class ShapingOptionsRanges : IValidateOptions<Shaping.ShapingOptions>;
[OptionsValidator] internal sealed partial class PolicyOptionsRanges : IValidateOptions<Shaping.PolicyOptions>;
[OptionsValidator] internal sealed partial class AdmissionOptionsRanges : IValidateOptions<Shaping.AdmissionOptions>;
[OptionsValidator] internal sealed partial class AdaptiveOptionsRanges : IValidateOptions<Shaping.AdaptiveOptions>;
[OptionsValidator] internal sealed partial class CircuitBreakerOptionsRanges : IValidateOptions<Shaping.CircuitBreakerOptions>;
[OptionsValidator] internal sealed partial class RecordingOptionsRanges : IValidateOptions<Recording.RecordingOptions>;
[OptionsValidator] internal sealed partial class SessionOptionsRanges : IValidateOptions<Recording.SessionOptions>;
[OptionsValidator] internal sealed partial class SamplingOptionsRanges : IValidateOptions<Recording.SamplingOptions>;
[OptionsValidator] internal sealed partial class RetentionOptionsRanges : IValidateOptions<Recording.RetentionOptions>;
[OptionsValidator] internal sealed partial class GatewayLimitsOptionsRanges : IValidateOptions<GatewayLimitsOptions>;
[OptionsValidator] internal sealed partial class AdminOptionsRanges : IValidateOptions<Admin.AdminOptions>;
[OptionsValidator] internal sealed partial class ListenerOptionsRanges : IValidateOptions<Listeners.ListenerOptions>;
[OptionsValidator] internal sealed partial class AuthOptionsRanges : IValidateOptions<Tenants.AuthOptions>;
[OptionsValidator] internal sealed partial class JwtOptionsRanges : IValidateOptions<Tenants.JwtOptions>;
[OptionsValidator] internal sealed partial class TenantOptionsRanges : IValidateOptions<Tenants.TenantOptions>;
[OptionsValidator] internal sealed partial class TenantLimitsOptionsRanges : IValidateOptions<Tenants.TenantLimitsOptions>;
