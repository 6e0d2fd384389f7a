using System.Net;
using System.Net.Sockets;
using Gateway.Admin;
using Gateway.Configuration;
using Gateway.Exchange;
using Gateway.Forwarding;
using Gateway.Listeners;
using Gateway.Recording;
using Gateway.Shaping;
using Gateway.Routing;
using Gateway.Routing.InferenceAware;
using Gateway.Telemetry;
using Gateway.Tenants;
using Microsoft.AspNetCore.Routing.Matching;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection.Extensions;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;
using Yarp.ReverseProxy.Forwarder;

namespace Gateway.Hosting;

/// <summary>
/// Builds the gateway: one code path for the real process (<c>Program</c>) and the in-process
/// <see cref="GatewayServer"/> used by tests and benchmarks.
/// </summary>
internal static partial class GatewayApp
{
    /// <summary>Thrown when the configuration is invalid; <see cref="Errors"/> holds one line per problem, each naming its key.</summary>
    internal sealed class ConfigurationException(IReadOnlyList<string> errors)
        : Exception(string.Join(Environment.NewLine, errors))
    {
        public IReadOnlyList<string> Errors { get; } = errors;
    }

    /// <summary>
    /// Creates and configures the application. Throws <see cref="ConfigurationException"/> when the configuration is
    /// invalid; nothing has been bound then.
    /// </summary>
    /// <param name="builder">A builder whose configuration sources are already set.</param>
    /// <param name="meterName">The meter's name; <see cref="GatewayMetrics.MeterName"/> unless several gateways share a process.</param>
    /// <param name="tracing">Optional: turns tracing on even without an OTLP endpoint and adds to it (tests add an in-memory exporter).</param>
    public static WebApplication Build(WebApplicationBuilder builder, string meterName = GatewayMetrics.MeterName, Action<TracerProviderBuilder>? tracing = null)
    {
        var validation = ConfigurationValidator.Validate(builder.Configuration);
        if (validation.Errors.Count > 0)
        {
            throw new ConfigurationException(validation.Errors);
        }

        var services = builder.Services;
        var gate = new ConfigurationGate(builder.Configuration, validation.Options); // what reloads read: the last configuration that validated
        services.AddGatewayConfiguration(gate);
        services.TryAddSingleton(TimeProvider.System);
        services.AddSingleton(new GatewayMeterName(meterName));
        services.AddSingleton<GatewayMetrics>();
        var registry = new ListenerRegistry(validation.Listeners, validation.Certificates);
        services.AddSingleton(registry);
        services.AddSingleton<BackendReadiness>();
        services.AddSingleton<Warmup>();
        services.AddHostedService(static sp => sp.GetRequiredService<Warmup>());
        services.AddHostedService<DestinationHealthLog>();
        services.AddSingleton<AdminTokenFilter>();
        services.AddSingleton<Admin.Stats.TrafficHistory>();
        services.AddSingleton<DashboardStats>();
        services.AddSingleton<ExchangeCompletion>();
        services.AddSingleton<Telemetry.GenAi.GenAiTelemetry>();
        services.AddSingleton<Routing.ModelCatalog>();
        services.AddSingleton<Routing.ModelRouter>();
        services.AddSingleton<RequestHeaderLimit>();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<MatcherPolicy, ListenerMatcherPolicy>());
        services.AddRequestTimeouts();
        services.ConfigureHttpJsonOptions(static o => o.SerializerOptions.Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping);
        services.AddGatewayRecording(gate.Configuration);
        services.AddGatewayShaping();
        services.AddGatewayTenants();

