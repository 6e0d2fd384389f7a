using Microsoft.Extensions.Options;

namespace ModelSim.Engine;

/// <summary>
/// Validates <see cref="SimOptions"/> at start-up. Like YARP's <c>ConfigValidator</c> it never stops at the first
/// failure: every message names the full configuration key and the value found, so one start shows every mistake.
/// </summary>
internal sealed class SimOptionsValidator : IValidateOptions<SimOptions>
{
    internal const int MaxSlots = 100_000;
    internal const int MaxQueue = 1_000_000;
    internal const int MaxTokensCeiling = 1_000_000;
    internal const int MaxBlockTokens = 1024;
    internal const int MaxBlocks = 100_000_000;

    public ValidateOptionsResult Validate(string? name, SimOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var errors = new List<string>();
        const string P = SimOptions.SectionName + ":";

        if (string.IsNullOrWhiteSpace(options.Model))
        {
            errors.Add($"{P}Model must not be empty (was '{options.Model}').");
        }

        CheckRange(errors, P + "Slots", options.Slots, 1, MaxSlots);
        CheckRange(errors, P + "Queue", options.Queue, 0, MaxQueue);
        CheckNonNegative(errors, P + "PrefillMs", options.PrefillMs);
        CheckNonNegative(errors, P + "PrefillPerTokenMs", options.PrefillPerTokenMs);
        CheckNonNegative(errors, P + "PerTokenMs", options.PerTokenMs);
        CheckNonNegative(errors, P + "BatchSlowdown", options.BatchSlowdown);
        CheckRange(errors, P + "MaxTokensLimit", options.MaxTokensLimit, 1, MaxTokensCeiling);
        CheckRange(errors, P + "DefaultMaxTokens", options.DefaultMaxTokens, 1, Math.Max(1, options.MaxTokensLimit));
        CheckRange(errors, P + "CollapseQueue", options.CollapseQueue, 0, MaxQueue);
        if (options.CollapseQueue > 0 && options.CollapseQueue >= options.Queue)
        {
            errors.Add($"{P}CollapseQueue must be < {P}Queue ({options.Queue}) to ever trigger, or 0 to disable (was {options.CollapseQueue}).");
        }

        if (!double.IsFinite(options.CollapseMs) || options.CollapseMs <= 0)
        {
            errors.Add($"{P}CollapseMs must be > 0 (was {options.CollapseMs}).");
        }

        if (options.PrefixCache is null)
        {
            errors.Add($"{P}PrefixCache must be set.");
        }
        else
        {
            CheckRange(errors, P + "PrefixCache:BlockTokens", options.PrefixCache.BlockTokens, 1, MaxBlockTokens);
            CheckRange(errors, P + "PrefixCache:Blocks", options.PrefixCache.Blocks, 1, MaxBlocks);
        }

        CheckListener(errors, P + "Http", options.Http);
        CheckListener(errors, P + "Grpc", options.Grpc);
        if (options.Http is not null && options.Grpc is not null && options.Http.Port != 0 && options.Http.Port == options.Grpc.Port)
        {
            errors.Add($"{P}Grpc:Port must differ from {P}Http:Port (both were {options.Http.Port}).");
        }

        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }

    private static void CheckRange(List<string> errors, string key, int value, int min, int max)
    {
        if (value < min)
        {
            errors.Add(min == 1 ? $"{key} must be > 0 (was {value})." : $"{key} must be >= {min} (was {value}).");
        }
        else if (value > max)
        {
            errors.Add($"{key} must be <= {max} (was {value}).");
        }
    }

    private static void CheckNonNegative(List<string> errors, string key, double value)
    {
        if (!double.IsFinite(value) || value < 0)
        {
            errors.Add($"{key} must be a finite number >= 0 (was {value}).");
        }
    }

    private static void CheckListener(List<string> errors, string key, SimListenerOptions? listener)
    {
        if (listener is null)
        {
            errors.Add($"{key} must be set.");
            return;
        }

        if (!listener.TryGetIPAddress(out _))
        {
            errors.Add($"{key}:Address must be an IP address, 'localhost' or '*' (was '{listener.Address}').");
        }

        if (listener.Port is < 0 or > 65535)
        {
            errors.Add($"{key}:Port must be between 0 and 65535 (was {listener.Port}).");
        }
    }
}
