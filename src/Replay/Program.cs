using Replay.Cli;

// The replay tool's process entry: Ctrl-C stops the run gracefully (a partial report is still written); a second
// Ctrl-C kills the process.
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
