using Contracts.Recording;
using Microsoft.Extensions.Options;

namespace Gateway.Recording;

/// <summary>Validates <see cref="RecordingOptions"/>, reporting every problem with its full key.</summary>
internal sealed class RecordingOptionsValidator : IValidateOptions<RecordingOptions>
{
    private const string S = RecordingOptions.Section;

    public ValidateOptionsResult Validate(string? name, RecordingOptions o)
    {
        var errors = new List<string>();
        Validate(o, errors);
        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }

    /// <summary>Adds one message per problem.</summary>
    public static void Validate(RecordingOptions o, List<string> errors)
    {
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

        if (o.MaxBodyBytes is < 0 or > 64 * 1024 * 1024)
        {
            errors.Add($"{S}:MaxBodyBytes must be between 0 and 67108864 (was {o.MaxBodyBytes}).");
        }

        if (o.MaxUnits < 0)
        {
            errors.Add($"{S}:MaxUnits must be >= 0 (was {o.MaxUnits}).");
        }

        if (o.QueueCapacity < 1)
        {
            errors.Add($"{S}:QueueCapacity must be >= 1 (was {o.QueueCapacity}).");
        }

        if (o.BatchSize is < 1 or > 10_000)
        {
            errors.Add($"{S}:BatchSize must be between 1 and 10000 (was {o.BatchSize}).");
        }

        if (o.RetryFor < TimeSpan.Zero)
        {
            errors.Add($"{S}:RetryFor must not be negative (was {o.RetryFor}).");
        }

        for (var i = 0; i < o.Sessions.Sources.Count; i++)
        {
            if (!SessionSource.TryParse(o.Sessions.Sources[i], out _, out var error))
            {
                errors.Add($"{S}:Sessions:Sources:{i} '{o.Sessions.Sources[i]}' is invalid: {error}.");
            }
        }

        if (o.Sessions.MaxInspectBytes < 0)
        {
            errors.Add($"{S}:Sessions:MaxInspectBytes must be >= 0 (was {o.Sessions.MaxInspectBytes}).");
        }

        if (o.Sessions.IdleTimeout <= TimeSpan.Zero)
        {
            errors.Add($"{S}:Sessions:IdleTimeout must be positive (was {o.Sessions.IdleTimeout}).");
        }

        if (o.Sampling.Rate is < 0 or > 1 || double.IsNaN(o.Sampling.Rate))
        {
            errors.Add($"{S}:Sampling:Rate must be between 0 and 1 (was {o.Sampling.Rate}).");
        }

        foreach (var (route, rate) in o.Sampling.Routes)
        {
            if (rate is < 0 or > 1 || double.IsNaN(rate))
            {
                errors.Add($"{S}:Sampling:Routes:{route} must be between 0 and 1 (was {rate}).");
            }
        }

        if (o.Retention.MaxLength is <= 0)
        {
            errors.Add($"{S}:Retention:MaxLength must be > 0 (was {o.Retention.MaxLength}).");
        }

        if (o.Retention.MaxAge is { } age && age <= TimeSpan.Zero)
        {
            errors.Add($"{S}:Retention:MaxAge must be positive (was {age}).");
        }

        if (o.Retention.Ttl is { } ttl && ttl < TimeSpan.FromSeconds(1))
        {
            errors.Add($"{S}:Retention:Ttl must be at least one second (was {ttl}).");
        }
    }
}
