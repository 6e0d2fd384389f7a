using System.Collections;
using System.Globalization;
using System.Reflection;

namespace Gateway.Configuration;

/// <summary>
/// Checks every key under <c>Gateway</c> against the options types that read it, so that a typo
/// (<c>Gateway:Listeners:Htpp:Port</c>, <c>MaxInFligth</c>), a value of the wrong type (<c>Window: 1s</c>), a scalar
/// where a list belongs, or a number where a name belongs (<c>Kind: 3</c>) stops start-up with the key named, instead of
/// being ignored by the configuration binder. The <c>ReverseProxy</c> section is YARP's: its values are checked by YARP
/// and by <see cref="ConfigurationValidator"/>; here only its names, against YARP's own configuration types
/// (<see cref="Yarp.ReverseProxy.Configuration.RouteConfig"/>, <see cref="Yarp.ReverseProxy.Configuration.ClusterConfig"/>
/// and the types of their sections), so that <c>ReverseProxy:Rutes</c> or a route's <c>Matsh</c> is not silently ignored.
/// </summary>
internal static class KnownKeys
{
    private static readonly Dictionary<string, Type> s_sections = new(StringComparer.OrdinalIgnoreCase)
    {
        ["Listeners"] = typeof(Listeners.ListenersOptions),
        ["Limits"] = typeof(GatewayLimitsOptions),
        ["Telemetry"] = typeof(GatewayTelemetryOptions),
        ["Admin"] = typeof(Admin.AdminOptions),
        ["Recording"] = typeof(Recording.RecordingOptions),
        ["Shaping"] = typeof(Shaping.ShapingOptions),
        ["Models"] = typeof(ConfigMap<Routing.ModelOptions>),
        ["Auth"] = typeof(Tenants.AuthOptions),
        ["Tenants"] = typeof(ConfigMap<Tenants.TenantOptions>),
    };

    /// <summary>Adds one error per unknown key or unconvertible value under <c>Gateway</c>.</summary>
    public static void Check(IConfiguration configuration, List<string> errors)
    {
        var gateway = configuration.GetSection("Gateway");
        if (gateway.Value is not null)
        {
            errors.Add("Gateway must be a section (Gateway:Listeners, Gateway:Shaping, ...), not a value.");
        }

        foreach (var child in gateway.GetChildren())
        {
            if (!s_sections.TryGetValue(child.Key, out var type))
            {
                errors.Add($"Gateway:{child.Key} is not a known setting{Suggest(child.Key, s_sections.Keys)} (known: {string.Join(", ", s_sections.Keys)}).");
                continue;
            }

            Walk(child, type, $"Gateway:{child.Key}", errors);
        }

        CheckReverseProxyNames(configuration.GetSection("ReverseProxy"), errors);
        if (configuration.GetSection("Kestrel").GetChildren().Any())
        {
            // The gateway configures Kestrel itself from Gateway:Listeners and Gateway:Limits; a Kestrel section would be
            // silently ignored.
            errors.Add($"Kestrel:{configuration.GetSection("Kestrel").GetChildren().First().Key} is not read by the gateway: its listeners and limits are Gateway:Listeners and Gateway:Limits (see docs/configuration.md).");
        }

        CheckLogging(configuration.GetSection("Logging:Console"), errors);
        foreach (var level in configuration.GetSection("Logging").GetChildren().SelectMany(static provider =>
            provider.Key.Equals("LogLevel", StringComparison.OrdinalIgnoreCase) ? [provider] : provider.GetChildren().Where(static c => c.Key.Equals("LogLevel", StringComparison.OrdinalIgnoreCase))))
        {
            foreach (var category in level.GetChildren())
            {
                if (category.Value is { } value && !Enum.TryParse<LogLevel>(value, ignoreCase: true, out _))
                {
                    errors.Add($"{category.Path} must be a log level: Trace, Debug, Information, Warning, Error, Critical or None (was '{value}').");
                }
            }
        }
    }

