using System.Diagnostics.Metrics;
using Gateway.Telemetry;

namespace Gateway.Tenants;

/// <summary>Why an authentication failed: the <c>reason</c> tag of <c>gateway.auth.failures</c>, a fixed set.</summary>
internal static class AuthFailure
{
    /// <summary>No credential on a route that requires one.</summary>
    public const string Missing = "missing";

    /// <summary>An API key or token that the gateway does not accept (unknown, revoked, bad signature, wrong audience or issuer, no tenant claim).</summary>
    public const string Invalid = "invalid";

    /// <summary>A JWT past its <c>exp</c> (plus the clock skew).</summary>
    public const string Expired = "expired";

    /// <summary>A valid JWT whose tenant claim names no configured tenant.</summary>
    public const string UnknownTenant = "unknown_tenant";

    /// <summary>An authenticated tenant calling a model outside its <c>Models</c>.</summary>
    public const string ModelNotAllowed = "model_not_allowed";

    /// <summary>Refused without checking: the client address failed too often in its window.</summary>
    public const string RateLimited = "rate_limited";

    /// <summary>A tenant with an allow-list sent a body whose model the gateway could not read (past the inspect limit, or not JSON).</summary>
    public const string ModelUncheckable = "model_uncheckable";

    /// <summary>The request named two different models (x-model and the body, or ?model= twice).</summary>
    public const string ModelMismatch = "model_mismatch";

    /// <summary>The request carried conflicting credentials (two Authorization headers, or different values in Authorization, x-api-key, api-key).</summary>
    public const string Conflicting = "conflicting";

    /// <summary>An admin API call with a wrong or missing <c>Gateway:Admin:Token</c>.</summary>
    public const string AdminToken = "admin_token";

    /// <summary>A JWT that could not be checked because the identity provider's signing keys could not be read (503; not counted against the client).</summary>
    public const string ProviderUnavailable = "provider_unavailable";
}

/// <summary>
/// Authentication's instruments on the gateway's meter. Prometheus names: <c>gateway_auth_failures_total{reason}</c>
/// (reason from <see cref="AuthFailure"/>), <c>gateway_auth_successes_total{credential}</c> (<c>api_key</c>, <c>jwt</c>),
/// <c>gateway_auth_key_store_errors_total{operation}</c> (a Redis call of the key store that failed: <c>refresh</c>,
/// <c>create</c>, <c>revoke</c>, <c>subscribe</c>), <c>gateway_auth_failed_attempts_untracked_total</c> (failures from
/// new addresses while <see cref="FailedAttempts.MaxAddresses"/> were tracked), and the gauge <c>gateway_auth_keys</c>
/// (API keys accepted now, configured and made), <c>gateway_auth_backend_key_errors_total</c> (failed re-reads of a
/// cluster's <c>Metadata:BackendApiKey</c>). Never a key or a tenant-supplied value as a tag.
/// </summary>
internal sealed class AuthMetrics
{
    private static readonly string[] s_reasons = [AuthFailure.Missing, AuthFailure.Invalid, AuthFailure.Expired, AuthFailure.UnknownTenant, AuthFailure.ModelNotAllowed, AuthFailure.RateLimited, AuthFailure.ProviderUnavailable, AuthFailure.ModelUncheckable, AuthFailure.ModelMismatch, AuthFailure.Conflicting, AuthFailure.AdminToken];
    private readonly Counter<long> _failures;
    private readonly Counter<long> _successes;
    private readonly Counter<long> _storeErrors;
    private readonly Counter<long> _untracked;
    private readonly Counter<long> _backendKeyErrors;

    public AuthMetrics(GatewayMetrics metrics, TenantDirectory directory)
    {
        var meter = metrics.Meter;
        _failures = meter.CreateCounter<long>("gateway.auth.failures", "{request}", "Requests refused by authentication, by reason (missing, invalid, expired, unknown_tenant, model_not_allowed, rate_limited, provider_unavailable).");
        _successes = meter.CreateCounter<long>("gateway.auth.successes", "{request}", "Requests authenticated, by credential (api_key, jwt).");
        _storeErrors = meter.CreateCounter<long>("gateway.auth.key_store.errors", "{call}", "Calls of the API key store to Redis that failed or timed out (the last known keys stay in force), by operation.");
        _untracked = meter.CreateCounter<long>("gateway.auth.failed_attempts.untracked", "{request}", "Failed attempts from a new client address not tracked because the failed-attempt table was full.");
        _backendKeyErrors = meter.CreateCounter<long>("gateway.auth.backend_key.errors", "{read}", "Re-reads of a cluster's Metadata:BackendApiKey that failed (empty, unreadable, deleted or several lines); the last good key stays in force.");
        meter.CreateObservableGauge("gateway.auth.keys", () => directory.Current.Keys.Count, "{key}", "API keys accepted now (configured and made through the admin API).");
        foreach (var reason in s_reasons)
        {
            _failures.Add(0, new KeyValuePair<string, object?>("reason", reason)); // every series exists from the start
        }
    }

    /// <summary>Counts a failed re-read of a cluster's backend credential (<see cref="Forwarding.BackendCredentials"/>).</summary>
    public void BackendKeyError() => _backendKeyErrors.Add(1);

    /// <summary>Counts a refusal.</summary>
    /// <param name="reason">One of <see cref="AuthFailure"/>.</param>
    public void Failure(string reason)
    {
        if (_failures.Enabled)
        {
            _failures.Add(1, new KeyValuePair<string, object?>("reason", reason));
        }
    }

    /// <summary>Counts an authenticated request.</summary>
    public void Success(Credential credential)
    {
        if (_successes.Enabled)
        {
            _successes.Add(1, new KeyValuePair<string, object?>("credential", credential == Credential.Jwt ? "jwt" : "api_key"));
        }
    }

    /// <summary>Counts a failed key store call.</summary>
    /// <param name="operation"><c>refresh</c>, <c>create</c>, <c>revoke</c> or <c>subscribe</c>.</param>
    public void StoreError(string operation) => _storeErrors.Add(1, new KeyValuePair<string, object?>("operation", operation));

    /// <summary>Counts a failure that could not be tracked by address.</summary>
    public void Untracked() => _untracked.Add(1);
}
