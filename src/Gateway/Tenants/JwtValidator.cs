using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Protocols;
using Microsoft.IdentityModel.Protocols.OpenIdConnect;
using Microsoft.IdentityModel.Tokens;

namespace Gateway.Tenants;

/// <summary>How a JWT fared.</summary>
/// <param name="Tenant">The tenant claim's value when the token is valid; null otherwise.</param>
/// <param name="Failure">When invalid, one of <see cref="AuthFailure"/> (<c>invalid</c> or <c>expired</c>).</param>
/// <param name="Message">When invalid, a sentence for the client (never the token).</param>
/// <param name="ProviderUnavailable">True when the token could not be checked at all (the identity provider's keys could not be read): not the caller's failure.</param>
internal readonly record struct JwtResult(string? Tenant, string? Failure, string? Message, bool ProviderUnavailable = false);

/// <summary>
/// Validates JWT bearer tokens the way ASP.NET Core's JwtBearer handler does (its <see cref="JsonWebTokenHandler"/>,
/// <see cref="TokenValidationParameters"/> and, with an <c>Authority</c>, its OIDC discovery
/// <see cref="ConfigurationManager{T}"/> that caches the provider's signing keys and refreshes them), called directly
/// from <see cref="AuthStep"/> instead of through the authentication middleware: the step model answers refusals in
/// each protocol's terms itself, and a route decides whether authentication applies. Signatures are required
/// (an unsigned <c>alg: none</c> token is invalid), so are <c>exp</c>, the issuer and, when configured, the audience.
/// </summary>
/// <remarks>
/// Stranger review D1: a <c>SigningKeysFile</c> is watched (a file-system watcher) and re-read when it changes, so a key
/// removed from it (compromised) is refused within about a second, without a configuration reload; a file that cannot
/// be read or holds no key then leaves the last keys in force. D2 (dotnet/aspnetcore#28948): with an <c>Authority</c>,
/// a token whose key id is unknown makes the validator ask the discovery document again (at most once per
/// <see cref="UnknownKidRefresh"/>) and validate once more before refusing, so a provider's key rotation is followed
/// within seconds instead of at the next daily refresh.
/// </remarks>
internal sealed class JwtValidator : IDisposable
{
    /// <summary>The least time between two refreshes of the discovery document forced by unknown key ids.</summary>
    public static readonly TimeSpan UnknownKidRefresh = TimeSpan.FromSeconds(30);

    private readonly JsonWebTokenHandler _handler = new() { MapInboundClaims = false };
    private TokenValidationParameters _parameters;
    private FileSystemWatcher? _watcher;
    private long _lastForcedRefresh = long.MinValue;
    private readonly ConfigurationManager<OpenIdConnectConfiguration>? _discovery;
    private readonly string _tenantClaim;

    private JwtValidator(JwtOptions options, IEnumerable<SecurityKey> keys, ConfigurationManager<OpenIdConnectConfiguration>? discovery)
    {
        _tenantClaim = options.TenantClaim;
        _discovery = discovery;
        _parameters = new TokenValidationParameters
        {
            ValidIssuer = options.Issuer,
            ValidateIssuer = true,
            ValidAudience = options.Audience,
            ValidateAudience = !string.IsNullOrWhiteSpace(options.Audience),
            ValidateLifetime = true,
            RequireExpirationTime = true,
            RequireSignedTokens = true,
            ValidateIssuerSigningKey = true,
            IssuerSigningKeys = [.. keys],
            ClockSkew = options.ClockSkew,
            ConfigurationManager = discovery,
        };
    }

    /// <summary>The options it was made from (kept while a reload does not change them).</summary>
    public JwtOptions? Options { get; private init; }

    /// <summary>
    /// Makes a validator from <paramref name="options"/>: the signing keys are read from <c>SigningKeysFile</c> now, or
    /// found by OIDC discovery at <c>Authority</c> on first use (and refreshed as the handler does, daily or when an
    /// unknown key id arrives).
    /// </summary>
    /// <exception cref="InvalidOperationException">The signing keys file cannot be read or holds no key (the message names the key).</exception>
    public static JwtValidator Create(JwtOptions options)
    {
        if (!string.IsNullOrWhiteSpace(options.SigningKeysFile))
        {
            var validator = new JwtValidator(options, ReadSigningKeys(options.SigningKeysFile), discovery: null) { Options = options };
            validator.Watch(options.SigningKeysFile);
            return validator;
        }

        var authority = options.Authority!.TrimEnd('/');
        var discovery = new ConfigurationManager<OpenIdConnectConfiguration>(authority + "/.well-known/openid-configuration", new OpenIdConnectConfigurationRetriever(),
            new HttpDocumentRetriever { RequireHttps = authority.StartsWith("https://", StringComparison.OrdinalIgnoreCase) })
        {
            RefreshInterval = UnknownKidRefresh, // how often RequestRefresh may really refresh (the default is 5 minutes)
        };
        return new JwtValidator(options, [], discovery) { Options = options };
    }

