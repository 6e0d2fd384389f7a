using Contracts.Recording;
using Gateway.Configuration;
using Microsoft.Extensions.Options;

namespace Gateway.Recording;

/// <summary>
/// Validates <see cref="RecordingOptions"/>, reporting every problem with its full key: the records' ranges, then the
/// rules a range cannot say. Run by <see cref="ConfigurationValidator"/> and registered for the options pipeline.
/// </summary>
internal sealed class RecordingOptionsValidator : IValidateOptions<RecordingOptions>
{
    private const string S = RecordingOptions.Section;
    private static readonly RecordingOptionsRanges s_ranges = new();
    private static readonly SessionOptionsRanges s_sessionRanges = new();
    private static readonly SamplingOptionsRanges s_samplingRanges = new();
    private static readonly RetentionOptionsRanges s_retentionRanges = new();

    public ValidateOptionsResult Validate(string? name, RecordingOptions o)
    {
        var errors = new List<string>();
        Validate(o, errors);
        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }

    /// <summary>Adds one message per problem.</summary>
    /// <param name="o">The options.</param>
    /// <param name="errors">Where messages are added.</param>
    /// <param name="raw">The configuration the options were bound from, to quote values as written; may be null.</param>
    public static void Validate(RecordingOptions o, List<string> errors, IConfiguration? raw = null)
    {
        OptionsRanges.Check(s_ranges, S, o, raw, errors);
        OptionsRanges.Check(s_sessionRanges, $"{S}:Sessions", o.Sessions, raw, errors);
        OptionsRanges.Check(s_samplingRanges, $"{S}:Sampling", o.Sampling, raw, errors);
        OptionsRanges.Check(s_retentionRanges, $"{S}:Retention", o.Retention, raw, errors);
        if (o.Redis is not null)
        {
            try
            {
                RedisConnection.Parse(o.Redis);
            }
            catch (ArgumentException ex)
            {
                errors.Add($"{S}:Redis is not a valid Redis connection: {ex.Message}");
            }
        }

        if (string.IsNullOrWhiteSpace(o.Directory))
        {
            errors.Add($"{S}:Directory must not be empty.");
        }

        if (o.StartAtBoot is not null && !RecordingNames.IsValid(o.StartAtBoot))
        {
            errors.Add($"{S}:StartAtBoot '{o.StartAtBoot}' is not a valid recording name (1 to {RecordingNames.MaxLength} letters, digits, '-', '_', '.').");
        }

        for (var i = 0; i < o.Sessions.Sources.Count; i++)
        {
            if (!SessionSource.TryParse(o.Sessions.Sources[i], out _, out var error))
            {
                errors.Add($"{S}:Sessions:Sources:{i} '{o.Sessions.Sources[i]}' is invalid: {error}.");
            }
        }

        foreach (var (route, rate) in o.Sampling.Routes)
        {
            if (rate is < 0 or > 1 || double.IsNaN(rate))
            {
                errors.Add($"{S}:Sampling:Routes:{route} must be between 0 and 1 (was {rate}).");
            }
        }
    }
}
