using System.Globalization;
using System.Security.Cryptography.X509Certificates;
using Gateway.Forwarding;
using Gateway.Listeners;
using Gateway.Routing;

namespace Gateway.Configuration;

/// <summary>
/// Checks the whole configuration before the gateway opens a port, reporting every problem (not only the first),
/// each as one line that names the full configuration key, the value found and what is expected.
/// </summary>
internal static class StartupValidation
{
    /// <summary>The validated listener settings and loaded certificates, or the errors.</summary>
    public sealed record Result(ListenersOptions Listeners, GatewayLimitsOptions Limits, GatewayTelemetryOptions Telemetry, Admin.AdminOptions Admin,
        IReadOnlyDictionary<ListenerName, X509Certificate2> Certificates, IReadOnlyList<string> Errors);

    public static Result Validate(IConfiguration configuration)
    {
        var errors = new List<string>();
        KnownKeys.Check(configuration, errors);
        if (errors.Count > 0)
        {
            // The values below would only repeat these problems in the binder's words.
            return new Result(new ListenersOptions(), new GatewayLimitsOptions(), new GatewayTelemetryOptions(), new Admin.AdminOptions(), new Dictionary<ListenerName, X509Certificate2>(), errors);
        }

        var listeners = Bind<ListenersOptions>(configuration, ListenersOptions.Section, errors);
        var limits = Bind<GatewayLimitsOptions>(configuration, GatewayLimitsOptions.Section, errors);
        var telemetry = Bind<GatewayTelemetryOptions>(configuration, GatewayTelemetryOptions.Section, errors);
        var admin = Bind<Admin.AdminOptions>(configuration, Admin.AdminOptions.Section, errors);
        if (admin.WarmupRequests is < 0 or > 10_000)
        {
            errors.Add($"{Admin.AdminOptions.Section}:WarmupRequests must be 0 to 10000 (was {admin.WarmupRequests}).");
        }

        if (listeners.IsEnabled(ListenerName.Admin) && listeners.Admin.TryGetIPAddress(out var adminAddress)
            && !System.Net.IPAddress.IsLoopback(adminAddress) && string.IsNullOrWhiteSpace(admin.Token))
        {
            errors.Add($"{Admin.AdminOptions.Section}:Token is required when {ListenersOptions.Section}:Admin:Address is not loopback (was '{listeners.Admin.Address}'): the admin API starts and stops recordings.");
        }

        var certificates = new Dictionary<ListenerName, X509Certificate2>();

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

            if (o.Port is < 0 or > 65535)
            {
                errors.Add($"{key}:Port must be between 0 and 65535 (was {o.Port}).");
            }

            if (!o.TryGetIPAddress(out _))
            {
                errors.Add($"{key}:Address must be an IP address or 'localhost' (was '{o.Address}').");
            }
            else if (o.Port > 0 && !ports.TryAdd((o.Address, o.Port), name))
            {
                errors.Add($"{key}:Port {o.Port} is already used by {ListenersOptions.Section}:{ports[(o.Address, o.Port)]}:Port; each listener needs its own port.");
            }

            if (o.HasCertificate && CertificateLoader.TryLoad(o.Certificate!, $"{key}:Certificate", errors) is { } cert)
            {
                certificates[name] = cert;
            }
        }

        if (limits.WebSocketIdleTimeout <= TimeSpan.Zero)
        {
            errors.Add($"{GatewayLimitsOptions.Section}:WebSocketIdleTimeout must be positive (was {limits.WebSocketIdleTimeout}).");
        }

        if (limits.MaxRequestBodyBytes <= 0)
        {
            errors.Add($"{GatewayLimitsOptions.Section}:MaxRequestBodyBytes must be > 0 (was {limits.MaxRequestBodyBytes}).");
        }

        if (!string.IsNullOrWhiteSpace(telemetry.OtlpEndpoint) && !Uri.TryCreate(telemetry.OtlpEndpoint, UriKind.Absolute, out _))
        {
            errors.Add($"{GatewayTelemetryOptions.Section}:OtlpEndpoint must be an absolute URI (was '{telemetry.OtlpEndpoint}').");
        }

        var recording = Bind<Recording.RecordingOptions>(configuration, Recording.RecordingOptions.Section, errors);
        Recording.RecordingOptionsValidator.Validate(recording, errors);
        if (string.IsNullOrWhiteSpace(recording.Redis) && !string.IsNullOrWhiteSpace(recording.Directory))
        {
            // The file store's directory must be usable now, not when the first recording starts.
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
        var shaping = Bind<Shaping.ShapingOptions>(configuration, Shaping.ShapingOptions.Section, errors);
        Shaping.ShapingOptionsValidator.Validate(shaping, errors);
        ValidateProxy(configuration.GetSection("ReverseProxy"), shaping, errors);
        var routeIds = configuration.GetSection("ReverseProxy:Routes").GetChildren().Select(static r => r.Key).ToHashSet(StringComparer.OrdinalIgnoreCase);
        foreach (var route in recording.Sampling.Routes.Keys.Where(r => !routeIds.Contains(r)))
        {
            errors.Add($"{Recording.RecordingOptions.Section}:Sampling:Routes:{route} names route '{route}', which is not defined under ReverseProxy:Routes.");
        }

        ValidateKeyPriorities(shaping, errors);
        return new Result(listeners, limits, telemetry, admin, certificates, errors);
    }

