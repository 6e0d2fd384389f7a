using System.Net.Sockets;

namespace TestSupport;

/// <summary>
/// A real redis-server started by the test on a free loopback port (no persistence), stoppable and restartable on the
/// same port to test what happens while Redis is down. ./test.sh installs redis-server from the distribution's
/// packages when it is missing.
/// </summary>
public sealed class RedisServer : IAsyncDisposable
{
    private ChildProcess? _process;

    private RedisServer(int port) => Port = port;

    /// <summary>The TCP port on 127.0.0.1.</summary>
    public int Port { get; }

    /// <summary>A StackExchange.Redis connection string for this server.</summary>
    public string ConnectionString => $"127.0.0.1:{Port}";

    /// <summary>Starts a server on a free port and waits until it answers.</summary>
    /// <exception cref="InvalidOperationException">redis-server is not installed or did not start.</exception>
    public static async Task<RedisServer> StartAsync()
    {
        var server = new RedisServer(FreePort.Next());
        await server.RestartAsync();
        return server;
    }

    /// <summary>Starts the server again on the same port (after <see cref="StopAsync"/>).</summary>
    public async Task RestartAsync()
    {
        var binary = Find() ?? throw new InvalidOperationException("redis-server is not installed: run ./test.sh, which installs it (apt-get install redis-server).");
        _process = ChildProcess.Start(binary, ["--port", Port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--protected-mode", "no", "--loglevel", "warning"]);
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (DateTime.UtcNow < deadline)
        {
            if (await PingAsync())
            {
                return;
            }

            if (_process.HasExited)
            {
                break;
            }

            await Task.Delay(50);
        }

        throw new InvalidOperationException($"redis-server did not start on port {Port}: {_process.StandardOutput}{_process.StandardError}");
    }

    /// <summary>Kills the server (SIGKILL, as a crash would) and waits until the port is closed.</summary>
    public async Task StopAsync()
    {
        if (_process is null)
        {
            return;
        }

        await _process.DisposeAsync();
        _process = null;
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (DateTime.UtcNow < deadline && await PingAsync())
        {
            await Task.Delay(50);
        }
    }

    /// <summary>Freezes the server (SIGSTOP): connections stay open and nothing is answered, as with a stalled host.</summary>
    public Task PauseAsync() => SignalAsync("-STOP");

    /// <summary>Lets a frozen server go on (SIGCONT).</summary>
    public Task ResumeAsync() => SignalAsync("-CONT");

    /// <inheritdoc/>
    public async ValueTask DisposeAsync()
    {
        await ResumeAsync();
        await StopAsync();
    }

    private async Task SignalAsync(string signal)
    {
        if (_process is null || _process.HasExited)
        {
            return;
        }

        await using var kill = ChildProcess.Start("kill", [signal, _process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
        if (await kill.WaitForExitAsync(TimeSpan.FromSeconds(10)) != 0)
        {
            throw new InvalidOperationException($"kill {signal} {_process.Id} failed: {kill.StandardError}");
        }
    }

    private async Task<bool> PingAsync()
    {
        try
        {
            using var client = new TcpClient();
            using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(500));
            await client.ConnectAsync("127.0.0.1", Port, cts.Token);
            var stream = client.GetStream();
            await stream.WriteAsync("PING\r\n"u8.ToArray(), cts.Token);
            var buffer = new byte[16];
            var read = await stream.ReadAsync(buffer, cts.Token);
            return read >= 5 && buffer[0] == (byte)'+';
        }
        catch (Exception ex) when (ex is SocketException or OperationCanceledException or IOException)
        {
            return false;
        }
    }

    private static string? Find()
    {
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? string.Empty).Split(':').Append("/usr/bin").Append("/usr/sbin"))
        {
            var path = Path.Combine(dir, "redis-server");
            if (File.Exists(path))
            {
                return path;
            }
        }

        return null;
    }
}
