using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Configuration.Memory;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using ModelSim.Api;
using ModelSim.Engine;
using ModelSim.Faults;

namespace ModelSim.Hosting;

/// <summary>
/// Builds the simulator's web application. The real process (<see cref="Program"/>) and the in-process server
/// (<see cref="ModelSimServer"/>) differ only in where configuration comes from; everything else is this one code path.
/// </summary>
internal static class ModelSimApp
{
    /// <summary>Lowest-priority settings of the real process: quiet framework logs, the start-up line visible.</summary>
    private static readonly Dictionary<string, string?> s_processDefaults = new(StringComparer.OrdinalIgnoreCase)
    {
        ["Logging:LogLevel:Default"] = "Information",
        ["Logging:LogLevel:Microsoft.AspNetCore"] = "Warning",
        ["Logging:LogLevel:Microsoft.Hosting.Lifetime"] = "Information",
        ["Logging:LogLevel:Grpc"] = "Warning",
    };

    /// <summary>Settings of an in-process server before the caller's: free ports, warnings only.</summary>
    private static readonly Dictionary<string, string?> s_inProcessDefaults = new(StringComparer.OrdinalIgnoreCase)
    {
        ["Sim:Http:Port"] = "0",
        ["Sim:Grpc:Port"] = "0",
        ["Logging:LogLevel:Default"] = "Warning",
    };

    /// <summary>The real process: appsettings.json, environment variables and the command line (<c>--Sim:Slots=32</c>) over the defaults.</summary>
    public static WebApplicationBuilder CreateProcessBuilder(string[] args)
    {
        var builder = WebApplication.CreateSlimBuilder(args);
        builder.Configuration.Sources.Insert(0, new MemoryConfigurationSource { InitialData = s_processDefaults });
        return builder;
    }

    /// <summary>An in-process server: only <paramref name="settings"/> over the in-process defaults (no environment, no files).</summary>
    public static WebApplicationBuilder CreateInProcessBuilder(IEnumerable<KeyValuePair<string, string?>>? settings)
    {
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions
        {
            ApplicationName = typeof(ModelSimApp).Assembly.GetName().Name,
            ContentRootPath = AppContext.BaseDirectory,
            EnvironmentName = Environments.Production,
        });
        builder.Configuration.Sources.Clear();
        builder.Configuration.AddInMemoryCollection(s_inProcessDefaults);
        if (settings is not null)
        {
            builder.Configuration.AddInMemoryCollection(settings);
        }

