using System.Security.Cryptography.X509Certificates;
using Gateway.Listeners;
using Gateway.Routing;
using Yarp.ReverseProxy.Configuration;

namespace Gateway.Configuration;

/// <summary>
/// The one check of the gateway's configuration, run on the start-up configuration and on every reload candidate
/// (<see cref="ConfigurationGate"/>), reporting every problem (not only the first), each as one line that names the
/// full configuration key, the value found and what is expected. In order:
/// <list type="number">
/// <item><see cref="KnownKeys"/>: every name under <c>Gateway</c> and <c>ReverseProxy</c> is one the gateway or YARP reads ("did you mean"), every value converts.</item>
/// <item>Each section is bound to its sealed record and checked by its validator: the records' DataAnnotations ranges
/// (validators written by the <c>[OptionsValidator]</c> generator, covering every range Polly and
/// System.Threading.RateLimiting enforce), then the rules a range cannot say.</item>
/// <item>Rules across sections (admission on a defined cluster, key priorities, the admin token off loopback).</item>
/// <item><c>ReverseProxy</c>, parsed by YARP's own configuration reader and checked by YARP's <c>IConfigValidator</c>,
/// which runs YARP's rules and ours (<see cref="ProxyRules"/>, registered as <c>IRouteValidator</c> / <c>IClusterValidator</c>).</item>
/// <item>At start-up only, what touches the machine: certificates are loaded, the recording directory is created.</item>
/// </list>
/// </summary>
internal static class ConfigurationValidator
{
    /// <summary>The bound options and loaded certificates, or the errors.</summary>
    public sealed record Result(GatewayOptions Options, IReadOnlyDictionary<ListenerName, X509Certificate2> Certificates, IReadOnlyList<string> Errors)
    {
        public ListenersOptions Listeners => Options.Listeners;

        public GatewayLimitsOptions Limits => Options.Limits;

        public GatewayTelemetryOptions Telemetry => Options.Telemetry;

        public Admin.AdminOptions Admin => Options.Admin;
    }

    /// <summary>Checks <paramref name="configuration"/> whole.</summary>
    /// <param name="configuration">The configuration (at start-up) or a reload candidate.</param>
    /// <param name="startup">True at start-up: certificates are loaded and the recording directory is created too.</param>
    public static Result Validate(IConfiguration configuration, bool startup = true)
    {
        var errors = new List<string>();
        var certificates = new Dictionary<ListenerName, X509Certificate2>();
        KnownKeys.Check(configuration, errors);
        if (errors.Count > 0)
        {
            // The values below would only repeat these problems in the binder's words.
            return new Result(new GatewayOptions(), certificates, errors);
        }

        var options = new GatewayOptions
        {
            Listeners = Bind<ListenersOptions>(configuration, ListenersOptions.Section, errors),
            Limits = Bind<GatewayLimitsOptions>(configuration, GatewayLimitsOptions.Section, errors),
            Telemetry = Bind<GatewayTelemetryOptions>(configuration, GatewayTelemetryOptions.Section, errors),
            Admin = Bind<Admin.AdminOptions>(configuration, Admin.AdminOptions.Section, errors),
            Recording = Bind<Recording.RecordingOptions>(configuration, Recording.RecordingOptions.Section, errors),
            Shaping = Bind<Shaping.ShapingOptions>(configuration, Shaping.ShapingOptions.Section, errors),
            Models = Bind<ConfigMap<Routing.ModelOptions>>(configuration, Routing.ModelOptions.Section, errors),
            Auth = Bind<Tenants.AuthOptions>(configuration, Tenants.AuthOptions.Section, errors),
            Tenants = Bind<ConfigMap<Tenants.TenantOptions>>(configuration, Tenants.TenantOptions.Section, errors),
        };
        if (errors.Count > 0)
        {
            return new Result(options, certificates, errors);
        }

        ListenersValidator.Validate(options.Listeners, errors, configuration);
        GatewayLimitsValidator.Validate(options.Limits, errors, configuration);
        AdminOptionsValidator.Validate(options.Admin, errors, configuration);
        if (!string.IsNullOrWhiteSpace(options.Telemetry.OtlpEndpoint) && !Uri.TryCreate(options.Telemetry.OtlpEndpoint, UriKind.Absolute, out _))
        {
            errors.Add($"{GatewayTelemetryOptions.Section}:OtlpEndpoint must be an absolute URI (was '{options.Telemetry.OtlpEndpoint}').");
        }

        if (!GatewayTelemetryOptions.IsValidProviderName(options.Telemetry.GenAiProviderName))
        {
            errors.Add($"{GatewayTelemetryOptions.Section}:GenAiProviderName must be 1 to 64 lower-case letters, digits, '.', '_' or '-', such as 'openai' (was '{options.Telemetry.GenAiProviderName}').");
        }

        Recording.RecordingOptionsValidator.Validate(options.Recording, errors, configuration);
        Shaping.ShapingOptionsValidator.Validate(options.Shaping, errors, configuration);
        Tenants.TenantShapingValidator.Validate(options, errors);
        ValidateAcrossSections(configuration, options, errors);
        ValidateProxy(configuration, options.Shaping, errors);
        if (startup && errors.Count == 0)
        {
            LoadCertificates(options.Listeners, certificates, errors);
            PrepareRecordingDirectory(options.Recording, errors);
        }

        return new Result(options, certificates, errors);
    }

