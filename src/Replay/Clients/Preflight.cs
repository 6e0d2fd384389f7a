using System.Net.Sockets;

namespace Replay.Clients;

/// <summary>Before a run: can each target be reached at all? A refused or unresolvable target ends the run at once with a clear message (exit code 3) instead of a report full of connection errors.</summary>
internal static class Preflight
{
    /// <summary>Opens and closes one TCP connection to each target; returns the problems found.</summary>
    public static async Task<IReadOnlyList<string>> CheckAsync(IEnumerable<(string Flag, Uri Target)> targets, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var problems = new List<string>();
        var seen = new HashSet<(string, int)>();
        foreach (var (flag, target) in targets)
        {
            if (!seen.Add((target.Host, target.Port)))
            {
                continue;
            }

            using var client = new TcpClient();
            using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            cts.CancelAfter(timeout);
            try
            {
                await client.ConnectAsync(target.Host, target.Port, cts.Token).ConfigureAwait(false);
            }
            catch (SocketException ex)
            {
                problems.Add($"{flag} {target}: cannot connect to {target.Host}:{target.Port} ({ex.SocketErrorCode}: {ex.Message}).");
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                problems.Add($"{flag} {target}: no answer from {target.Host}:{target.Port} within {timeout.TotalSeconds:0.#} s.");
            }
        }

        return problems;
    }
}