    private void Watch(string file)
    {
        // Without a watcher the file is still re-read on a configuration reload that changes Gateway:Auth:Jwt.
        var path = Path.GetFullPath(file);
        _watcher = Hosting.FileWatch.TryWatch(path, deletionsAndAttributes: false, () => Reload(path));
    }

    private void Reload(string path)
    {
        try
        {
            var keys = ReadSigningKeys(path);
            var parameters = Volatile.Read(ref _parameters).Clone();
            parameters.IssuerSigningKeys = [.. keys];
            Volatile.Write(ref _parameters, parameters);
        }
        catch (InvalidOperationException)
        {
            // Mid-write or broken: the last keys stay; the write that completes it raises another change.
        }
    }

    /// <inheritdoc/>
    public void Dispose() => _watcher?.Dispose();

    /// <summary>Validates <paramref name="token"/>; never throws for a bad token.</summary>
    public async ValueTask<JwtResult> ValidateAsync(string token, CancellationToken cancellationToken)
    {
        var parameters = Volatile.Read(ref _parameters);
        OpenIdConnectConfiguration? configuration = null;
        if (_discovery is not null)
        {
            try
            {
                configuration = await _discovery.GetConfigurationAsync(cancellationToken);
            }
            catch (Exception ex) when (ex is InvalidOperationException or IOException or HttpRequestException or ArgumentException or SecurityTokenException)
            {
                return Unavailable();
            }

            parameters = WithDiscovered(configuration);
        }

        TokenValidationResult result;
        try
        {
            result = await _handler.ValidateTokenAsync(token, parameters);
            if (!result.IsValid && result.Exception is SecurityTokenSignatureKeyNotFoundException && _discovery is not null && configuration is not null
                && await RefreshedAsync(configuration, cancellationToken) is { } fresh)
            {
                // dotnet/aspnetcore#28948: the provider rotated its keys; validate once more with the new document.
                result = await _handler.ValidateTokenAsync(token, WithDiscovered(fresh));
            }
        }
        catch (Exception ex) when (ex is ArgumentException or SecurityTokenException)
        {
            return new JwtResult(null, AuthFailure.Invalid, "The bearer token is not a valid JWT.");
        }

        if (!result.IsValid)
        {
            return result.Exception switch
            {
                SecurityTokenExpiredException expired => new JwtResult(null, AuthFailure.Expired,
                    $"The bearer token expired at {expired.Expires:yyyy-MM-ddTHH:mm:ssZ}; get a new one from the identity provider."),
                SecurityTokenNotYetValidException => new JwtResult(null, AuthFailure.Invalid, "The bearer token is not valid yet (nbf)."),
                SecurityTokenInvalidAudienceException => new JwtResult(null, AuthFailure.Invalid, "The bearer token is for another audience (aud)."),
                SecurityTokenInvalidIssuerException => new JwtResult(null, AuthFailure.Invalid, "The bearer token is from another issuer (iss)."),
                SecurityTokenNoExpirationException => new JwtResult(null, AuthFailure.Invalid, "The bearer token has no expiry (exp)."),
                SecurityTokenSignatureKeyNotFoundException or SecurityTokenInvalidSignatureException => new JwtResult(null, AuthFailure.Invalid, "The bearer token's signature is not valid."),
                _ => new JwtResult(null, AuthFailure.Invalid, "The bearer token is not valid."),
            };
        }

        if (!result.Claims.TryGetValue(_tenantClaim, out var claim))
        {
            return new JwtResult(null, AuthFailure.Invalid, $"The bearer token has no '{_tenantClaim}' claim naming the caller's tenant.");
        }

        if (claim is not string tenant || string.IsNullOrWhiteSpace(tenant))
        {
            // Stranger review R10: say what the claim was, not that it is missing.
            return new JwtResult(null, AuthFailure.Invalid, $"The bearer token's '{_tenantClaim}' claim must be one string naming the caller's tenant; it is {Describe(claim)}.");
        }

        return new JwtResult(tenant, null, null);
    }

    /// <summary>What a claim's value is, for a message (its kind, never its content).</summary>
    internal static string Describe(object? claim) => claim switch
    {
        null => "null",
        string => "an empty string",
        bool => "a boolean",
        int or long or double or decimal or float => "a number",
        System.Collections.IList list => $"an array of {list.Count} element(s)",
        System.Collections.IEnumerable and not string => "an array",
        _ => claim.GetType().Name.Contains("Json", StringComparison.Ordinal) || claim is IDictionary<string, object> ? "a JSON object" : "a " + claim.GetType().Name,
    };