    /// <summary>The console logger's settings that its own code would refuse with an exception at start-up.</summary>
    private static void CheckLogging(IConfigurationSection console, List<string> errors)
    {
        if (console["MaxQueueLength"] is { } length && (!int.TryParse(length, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) || n <= 0))
        {
            errors.Add($"Logging:Console:MaxQueueLength must be a whole number > 0 (was '{length}').");
        }

        if (console["QueueFullMode"] is { } mode && !Enum.TryParse<Microsoft.Extensions.Logging.Console.ConsoleLoggerQueueFullMode>(mode, ignoreCase: true, out _))
        {
            errors.Add($"Logging:Console:QueueFullMode must be Wait or DropWrite (was '{mode}').");
        }

        foreach (var key in new[] { "TimestampFormat", "FormatterOptions:TimestampFormat" })
        {
            if (console[key] is { } format)
            {
                try
                {
                    _ = DateTimeOffset.UnixEpoch.ToString(format, CultureInfo.InvariantCulture);
                }
                catch (FormatException)
                {
                    errors.Add($"Logging:Console:{key} is not a date and time format (was '{format}'), e.g. 'HH:mm:ss '.");
                }
            }
        }
    }

    /// <summary>The sections of YARP's configuration whose names are checked: a path pattern (* = any name) and its type.</summary>
    private static readonly (string Level, Type Type)[] s_reverseProxyLevels =
    [
        ("Routes:*", typeof(Yarp.ReverseProxy.Configuration.RouteConfig)),
        ("Routes:*:Match", typeof(Yarp.ReverseProxy.Configuration.RouteMatch)),
        ("Clusters:*", typeof(Yarp.ReverseProxy.Configuration.ClusterConfig)),
        ("Clusters:*:Destinations:*", typeof(Yarp.ReverseProxy.Configuration.DestinationConfig)),
        ("Clusters:*:HealthCheck", typeof(Yarp.ReverseProxy.Configuration.HealthCheckConfig)),
        ("Clusters:*:HealthCheck:Active", typeof(Yarp.ReverseProxy.Configuration.ActiveHealthCheckConfig)),
        ("Clusters:*:HealthCheck:Passive", typeof(Yarp.ReverseProxy.Configuration.PassiveHealthCheckConfig)),
        ("Clusters:*:HttpClient", typeof(Yarp.ReverseProxy.Configuration.HttpClientConfig)),
        ("Clusters:*:HttpRequest", typeof(Yarp.ReverseProxy.Forwarder.ForwarderRequestConfig)),
        ("Clusters:*:SessionAffinity", typeof(Yarp.ReverseProxy.Configuration.SessionAffinityConfig)),
    ];

    /// <summary>Names under <c>ReverseProxy</c> that YARP does not read: only <c>Routes</c> and <c>Clusters</c> at the top, then each level's properties.</summary>
    private static void CheckReverseProxyNames(IConfigurationSection reverseProxy, List<string> errors)
    {
        string[] top = ["Routes", "Clusters"];
        foreach (var child in reverseProxy.GetChildren())
        {
            if (!top.Contains(child.Key, StringComparer.OrdinalIgnoreCase))
            {
                errors.Add($"ReverseProxy:{child.Key} is not a known setting{Suggest(child.Key, top)} (known: Routes, Clusters).");
            }
        }

        foreach (var (level, type) in s_reverseProxyLevels)
        {
            var properties = type.GetProperties(BindingFlags.Public | BindingFlags.Instance).ToDictionary(static p => p.Name, StringComparer.OrdinalIgnoreCase);
            foreach (var section in Sections(reverseProxy, level.Split(':'), 0, "ReverseProxy"))
            {
                foreach (var child in section.Section.GetChildren())
                {
                    if (!properties.TryGetValue(child.Key, out var property))
                    {
                        errors.Add($"{section.Path}:{child.Key} is not a known setting{Suggest(child.Key, properties.Keys)}.");
                    }
                    else if ((Nullable.GetUnderlyingType(property.PropertyType) ?? property.PropertyType) is var t && IsScalar(t)
                        && child.Value is { } value && !Converts(value, t))
                    {
                        // YARP's reader would throw a FormatException that names no key.
                        errors.Add($"{section.Path}:{child.Key} {Mismatch(value, t)}");
                    }
                }
            }
        }
    }

