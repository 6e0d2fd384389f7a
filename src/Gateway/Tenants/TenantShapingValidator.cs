using Gateway.Configuration;

namespace Gateway.Tenants;

/// <summary>
/// Checks what shaping reads of each tenant (<c>Gateway:Tenants:{tenant}</c>) beyond the ranges and names that
/// <see cref="TenantsValidator"/> checks: a token budget the token policies can count, and a <c>Priority</c> that is a
/// class of the admission queue. Every message names the full key. Run by <see cref="ConfigurationValidator"/> at
/// start-up and on every reload.
/// </summary>
internal static class TenantShapingValidator
{
    /// <summary>Adds one message per problem.</summary>
    /// <param name="options">The bound configuration.</param>
    /// <param name="errors">Where messages are added.</param>
    public static void Validate(GatewayOptions options, List<string> errors)
    {
        var classes = options.Shaping.Admission.Values
            .SelectMany(static a => a.PriorityClasses.Count > 0 ? a.PriorityClasses : [.. Shaping.AdmissionOptions.DefaultPriorityClasses])
            .Concat(Shaping.AdmissionOptions.DefaultPriorityClasses).ToHashSet(StringComparer.OrdinalIgnoreCase);
        foreach (var (name, tenant) in options.Tenants)
        {
            var k = $"{TenantOptions.Section}:{name}";
            if (string.IsNullOrWhiteSpace(tenant.Priority) || !classes.Contains(tenant.Priority))
            {
                errors.Add($"{k}:Priority must name a priority class of the admission queue ({string.Join(", ", classes)}) (was '{tenant.Priority}').");
            }

            if (tenant.Limits.Tokens > Shaping.ShapingOptionsValidator.MaxTokensPerMinute)
            {
                errors.Add($"{k}:Limits:Tokens must be <= {Shaping.ShapingOptionsValidator.MaxTokensPerMinute} (was {tenant.Limits.Tokens}).");
            }
        }
    }
}
