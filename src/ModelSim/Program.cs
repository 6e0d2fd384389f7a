using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using ModelSim.Engine;
using ModelSim.Hosting;

namespace ModelSim;

/// <summary>
/// <c>dotnet run --project src/ModelSim [--Sim:Key=value …]</c>: serves HTTP/1.1 on 127.0.0.1:9000 and gRPC (h2c) on
/// 127.0.0.1:9001 until Ctrl+C. Exit codes: 0 after a clean stop, 2 for invalid configuration (a port already in use included: one line naming its key).
/// </summary>
internal static partial class Program
{
    private static async Task<int> Main(string[] args)
    {
        WebApplication? app = null;
        try
        {
            app = ModelSimApp.Build(ModelSimApp.CreateProcessBuilder(args), timeProvider: null);
            if (PortsInUse(app.Services.GetRequiredService<IOptions<SimOptions>>().Value) is { Count: > 0 } busy)
            {
                // Found before the host starts, whose own bind failure would first log two stack traces.
                foreach (var line in busy)
                {
                    await Console.Error.WriteLineAsync($"ModelSim: invalid configuration: {line}").ConfigureAwait(false);
                }

                return 2;
            }

            await app.StartAsync().ConfigureAwait(false);
            var (http, grpc) = ModelSimServer.BoundAddresses(app);
            var options = app.Services.GetRequiredService<IOptions<SimOptions>>().Value;
            var logger = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger(typeof(Program).Namespace!);
            var capacity = LatencyModel.CapacityPerSecond(options, 100, options.DefaultMaxTokens);
            Log.Listening(logger, http, grpc, options.Model, options.Slots, options.Queue, capacity, options.DefaultMaxTokens);
            await app.WaitForShutdownAsync().ConfigureAwait(false);
            return 0;
        }
        catch (OptionsValidationException ex)
        {
            await Console.Error.WriteLineAsync($"ModelSim: invalid configuration: {ex.Message}").ConfigureAwait(false);
            return 2;
        }
        catch (IOException ex)
        {
            // A port taken between the check above and Kestrel's bind.
            await Console.Error.WriteLineAsync($"ModelSim: cannot listen: {ex.Message}").ConfigureAwait(false);
            return 2;
        }
        finally
        {
            if (app is not null)
            {
                await app.DisposeAsync().ConfigureAwait(false);
            }
        }
    }

    /// <summary>One line per listener whose port another process already listens on, naming its key.</summary>
    private static List<string> PortsInUse(SimOptions options)
    {
        var busy = new List<string>();
        foreach (var (key, listener) in new[] { ("Sim:Http", options.Http), ("Sim:Grpc", options.Grpc) })
        {
            if (listener.TryGetIPAddress(out var address) && Contracts.Hosting.PortProbe.IsInUse(address, listener.Port))
            {
                busy.Add($"{key}:Port: {listener.Address}:{listener.Port} is already in use by another process.");
            }
        }

        return busy;
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 3001, Level = LogLevel.Information,
            Message = "ModelSim listening: HTTP {Http} (HTTP/1.1), gRPC {Grpc} (h2c); model {Model}, {Slots} slots, queue {Queue}; capacity {Capacity:F1} requests/s at 100 prompt + {OutputTokens} output tokens.")]
        public static partial void Listening(ILogger logger, Uri http, Uri grpc, string model, int slots, int queue, double capacity, int outputTokens);
    }
}