    private static IEnumerable<(IConfigurationSection Section, string Path)> Sections(IConfigurationSection at, string[] parts, int index, string path)
    {
        if (index == parts.Length)
        {
            yield return (at, path);
            yield break;
        }

        var children = parts[index] == "*" ? at.GetChildren() : [at.GetSection(parts[index])];
        foreach (var child in children)
        {
            if (child.Value is null || child.GetChildren().Any())
            {
                foreach (var found in Sections(child, parts, index + 1, $"{path}:{child.Key}"))
                {
                    yield return found;
                }
            }
        }
    }

    private static void Walk(IConfigurationSection section, Type type, string path, List<string> errors)
    {
        var underlying = Nullable.GetUnderlyingType(type) ?? type;
        if (IsScalar(underlying))
        {
            if (section.GetChildren().Any())
            {
                errors.Add($"{path} must be a single value ({Describe(underlying)}), not a section.");
            }
            else if (section.Value is { } value && !Converts(value, underlying))
            {
                errors.Add($"{path} {Mismatch(value, underlying)}");
            }

            return;
        }

        if (DictionaryValueType(underlying) is { } valueType)
        {
            if (section.Value is { Length: > 0 } v)
            {
                errors.Add($"{path} must be a section of named entries, not a value (was '{v}').");
            }

            foreach (var child in section.GetChildren())
            {
                Walk(child, valueType, $"{path}:{child.Key}", errors);
            }

            return;
        }

        if (ListElementType(underlying) is { } elementType)
        {
            if (section.Value is { Length: > 0 } v && !section.GetChildren().Any())
            {
                errors.Add($"{path} must be a list (a JSON array, or {path}:0, {path}:1, ...), not a single value (was '{v}').");
            }

            foreach (var child in section.GetChildren())
            {
                if (!int.TryParse(child.Key, NumberStyles.None, CultureInfo.InvariantCulture, out _))
                {
                    errors.Add($"{path}:{child.Key} is not a list index: {path} is a list.");
                    continue;
                }

                Walk(child, elementType, $"{path}:{child.Key}", errors);
            }

            return;
        }

        if (section.Value is { Length: > 0 } scalar)
        {
            errors.Add($"{path} must be a section, not a value (was '{scalar}').");
            return;
        }

        var properties = underlying.GetProperties(BindingFlags.Public | BindingFlags.Instance)
            .Where(static p => p.CanWrite || DictionaryValueType(p.PropertyType) is not null || ListElementType(p.PropertyType) is not null)
            .ToDictionary(static p => p.Name, StringComparer.OrdinalIgnoreCase);
        foreach (var child in section.GetChildren())
        {
            if (!properties.TryGetValue(child.Key, out var property))
            {
                errors.Add(underlying == typeof(Routing.ModelOptions) && Suggest(child.Key, properties.Keys).Length == 0
                    ? $"{path}:{child.Key} is not a known setting of a model (Cluster, GrpcCluster, Aliases, Rewrite, Fallbacks). If '{section.Key}:{child.Key}' is a model name containing ':' (Ollama style, e.g. qwen2.5:7b), ':' separates configuration keys and cannot be in a key: configure the model under a name without ':' and list '{section.Key}:{child.Key}' in its Aliases (see docs/routing.md)."
                    : $"{path}:{child.Key} is not a known setting{Suggest(child.Key, properties.Keys)}.");
                continue;
            }

            Walk(child, property.PropertyType, $"{path}:{child.Key}", errors);
        }
    }

    private static bool IsScalar(Type t) =>
        t.IsPrimitive || t.IsEnum || t == typeof(string) || t == typeof(decimal) || t == typeof(TimeSpan) || t == typeof(Uri);

    private static bool Converts(string value, Type t)
    {
        var c = CultureInfo.InvariantCulture;
        if (t == typeof(string))
        {
            return true;
        }

        if (value.Length == 0)
        {
            return true; // an empty value binds to the default
        }

        if (t.IsEnum)
        {
            // Names only: a number would silently pick whatever member has that value.
            return !int.TryParse(value, NumberStyles.Integer, c, out _) && Enum.TryParse(t, value, ignoreCase: true, out var parsed) && Enum.IsDefined(t, parsed!);
        }

        return t switch
        {
            _ when t == typeof(bool) => bool.TryParse(value, out _),
            _ when t == typeof(int) => int.TryParse(value, NumberStyles.Integer, c, out _),
            _ when t == typeof(long) => long.TryParse(value, NumberStyles.Integer, c, out _),
            _ when t == typeof(double) => double.TryParse(value, NumberStyles.Float, c, out _),
            _ when t == typeof(decimal) => decimal.TryParse(value, NumberStyles.Number, c, out _),
            // hh:mm:ss only: TimeSpan reads a bare number as days ("FairShareWindow": 3 held slots for three days; stranger review).
            _ when t == typeof(TimeSpan) => value.Contains(':', StringComparison.Ordinal) && TimeSpan.TryParse(value, c, out _),
            _ when t == typeof(Uri) => Uri.TryCreate(value, UriKind.RelativeOrAbsolute, out _),
            _ => true,
        };
    }