    /// <summary>
    /// Checks what a reload changes (Gateway:Shaping and ReverseProxy, and that every Gateway key is known) with the
    /// start-up rules, reporting every problem.
    /// </summary>
    /// <returns>The shaping options of <paramref name="configuration"/>; in force only when no error was added.</returns>
    public static Shaping.ShapingOptions ValidateReload(IConfiguration configuration, List<string> errors)
    {
        KnownKeys.Check(configuration, errors);
        if (errors.Count > 0)
        {
            return new Shaping.ShapingOptions();
        }

        var shaping = Bind<Shaping.ShapingOptions>(configuration, Shaping.ShapingOptions.Section, errors);
        Shaping.ShapingOptionsValidator.Validate(shaping, errors);
        ValidateProxy(configuration.GetSection("ReverseProxy"), shaping, errors);
        ValidateKeyPriorities(shaping, errors);
        return shaping;
    }

    private static void ValidateKeyPriorities(Shaping.ShapingOptions shaping, List<string> errors)
    {
        var classes = shaping.Admission.Values.SelectMany(static a => a.PriorityClasses.Count > 0 ? a.PriorityClasses : [.. Shaping.AdmissionOptions.DefaultPriorityClasses])
            .Concat(Shaping.AdmissionOptions.DefaultPriorityClasses).ToHashSet(StringComparer.OrdinalIgnoreCase);
        foreach (var (key, priority) in shaping.KeyPriorities.Where(kp => !classes.Contains(kp.Value)))
        {
            errors.Add($"{Shaping.ShapingOptions.Section}:KeyPriorities:{key} names priority class '{priority}', which no admission configuration has (classes: {string.Join(", ", classes)}).");
        }
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

    private static void ValidateProxy(IConfigurationSection proxy, Shaping.ShapingOptions shaping, List<string> errors)
    {
        var clusters = proxy.GetSection("Clusters").GetChildren().ToList();
        var clusterIds = new HashSet<string>(clusters.Select(c => c.Key), StringComparer.OrdinalIgnoreCase);
        var routes = proxy.GetSection("Routes").GetChildren().ToList();

        foreach (var route in routes)
        {
            var key = $"ReverseProxy:Routes:{route.Key}";
            var clusterId = route["ClusterId"];
            var metadata = route.GetSection("Metadata").GetChildren().Where(c => c.Value is not null).ToDictionary(c => c.Key, c => c.Value!);
            ProxyConfigRules.ValidateRoute(route.Key, clusterId, clusterId is not null && clusterIds.Contains(clusterId), metadata, errors);

            var policies = route[$"Metadata:{Shaping.ShapingRuntime.PoliciesMetadataKey}"]?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) ?? [];
            foreach (var name in policies.Where(p => !shaping.Policies.ContainsKey(p)))
            {
                errors.Add($"{key}:Metadata:{Shaping.ShapingRuntime.PoliciesMetadataKey} names policy '{name}', which is not defined under {Shaping.ShapingOptions.Section}:Policies.");
            }

            if (route["Timeout"] is { } timeout && !TimeSpan.TryParse(timeout, CultureInfo.InvariantCulture, out _))
            {
                errors.Add($"{key}:Timeout must be a TimeSpan such as 00:05:00 (was '{timeout}').");
            }

            if (route.GetSection("Match").GetChildren().Any() is false)
            {
                errors.Add($"{key}:Match is missing: a route needs at least a Path.");
            }
        }

        foreach (var admission in shaping.Admission.Keys.Where(c => !clusterIds.Contains(c)))
        {
            errors.Add($"{Shaping.ShapingOptions.Section}:Admission:{admission} names cluster '{admission}', which is not defined under ReverseProxy:Clusters.");
        }

        foreach (var cluster in clusters)
        {
            var key = $"ReverseProxy:Clusters:{cluster.Key}";
            var metadata = cluster.GetSection("Metadata").GetChildren().Where(c => c.Value is not null).ToDictionary(c => c.Key, c => c.Value!);
            ProxyConfigRules.ValidateClusterMetadata(cluster.Key, metadata, errors);

            var destinations = cluster.GetSection("Destinations").GetChildren().ToList();
            if (destinations.Count == 0)
            {
                errors.Add($"{key}:Destinations is empty: a cluster needs at least one destination with an Address.");
            }

            foreach (var d in destinations)
            {
                var destinationMetadata = d.GetSection("Metadata").GetChildren().Where(c => c.Value is not null).ToDictionary(c => c.Key, c => c.Value!);
                ProxyConfigRules.ValidateDestination(cluster.Key, d.Key, d["Address"], destinationMetadata, errors);
            }

            var activity = cluster["HttpRequest:ActivityTimeout"];
            if (activity is not null && (!TimeSpan.TryParse(activity, CultureInfo.InvariantCulture, out var a) || a <= TimeSpan.Zero))
            {
                errors.Add($"{key}:HttpRequest:ActivityTimeout must be a positive TimeSpan such as 00:00:30 (was '{activity}').");
            }

            var max = cluster["HttpClient:MaxConnectionsPerServer"];
            if (max is not null && (!int.TryParse(max, NumberStyles.Integer, CultureInfo.InvariantCulture, out var m) || m <= 0))
            {
                errors.Add($"{key}:HttpClient:MaxConnectionsPerServer must be a positive integer (was '{max}').");
            }
        }
    }
}