    /// <summary>Binds a section, turning a conversion failure into an error that names the key.</summary>
    internal static T Bind<T>(IConfiguration configuration, string section, List<string> errors)
        where T : new()
    {
        var value = new T();
        try
        {
            configuration.GetSection(section).Bind(value);
        }
        catch (InvalidOperationException ex)
        {
            errors.Add(ex.InnerException is null ? ex.Message : $"{ex.Message} {ex.InnerException.Message}");
        }

        return value;
    }

    private static void ValidateAcrossSections(IConfiguration configuration, GatewayOptions options, List<string> errors)
    {
        var listeners = options.Listeners;
        if (listeners.IsEnabled(ListenerName.Admin) && listeners.Admin.TryGetIPAddress(out var adminAddress)
            && !System.Net.IPAddress.IsLoopback(adminAddress) && string.IsNullOrWhiteSpace(options.Admin.Token))
        {
            errors.Add($"{Admin.AdminOptions.Section}:Token is required when {ListenersOptions.Section}:Admin:Address is not loopback (was '{listeners.Admin.Address}'): the admin API starts and stops recordings.");
        }

        var clusterIds = ProxyCandidate.ClusterIdsOf(configuration);
        foreach (var admission in options.Shaping.Admission.Keys.Where(c => !clusterIds.Contains(c)))
        {
            errors.Add($"{Shaping.ShapingOptions.Section}:Admission:{admission} names cluster '{admission}', which is not defined under ReverseProxy:Clusters.");
        }

        Routing.ModelsValidator.Validate(options.Models, clusterIds, errors, configuration);
        Tenants.TenantsValidator.Validate(options, configuration, errors);

        var routeIds = configuration.GetSection("ReverseProxy:Routes").GetChildren().Select(static r => r.Key).ToHashSet(StringComparer.OrdinalIgnoreCase);
        foreach (var route in options.Recording.Sampling.Routes.Keys.Where(r => !routeIds.Contains(r)))
        {
            errors.Add($"{Recording.RecordingOptions.Section}:Sampling:Routes:{route} names route '{route}', which is not defined under ReverseProxy:Routes.");
        }

        var shaping = options.Shaping;
        var classes = shaping.Admission.Values.SelectMany(static a => a.PriorityClasses.Count > 0 ? a.PriorityClasses : [.. Shaping.AdmissionOptions.DefaultPriorityClasses])
            .Concat(Shaping.AdmissionOptions.DefaultPriorityClasses).ToHashSet(StringComparer.OrdinalIgnoreCase);
        foreach (var (key, priority) in shaping.KeyPriorities.Where(kp => !string.IsNullOrWhiteSpace(kp.Value) && !classes.Contains(kp.Value)))
        {
            errors.Add($"{Shaping.ShapingOptions.Section}:KeyPriorities:{key} names priority class '{priority}', which no admission configuration has (classes: {string.Join(", ", classes)}).");
        }
    }

    /// <summary>
    /// Reads <c>ReverseProxy</c> with YARP's own configuration reader and checks every route and cluster with YARP's
    /// <see cref="IConfigValidator"/>, in a small container holding YARP's validators and the gateway's
    /// (<see cref="ProxyRules.AddGatewayProxyRules"/>, the registration the gateway's YARP has too) with
    /// <paramref name="shaping"/> and this configuration's clusters as what routes are checked against.
    /// </summary>
    private static void ValidateProxy(IConfiguration configuration, Shaping.ShapingOptions shaping, List<string> errors)
    {
        var services = new ServiceCollection();
        services.AddLogging();
        services.AddSingleton<IProxyCandidateSource>(new FixedCandidate(new ProxyCandidate(shaping, ProxyCandidate.ClusterIdsOf(configuration))));
        services.AddReverseProxy().LoadFromConfig(configuration.GetSection("ReverseProxy")).AddGatewayProxyRules();
        using var provider = services.BuildServiceProvider();

        IProxyConfig proxy;
        try
        {
            proxy = provider.GetRequiredService<IProxyConfigProvider>().GetConfig();
        }
        catch (Exception ex) when (ex is InvalidOperationException or FormatException or ArgumentException or OverflowException)
        {
            errors.Add($"ReverseProxy: {Messages(ex)}");
            return;
        }

        var validator = provider.GetRequiredService<IConfigValidator>();
        foreach (var route in proxy.Routes)
        {
            foreach (var error in validator.ValidateRouteAsync(route).AsTask().GetAwaiter().GetResult())
            {
                errors.Add(Keyed($"ReverseProxy:Routes:{route.RouteId}", error));
            }
        }

        foreach (var cluster in proxy.Clusters)
        {
            foreach (var error in validator.ValidateClusterAsync(cluster).AsTask().GetAwaiter().GetResult())
            {
                errors.Add(Keyed($"ReverseProxy:Clusters:{cluster.ClusterId}", error));
            }
        }
    }