    private TokenValidationParameters WithDiscovered(OpenIdConnectConfiguration configuration)
    {
        var parameters = _parameters.Clone();
        parameters.IssuerSigningKeys = configuration.SigningKeys;
        parameters.ValidIssuer ??= configuration.Issuer;
        return parameters;
    }

    /// <summary>
    /// Asks the discovery document again (at most once per <see cref="UnknownKidRefresh"/>) and waits up to 5 s for a
    /// document other than <paramref name="current"/>; null when no refresh was due or none came.
    /// </summary>
    private async Task<OpenIdConnectConfiguration?> RefreshedAsync(OpenIdConnectConfiguration current, CancellationToken cancellationToken)
    {
        var now = Environment.TickCount64;
        var last = Interlocked.Read(ref _lastForcedRefresh);
        if (last != long.MinValue && now - last < (long)UnknownKidRefresh.TotalMilliseconds)
        {
            return null;
        }

        if (Interlocked.CompareExchange(ref _lastForcedRefresh, now, last) != last)
        {
            return null; // another request is refreshing
        }

        _discovery!.RequestRefresh();
        for (var i = 0; i < 50; i++)
        {
            try
            {
                var configuration = await _discovery.GetConfigurationAsync(cancellationToken);
                if (!ReferenceEquals(configuration, current))
                {
                    return configuration;
                }
            }
            catch (Exception ex) when (ex is InvalidOperationException or IOException or HttpRequestException or ArgumentException or SecurityTokenException)
            {
                return null;
            }

            await Task.Delay(100, cancellationToken); // the manager refreshes in the background in IdentityModel 8
        }

        return null;
    }

    private static JwtResult Unavailable() =>
        new(null, AuthFailure.ProviderUnavailable, "The identity provider's signing keys could not be read, so the token cannot be checked now; try again later.", ProviderUnavailable: true);

    /// <summary>Whether <paramref name="bearer"/> looks like a JWT (three base64url parts separated by dots, the first a JSON header).</summary>
    public static bool LooksLikeJwt(ReadOnlySpan<char> bearer) =>
        bearer.StartsWith("eyJ", StringComparison.Ordinal) && bearer.Count('.') == 2;

    /// <summary>
    /// Reads the signing keys of <paramref name="path"/>: a JWKS document (<c>{"keys": [...]}</c>), or PEM blocks (public
    /// keys, RSA or EC, or certificates), every key in the file.
    /// </summary>
    /// <exception cref="InvalidOperationException">Unreadable, or no key in it; the message names <c>Gateway:Auth:Jwt:SigningKeysFile</c>.</exception>
    public static IReadOnlyList<SecurityKey> ReadSigningKeys(string path)
    {
        const string key = AuthOptions.Section + ":Jwt:SigningKeysFile";
        string text;
        try
        {
            text = File.ReadAllText(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or NotSupportedException or ArgumentException)
        {
            throw new InvalidOperationException($"{key} '{path}' cannot be read: {ex.Message}");
        }

        var keys = new List<SecurityKey>();
        if (text.TrimStart().StartsWith('{'))
        {
            try
            {
                keys.AddRange(new JsonWebKeySet(text).GetSigningKeys());
            }
            catch (Exception ex) when (ex is ArgumentException or System.Text.Json.JsonException)
            {
                throw new InvalidOperationException($"{key} '{path}' is not a valid JWKS document: {ex.Message}");
            }
        }
        else
        {
            var rest = text.AsSpan();
            while (PemEncoding.TryFind(rest, out var fields))
            {
                var block = rest[fields.Location].ToString();
                var label = rest[fields.Label];
                try
                {
                    keys.Add(label switch
                    {
                        "CERTIFICATE" => new X509SecurityKey(X509Certificate2.CreateFromPem(block)),
                        "RSA PUBLIC KEY" => Rsa(block),
                        "PUBLIC KEY" => PublicKey(block),
                        _ => throw new CryptographicException($"a '{label}' block is not a public key or certificate"),
                    });
                }
                catch (CryptographicException ex)
                {
                    throw new InvalidOperationException($"{key} '{path}': {ex.Message}");
                }

                rest = rest[fields.Location.End..];
            }
        }

        if (keys.Count == 0)
        {
            throw new InvalidOperationException($"{key} '{path}' holds no signing key (expected a PEM public key or certificate, or a JWKS document).");
        }

        return keys;
    }

    private static RsaSecurityKey Rsa(string pem)
    {
        var rsa = RSA.Create();
        rsa.ImportFromPem(pem);
        return new RsaSecurityKey(rsa);
    }

    private static SecurityKey PublicKey(string pem)
    {
        try
        {
            return Rsa(pem);
        }
        catch (CryptographicException)
        {
            var ec = ECDsa.Create();
            ec.ImportFromPem(pem);
            return new ECDsaSecurityKey(ec);
        }
    }
}
