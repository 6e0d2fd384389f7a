// YARP with nothing else: one route /{**rest} to one destination, logging off. bench/proxy.sh runs it beside the
// gateway, so the report can tell the cost of YARP and Kestrel themselves from the cost of the gateway's features.
// Usage: dotnet BareYarp.dll PORT UPSTREAM_URL
using Yarp.ReverseProxy.Configuration;

if (args.Length != 2 || !int.TryParse(args[0], out var port) || !Uri.TryCreate(args[1], UriKind.Absolute, out var upstream))
{
    Console.Error.WriteLine("usage: BareYarp PORT UPSTREAM_URL");
    return 2;
}

var builder = WebApplication.CreateSlimBuilder();
builder.Logging.ClearProviders();
builder.WebHost.ConfigureKestrel(k => k.Listen(System.Net.IPAddress.Loopback, port));
builder.Services.AddReverseProxy().LoadFromMemory(
    [new RouteConfig { RouteId = "all", ClusterId = "up", Match = new RouteMatch { Path = "/{**rest}" } }],
    [new ClusterConfig
    {
        ClusterId = "up",
        Destinations = new Dictionary<string, DestinationConfig> { ["d"] = new() { Address = upstream.ToString() } },
        HttpClient = new HttpClientConfig { MaxConnectionsPerServer = 256 },
    }]);
var app = builder.Build();
app.MapReverseProxy();
await app.RunAsync();
return 0;
