using Replay.Cli;

// The replay tool's process entry. Socket completions run inline on the socket engine's thread instead of being
// handed to the thread pool: for a load generator whose continuations are short (parse, stamp, record), that saves
// two context switches per I/O. Measured on one core at 25,000 requests/s: throughput 24,330 -> 24,996/s, p99
// schedule lag 11.3 -> 2.6 ms, and half the CPU at 5,000/s (docs/benchmarks.md). Read once, when the first socket is
// used, so it is set before anything else runs; an explicit DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS wins.
if (Environment.GetEnvironmentVariable("DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS") is null)
{
    Environment.SetEnvironmentVariable("DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS", "1");
}

// Ctrl-C stops the run gracefully (a partial report is still written); a second Ctrl-C kills the process.
using var stop = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) =>
{
    if (!stop.IsCancellationRequested)
    {
        e.Cancel = true;
        stop.Cancel();
    }
};

return await ReplayApp.RunAsync(args, Console.Out, Console.Error, stop.Token).ConfigureAwait(false);