    /// <summary>
    /// Why <paramref name="value"/> does not convert to <paramref name="t"/>: a whole number too large or too small for its
    /// type is out of range, and the message gives the bounds (stranger review: 1099511627776 for an int used to read
    /// "must be a whole number"); anything else gets the type's description.
    /// </summary>
    private static string Mismatch(string value, Type t)
    {
        if ((t == typeof(int) || t == typeof(long))
            && System.Numerics.BigInteger.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out _))
        {
            var (min, max) = t == typeof(int) ? ((long)int.MinValue, (long)int.MaxValue) : (long.MinValue, long.MaxValue);
            return string.Create(CultureInfo.InvariantCulture, $"is out of range: it must be a whole number from {min} to {max} (was '{value}').");
        }

        if (t == typeof(TimeSpan) && double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out _))
        {
            return $"must be {Describe(t)}; a bare number would be read as days (was '{value}').";
        }

        return $"must be {Describe(t)} (was '{value}').";
    }

    private static string Describe(Type t) => t.IsEnum ? $"one of {string.Join(", ", Enum.GetNames(t))}"
        : t == typeof(bool) ? "true or false"
        : t == typeof(int) || t == typeof(long) ? "a whole number"
        : t == typeof(double) || t == typeof(decimal) ? "a number"
        : t == typeof(TimeSpan) ? "a duration such as 00:00:30 (hh:mm:ss[.fff], or d.hh:mm:ss)"
        : "a " + t.Name;

    /// <summary>The value type of a <c>Dictionary&lt;string, T&gt;</c> or of a class derived from one (<see cref="ConfigMap{TValue}"/>).</summary>
    private static Type? DictionaryValueType(Type t) =>
        Generic(t, typeof(Dictionary<,>)) is { } d && d.GetGenericArguments()[0] == typeof(string) ? d.GetGenericArguments()[1] : null;

    /// <summary>The element type of an array, a <c>List&lt;T&gt;</c> or a class derived from one (<see cref="ConfigList{T}"/>).</summary>
    private static Type? ListElementType(Type t) =>
        t.IsArray ? t.GetElementType() : Generic(t, typeof(List<>))?.GetGenericArguments()[0];

    private static Type? Generic(Type? t, Type definition)
    {
        for (; t is not null && t != typeof(object); t = t.BaseType)
        {
            if (t.IsGenericType && t.GetGenericTypeDefinition() == definition)
            {
                return t;
            }
        }

        return null;
    }

    /// <summary>" (did you mean X?)" for the known name nearest <paramref name="key"/> by edit distance, or empty when none is near.</summary>
    internal static string Suggest(string key, IEnumerable<string> known)
    {
        var best = known.Select(k => (Name: k, Distance: Distance(key.ToLowerInvariant(), k.ToLowerInvariant())))
            .OrderBy(static x => x.Distance).FirstOrDefault();
        return best.Name is not null && best.Distance <= Math.Max(2, key.Length / 4) ? $" (did you mean {best.Name}?)" : string.Empty;
    }

    /// <summary>Levenshtein distance (Wagner–Fischer, one row).</summary>
    private static int Distance(string a, string b)
    {
        var row = Enumerable.Range(0, b.Length + 1).ToArray();
        for (var i = 1; i <= a.Length; i++)
        {
            var previous = row[0];
            row[0] = i;
            for (var j = 1; j <= b.Length; j++)
            {
                var current = row[j];
                row[j] = Math.Min(Math.Min(row[j] + 1, row[j - 1] + 1), previous + (a[i - 1] == b[j - 1] ? 0 : 1));
                previous = current;
            }
        }

        return row[b.Length];
    }
}