        return builder;
    }

    /// <summary>Registers the services, the two Kestrel listeners and the endpoints, and builds the application.</summary>
    /// <param name="builder">From <see cref="CreateProcessBuilder"/> or <see cref="CreateInProcessBuilder"/>.</param>
    /// <param name="timeProvider">Time for the engine; null for <see cref="TimeProvider.System"/>.</param>
    /// <exception cref="OptionsValidationException">The <c>Sim</c> section is invalid: the message names every bad key and its value.</exception>
    public static WebApplication Build(WebApplicationBuilder builder, TimeProvider? timeProvider)
    {
        ValidateConfiguration(builder.Configuration);
        if (timeProvider is not null)
        {
            builder.Services.Replace(ServiceDescriptor.Singleton(timeProvider));
        }

        builder.Services.AddModelSim(builder.Configuration);
        builder.Services.TryAddSingleton<SimListeners>();
        builder.Services.Configure<HostOptions>(static host => host.ShutdownTimeout = TimeSpan.FromSeconds(5));
        builder.Services.AddOptions<KestrelServerOptions>().Configure<IOptions<SimOptions>, SimListeners>(ConfigureKestrel);

        var app = builder.Build();
        app.UseWebSockets();
        app.Use(static (context, next) => OnRightListener(context) ? next(context) : NotFound(context));
        MapEndpoints(app);
        return app;
    }

    /// <summary>
    /// Binds and validates the <c>Sim</c> section before anything is built, so bad configuration fails first and with
    /// one exception type: a value that does not convert or an unknown key (the binder's message names it) and every
    /// <see cref="SimOptionsValidator"/> failure all surface as <see cref="OptionsValidationException"/>.
    /// <c>ValidateOnStart</c> stays registered as the container-level guarantee.
    /// </summary>
    internal static SimOptions ValidateConfiguration(IConfiguration configuration)
    {
        var unknown = UnknownKeys(configuration.GetSection(SimOptions.SectionName), typeof(SimOptions));
        if (unknown.Count > 0)
        {
            throw new OptionsValidationException(Options.DefaultName, typeof(SimOptions),
                unknown.ConvertAll(static key => $"{key} is not a known setting (docs/modelsim.md lists them)."));
        }

        var options = new SimOptions();
        try
        {
            configuration.GetSection(SimOptions.SectionName).Bind(options, static binder => binder.ErrorOnUnknownConfiguration = true);
        }
        catch (InvalidOperationException ex)
        {
            var message = ex.InnerException is null ? ex.Message : $"{ex.Message} ({ex.InnerException.Message})";
            throw new OptionsValidationException(Options.DefaultName, typeof(SimOptions), [message]);
        }

        var result = new SimOptionsValidator().Validate(Options.DefaultName, options);
        if (result.Failed)
        {
            throw new OptionsValidationException(Options.DefaultName, typeof(SimOptions), result.Failures);
        }

        return options;
    }

    /// <summary>Keys under <paramref name="section"/> that match no property of <paramref name="type"/> (nested records checked too).</summary>
    private static List<string> UnknownKeys(IConfigurationSection section, Type type)
    {
        var unknown = new List<string>();
        foreach (var child in section.GetChildren())
        {
            var property = type.GetProperty(child.Key, System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.Instance | System.Reflection.BindingFlags.IgnoreCase);
            if (property is null)
            {
                unknown.Add(child.Path);
            }
            else if (property.PropertyType == typeof(SimListenerOptions) || property.PropertyType == typeof(SimPrefixCacheOptions))
            {
                unknown.AddRange(UnknownKeys(child, property.PropertyType));
            }
        }

        return unknown;
    }

    private static void ConfigureKestrel(KestrelServerOptions kestrel, IOptions<SimOptions> options, SimListeners listeners)
    {
        var sim = options.Value;
        kestrel.AddServerHeader = false;
        // Many multiplexed gRPC calls per client connection: the simulator, not Kestrel, decides when to refuse.
        kestrel.Limits.Http2.MaxStreamsPerConnection = 10_000;
        kestrel.Listen(Address(sim.Http), sim.Http.Port, listen =>
        {
            listen.Protocols = HttpProtocols.Http1;
            listeners.Http = listen;
        });
        kestrel.Listen(Address(sim.Grpc), sim.Grpc.Port, listen =>
        {
            listen.Protocols = HttpProtocols.Http2;
            listeners.Grpc = listen;
        });
    }

    private static IPAddress Address(SimListenerOptions listener) =>
        listener.TryGetIPAddress(out var address) ? address : throw new InvalidOperationException($"Invalid listener address '{listener.Address}'.");

    private static void MapEndpoints(WebApplication app)
    {
        var api = app.Services.GetRequiredService<OpenAiApi>();
        var webSocket = app.Services.GetRequiredService<WebSocketEndpoint>();
        var engine = app.Services.GetRequiredService<GenerationEngine>();

        app.MapPost("/v1/generate", api.GenerateAsync);
        app.MapPost("/v1/chat/completions", api.ChatCompletionsAsync);
        app.MapPost("/v1/completions", api.CompletionsAsync);
        app.MapGet("/v1/models", api.ModelsAsync);
        app.Map("/v1/stream", webSocket.HandleAsync);
        app.MapGet("/health", api.HealthAsync);
        app.MapGet("/metrics", context => PrometheusEndpoint.WriteAsync(context, engine));
        app.MapPost("/sim/stall", context => FaultEndpoints.StallAsync(context, engine));
        app.MapPost("/sim/collapse", context => FaultEndpoints.CollapseAsync(context, engine));
        app.MapGrpcService<GenerationService>();
    }

    /// <summary>
    /// gRPC only on the gRPC listener, everything else only on the HTTP one. The HTTP listener speaks HTTP/1.1 only and
    /// the gRPC one HTTP/2 only, so the protocol tells which listener a request came in on.
    /// </summary>
    private static bool OnRightListener(HttpContext context) =>
        HttpMethods.IsPost(context.Request.Method) && context.Request.Path.StartsWithSegments(GrpcPathPrefix)
            ? HttpProtocol.IsHttp2(context.Request.Protocol)
            : !HttpProtocol.IsHttp2(context.Request.Protocol);

    private const string GrpcPathPrefix = "/inference.v1.Generation";

    private static Task NotFound(HttpContext context)
    {
        context.Response.StatusCode = StatusCodes.Status404NotFound;
        return Task.CompletedTask;
    }
}

/// <summary>The two Kestrel endpoints, captured when Kestrel is configured; after start they hold the bound ports.</summary>
internal sealed class SimListeners
{
    public ListenOptions? Http { get; set; }

    public ListenOptions? Grpc { get; set; }
}
