using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace ModelSim.Tests.Hosting;

/// <summary>A port already in use at start-up: the documented line only (no host stack traces), exit code 2.</summary>
public sealed class PortInUseTests
{
    [Fact]
    public async Task PortInUsePrintsOneLineNamingTheKeyAndExits2()
    {
        using var taken = new TcpListener(IPAddress.Loopback, 0);
        taken.Start();
        var port = ((IPEndPoint)taken.LocalEndpoint).Port;
        var dll = typeof(ModelSimServer).Assembly.Location;
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = Path.GetDirectoryName(dll)! };
        foreach (var arg in new[] { dll, $"--Sim:Http:Port={port}", "--Sim:Grpc:Port=0" })
        {
            psi.ArgumentList.Add(arg);
        }

        using var process = Process.Start(psi)!;
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        try
        {
            var stdout = process.StandardOutput.ReadToEndAsync(timeout.Token);
            var stderr = process.StandardError.ReadToEndAsync(timeout.Token);
            await process.WaitForExitAsync(timeout.Token);

            Assert.Equal(2, process.ExitCode);
            var lines = (await stdout + await stderr).Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            Assert.Equal([$"ModelSim: invalid configuration: Sim:Http:Port: 127.0.0.1:{port} is already in use by another process."], lines);
        }
        finally
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
            }
        }
    }
}
