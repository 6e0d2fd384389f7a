using System.Globalization;
using System.Net.Http;
using TestSupport;

namespace Replay.Tests;

/// <summary>Real processes for the tests that need one: the replay executable, and a simulator that can be killed.</summary>
internal static class Processes
{
    /// <summary>
    /// The apphost in the Replay project's own output (not the copy beside the tests: the test directory resolves
    /// shared assemblies against ASP.NET Core's framework, which the tool does not use). Found for both the classic
    /// layout (src/Replay/bin/CONFIG/net10.0) and an artifacts path (ARTIFACTS/bin/Replay/CONFIG).
    /// </summary>
    public static string ReplayExecutable
    {
        get
        {
            var name = OperatingSystem.IsWindows() ? "Replay.exe" : "Replay";
            var testDir = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));
            string[] candidates =
            [
                Path.Combine(testDir.Parent!.Parent!.FullName, "Replay", testDir.Name, name),
                Path.Combine(RepoPaths.Root, "src", "Replay", "bin", testDir.Parent!.Name, testDir.Name, name),
            ];
            return candidates.FirstOrDefault(File.Exists) ?? candidates[0];
        }
    }

    /// <summary>
    /// Starts the replay executable under an open-file limit of <paramref name="openFiles"/> descriptors (through
    /// <c>sh -c 'ulimit -n N; exec …'</c>), as a smaller machine or a container would run it.
    /// </summary>
    public static ChildProcess StartReplay(IEnumerable<string> args, int? openFiles = null, IDictionary<string, string>? environment = null)
    {
        Assert.True(File.Exists(ReplayExecutable), $"{ReplayExecutable} not built");
        if (openFiles is not { } n)
        {
            return ChildProcess.Start(ReplayExecutable, args, environment: environment);
        }

        return ChildProcess.Start("/bin/sh", ["-c", $"ulimit -n {n.ToString(CultureInfo.InvariantCulture)} && exec \"$0\" \"$@\"", ReplayExecutable, .. args], environment: environment);
    }

    /// <summary>
    /// A simulator in its own process (the ModelSim apphost copied beside the tests), so that a test can kill it
    /// as a crash would.
    /// </summary>
    public static async Task<SimProcess> StartSimAsync(params string[] settings)
    {
        var http = FreePort.Next();
        var grpc = FreePort.Next();
        var exe = Path.Combine(AppContext.BaseDirectory, OperatingSystem.IsWindows() ? "ModelSim.exe" : "ModelSim");
        var process = ChildProcess.Start(exe, [$"--Sim:Http:Port={http}", $"--Sim:Grpc:Port={grpc}", "--Logging:LogLevel:Default=Warning", .. settings]);
        var address = new Uri($"http://127.0.0.1:{http}/");
        using var client = new HttpClient { Timeout = TimeSpan.FromSeconds(1) };
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            try
            {
                using var response = await client.GetAsync(new Uri(address, "health"));
                if (response.IsSuccessStatusCode)
                {
                    return new SimProcess(process, address);
                }
            }
            catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException)
            {
            }

            if (process.HasExited || DateTime.UtcNow > deadline)
            {
                await process.DisposeAsync();
                throw new InvalidOperationException($"ModelSim did not start: {process.StandardOutput}{process.StandardError}");
            }

            await Task.Delay(100);
        }
    }

    /// <summary>A simulator process and its HTTP address.</summary>
    internal sealed class SimProcess(ChildProcess process, Uri httpAddress) : IAsyncDisposable
    {
        public Uri HttpAddress { get; } = httpAddress;

        public ChildProcess Process { get; } = process;

        public ValueTask DisposeAsync() => Process.DisposeAsync();
    }
}