        services.AddReverseProxy()
            .LoadFromConfig(gate.Configuration.GetSection("ReverseProxy"))
            .AddGatewayProxyRules()
            .AddErrorBodyLimit();
        services.AddInferenceAware();
        services.AddSingleton<BackendConnections>();
        services.AddSingleton<IForwarderHttpClientFactory, PoolingHttpClientFactory>();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<Yarp.ReverseProxy.Transforms.Builder.ITransformProvider, WebSocketDowngradeTransform>());
        services.AddSingleton<BackendCredentials>();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<Yarp.ReverseProxy.Transforms.Builder.ITransformProvider, BackendCredentialsTransform>());

        AddTelemetry(builder, validation.Telemetry, meterName, tracing);
        ConfigureKestrel(builder, registry, validation.Limits);

        var app = builder.Build();
        gate.AttachLogger(app.Services.GetRequiredService<ILoggerFactory>());
        _ = app.Services.GetRequiredService<ShapingMetrics>(); // instruments exist before the first scrape
        _ = app.Services.GetRequiredService<Tenants.AuthMetrics>();
        _ = app.Services.GetRequiredService<Admin.Stats.TrafficHistory>(); // its second 0 is start-up, and it samples the admission queues from then
        if (!builder.Configuration.GetSection("ReverseProxy:Routes").GetChildren().Any())
        {
            Log.NoRoutes(app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Gateway"));
        }
        app.UseMiddleware<ExchangeMiddleware>();
        app.UseWebSockets();
        app.UseStatusCodePages(static ctx => AdminStatusAsync(ctx.HttpContext));
        app.UseRouting();
        app.UseRequestTimeouts();
        app.UseEndpoints(static _ => { });
        app.MapGatewayAdmin();
        app.MapRecordingAdmin();
        app.MapTenantAdmin();
        app.MapReverseProxy(static pipeline =>
            {
                // One step per job (docs/architecture.md): each reads the classification, none writes a fact twice;
                // refusals and outcomes are answered by ExchangeCompletion, taps installed in one order by ForwardStep.
                pipeline.UseMiddleware<Tenants.AuthStep>(); // before classification reads any body (docs/tenants.md)
                pipeline.UseMiddleware<ClassifyStep>();
                pipeline.UseMiddleware<CaptureStep>();
                pipeline.UseMiddleware<RateLimitStep>();
                pipeline.UseMiddleware<TokenStep>();
                pipeline.UseMiddleware<AdmissionStep>();
                pipeline.UseMiddleware<ForwardStep>();
                pipeline.UseSessionAffinity();
                pipeline.UseLoadBalancing();
                pipeline.UsePassiveHealthChecks();
            })
            .ConfigureEndpoints(static (endpoint, route) => endpoint.WithMetadata(new ListenerMetadata([.. RouteListeners.Of(route.Metadata)])));
        app.Run(NoRouteAsync);
        return app;
    }

    /// <summary>
    /// Binds the application, turning a port that is already taken, or an address this machine does not own, into a
    /// configuration error that names the listener's key.
    /// </summary>
    public static async Task StartAsync(WebApplication app, CancellationToken cancellationToken)
    {
        // A port that is taken is found before the host starts: its own failure would first log two stack traces.
        var listeners = app.Services.GetRequiredService<ListenerRegistry>().Options;
        var busy = new List<string>();
        foreach (var name in ListenerNames.All)
        {
            var o = listeners.Get(name);
            if (listeners.IsEnabled(name) && o.TryGetIPAddress(out var address) && Contracts.Hosting.PortProbe.IsInUse(address, o.Port))
            {
                busy.Add(PortInUse(name, o));
            }
        }

        if (busy.Count > 0)
        {
            await app.DisposeAsync();
            throw new ConfigurationException(busy);
        }

        try
        {
            await app.StartAsync(cancellationToken);
        }
        catch (IOException ex) when (ex.InnerException is Microsoft.AspNetCore.Connections.AddressInUseException || ex.Message.Contains("address already in use", StringComparison.OrdinalIgnoreCase))
        {
            var registry = app.Services.GetRequiredService<ListenerRegistry>();
            var errors = new List<string>();
            foreach (var name in ListenerNames.All)
            {
                var o = registry.Options.Get(name);
                if (registry.Options.IsEnabled(name) && o.Port > 0 && ex.Message.Contains($":{o.Port}", StringComparison.Ordinal))
                {
                    errors.Add(PortInUse(name, o));
                }
            }

            if (errors.Count == 0)
            {
                errors.Add(ex.Message);
            }

            await app.DisposeAsync();
            throw new ConfigurationException(errors);
        }
        catch (SocketException ex)
        {
            // Kestrel reports an address the machine does not own (or a port it may not use) as a bare socket error
            // that names no endpoint: find the listener whose address cannot be bound.
            var errors = BindErrors(app.Services.GetRequiredService<ListenerRegistry>().Options, ex);
            await app.DisposeAsync();
            throw new ConfigurationException(errors);
        }
    }

    private static string PortInUse(ListenerName name, ListenerOptions o) =>
        $"{ListenersOptions.Section}:{name}:Port: {o.Address}:{o.Port} is already in use by another process.";

    /// <summary>
    /// One line per listener that cannot be bound, each naming its key: its address is tried on a free port (port 0),
    /// so an address this machine does not own is told from a port that is refused.
    /// </summary>
    private static List<string> BindErrors(ListenersOptions listeners, SocketException failure)
    {
        var errors = new List<string>();
        foreach (var name in ListenerNames.All)
        {
            var o = listeners.Get(name);
            if (!listeners.IsEnabled(name) || !o.TryGetIPAddress(out var address))
            {
                continue;
            }

            try
            {
                using var probe = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
                probe.Bind(new IPEndPoint(address, 0));
            }
            catch (SocketException ex)
            {
                errors.Add(ex.SocketErrorCode == SocketError.AddressNotAvailable
                    ? $"{ListenersOptions.Section}:{name}:Address: {o.Address} is not an address of this machine, so the {name} listener cannot listen on it ({ex.Message})."
                    : $"{ListenersOptions.Section}:{name}:Address: the {name} listener cannot listen on {o.Address} ({ex.Message}).");
            }
        }

        if (errors.Count == 0 && failure.SocketErrorCode == SocketError.AccessDenied)
        {
            foreach (var name in ListenerNames.All)
            {
                var o = listeners.Get(name);
                if (listeners.IsEnabled(name) && o.Port is > 0 and < 1024)
                {
                    errors.Add($"{ListenersOptions.Section}:{name}:Port: {o.Address}:{o.Port} is a privileged port this process may not listen on ({failure.Message}).");
                }
            }
        }

        if (errors.Count == 0)
        {
            errors.Add($"{ListenersOptions.Section}: a listener could not be bound: {failure.Message} ({failure.SocketErrorCode}).");
        }

        return errors;
    }

    /// <summary>An empty error answer on the admin listener (405 for a wrong method) gets the same JSON body as every other.</summary>
    private static Task AdminStatusAsync(HttpContext context)
    {
        if (context.GetListener() != ListenerName.Admin)
        {
            return Task.CompletedTask; // a backend's own empty answer passes through untouched
        }

        var status = context.Response.StatusCode;
        return ErrorResponses.WriteAsync(context, status, Grpc.Core.StatusCode.Unknown, status == 405 ? "invalid_request_error" : "error",
            status == 405 ? "method_not_allowed" : $"http_{status}",
            status == 405 ? $"{context.Request.Method} is not allowed on {context.Request.Path}." : $"HTTP {status} for {context.Request.Method} {context.Request.Path}.");
    }

    private static Task NoRouteAsync(HttpContext context)
    {
        var listener = context.GetListener();
        var message = listener != ListenerName.WebSocket && ListenerMatcherPolicy.IsWebSocketUpgrade(context)
            ? $"WebSocket upgrades are served on the WebSocket listener only, not on the {listener?.Tag() ?? "unknown"} listener."
            : $"No route for {context.Request.Method} {context.Request.Path} on the {listener?.Tag() ?? "unknown"} listener.";
        return ErrorResponses.WriteAsync(context, StatusCodes.Status404NotFound, Grpc.Core.StatusCode.Unimplemented, "not_found", "route_not_found", message);
    }

    private static void ConfigureKestrel(WebApplicationBuilder builder, ListenerRegistry registry, GatewayLimitsOptions limits)
    {
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            kestrel.Limits.MaxRequestBodySize = limits.MaxRequestBodyBytes;
            // Kestrel's header limits are twice ours, so it decodes an oversized header block and RequestHeaderLimit
            // answers 431 with our body, on HTTP/2 on that stream, instead of Kestrel's empty 431 or a GOAWAY.
            var headerBytes = RequestHeaderLimit.KestrelLimit(limits.MaxRequestHeadersTotalBytes);
            kestrel.Limits.MaxRequestHeadersTotalSize = headerBytes;
            kestrel.Limits.MaxRequestHeaderCount = RequestHeaderLimit.KestrelLimit(limits.MaxRequestHeaderCount);
            kestrel.Limits.Http2.MaxRequestHeaderFieldSize = headerBytes;
            foreach (var name in ListenerNames.All)
            {
                if (!registry.Options.IsEnabled(name))
                {
                    continue;
                }

                var o = registry.Options.Get(name);
                o.TryGetIPAddress(out var address);
                kestrel.Listen(address, o.Port, listen =>
                {
                    registry.Certificates.TryGetValue(name, out var certificate);
                    listen.Protocols = name switch
                    {
                        ListenerName.Grpc => HttpProtocols.Http2,
                        ListenerName.Https => HttpProtocols.Http1AndHttp2,
                        _ when certificate is not null => HttpProtocols.Http1AndHttp2,
                        _ => HttpProtocols.Http1,
                    };
                    listen.Use(ListenerTag.Middleware(name));
                    if (certificate is not null)
                    {
                        listen.UseHttps(certificate);
                    }

                    registry.Add(name, listen, tls: certificate is not null);
                });
            }
        });
    }

    private static void AddTelemetry(WebApplicationBuilder builder, GatewayTelemetryOptions telemetry, string meterName, Action<TracerProviderBuilder>? tracing)
    {
        var otlp = telemetry.OtlpEndpoint ?? Environment.GetEnvironmentVariable("OTEL_EXPORTER_OTLP_ENDPOINT");
        var otel = builder.Services.AddOpenTelemetry()
            .ConfigureResource(static r => r.AddService("gateway"))
            .WithMetrics(m =>
            {
                m.AddMeter(meterName);
                m.AddPrometheusExporter();
                if (!string.IsNullOrWhiteSpace(otlp))
                {
                    m.AddOtlpExporter(o => o.Endpoint = new Uri(otlp));
                }
            });

        // Traces cost per request; they are collected only when there is somewhere to send them. The exchange's server
        // span (ASP.NET Core's) carries the GenAI attributes of an LLM exchange (GenAiTelemetry) and the GenAI span name.
        if (!string.IsNullOrWhiteSpace(otlp) || tracing is not null)
        {
            otel.WithTracing(t =>
            {
                t.AddSource("Yarp.ReverseProxy")
                    .AddAspNetCoreInstrumentation(static o => o.EnrichWithHttpResponse = static (activity, _) => Telemetry.GenAi.GenAiTelemetry.RenameSpan(activity))
                    .AddHttpClientInstrumentation();
                if (!string.IsNullOrWhiteSpace(otlp))
                {
                    t.AddOtlpExporter(o => o.Endpoint = new Uri(otlp));
                }

                tracing?.Invoke(t);
            });
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 2, Level = LogLevel.Warning, Message = "No route is configured (ReverseProxy:Routes is empty): the gateway answers 404 to everything. Start it from the repository root so that appsettings.json is read, or give --config FILE.")]
        public static partial void NoRoutes(ILogger logger);
    }
}