    /// <summary>Our rules' messages start with their key; YARP's get the route's or cluster's key in front.</summary>
    private static string Keyed(string key, Exception error) =>
        error.Message.StartsWith("ReverseProxy:", StringComparison.Ordinal) ? error.Message : $"{key}: {Messages(error)}";

    private static string Messages(Exception ex)
    {
        var parts = new List<string>();
        for (Exception? e = ex; e is not null; e = e.InnerException)
        {
            parts.Add(e.Message);
        }

        return string.Join(" ", parts.Distinct());
    }

    private static void LoadCertificates(ListenersOptions listeners, Dictionary<ListenerName, X509Certificate2> certificates, List<string> errors)
    {
        foreach (var name in ListenerNames.All)
        {
            var o = listeners.Get(name);
            if (listeners.IsEnabled(name) && o.HasCertificate && CertificateLoader.TryLoad(o.Certificate!, $"{ListenersOptions.Section}:{name}:Certificate", errors) is { } cert)
            {
                certificates[name] = cert;
            }
        }
    }

    /// <summary>The file store's directory must be usable now, not when the first recording starts.</summary>
    private static void PrepareRecordingDirectory(Recording.RecordingOptions recording, List<string> errors)
    {
        if (!string.IsNullOrWhiteSpace(recording.Redis) || string.IsNullOrWhiteSpace(recording.Directory))
        {
            return;
        }

        try
        {
            if (File.Exists(recording.Directory))
            {
                errors.Add($"{Recording.RecordingOptions.Section}:Directory '{recording.Directory}' is a file, not a directory.");
            }
            else
            {
                Directory.CreateDirectory(recording.Directory);
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or NotSupportedException or ArgumentException)
        {
            errors.Add($"{Recording.RecordingOptions.Section}:Directory '{recording.Directory}' cannot be used: {ex.Message}");
        }
    }

    private sealed class FixedCandidate(ProxyCandidate candidate) : IProxyCandidateSource
    {
        public ProxyCandidate Candidate => candidate;
    }
}

/// <summary>Validates <see cref="ListenersOptions"/>: each listener's ranges, address, certificate and port, every problem with its key.</summary>
internal static class ListenersValidator
{
    private static readonly ListenerOptionsRanges s_ranges = new();

    public static void Validate(ListenersOptions listeners, List<string> errors, IConfiguration? raw = null)
    {
        var ports = new Dictionary<(string, int), ListenerName>();
        foreach (var name in ListenerNames.All)
        {
            var key = $"{ListenersOptions.Section}:{name}";
            var o = listeners.Get(name);
            if (!listeners.IsEnabled(name))
            {
                continue;
            }

            if (name == ListenerName.Https && !o.HasCertificate)
            {
                errors.Add($"{key}:Enabled is true but {key}:Certificate:Path is not set: the HTTPS listener needs a certificate (PFX, or PEM with KeyPath).");
            }

            OptionsRanges.Check(s_ranges, key, o, raw, errors);
            if (!o.TryGetIPAddress(out _))
            {
                errors.Add($"{key}:Address must be an IP address or 'localhost' (was '{o.Address}').");
            }
            else if (o.Port > 0 && !ports.TryAdd((o.Address, o.Port), name))
            {
                errors.Add($"{key}:Port {o.Port} is already used by {ListenersOptions.Section}:{ports[(o.Address, o.Port)]}:Port; each listener needs its own port.");
            }
        }
    }
}

/// <summary>Validates <see cref="GatewayLimitsOptions"/>.</summary>
/// <summary>The ranges of <c>Gateway:Admin</c>.</summary>
internal static class AdminOptionsValidator
{
    private static readonly AdminOptionsRanges s_ranges = new();

    public static void Validate(Admin.AdminOptions admin, List<string> errors, IConfiguration? raw = null) =>
        OptionsRanges.Check(s_ranges, Admin.AdminOptions.Section, admin, raw, errors);
}

internal static class GatewayLimitsValidator
{
    private static readonly GatewayLimitsOptionsRanges s_ranges = new();

    public static void Validate(GatewayLimitsOptions limits, List<string> errors, IConfiguration? raw = null) =>
        OptionsRanges.Check(s_ranges, GatewayLimitsOptions.Section, limits, raw, errors);
}
