namespace Replay.Cli;

/// <summary>The process exit codes (docs/replay.md lists them).</summary>
internal static class ExitCodes
{
    /// <summary>The run completed and every assertion held.</summary>
    public const int Ok = 0;

    /// <summary>The run completed but an <c>--assert</c> failed.</summary>
    public const int AssertionFailed = 1;

    /// <summary>Bad usage or input: unknown flag, invalid value, unknown recording, malformed template or trace.</summary>
    public const int UsageOrInput = 2;

    /// <summary>A target could not be reached before the run started (connection refused, unknown host).</summary>
    public const int TargetUnreachable = 3;

    /// <summary>An unexpected error inside the tool (a bug): the message and stack trace go to stderr.</summary>
    public const int InternalError = 4;

    /// <summary>
    /// The run ended (the report is written) but the target stopped answering during it: requests failed to connect
    /// or timed out, and it could still not be reached when the run was over.
    /// </summary>
    public const int TargetLost = 5;

    /// <summary>A run split among workers ended with slices that no live worker finished (the report covers the rest).</summary>
    public const int WorkersLost = 6;

    /// <summary>Interrupted (Ctrl-C); a partial report is still written.</summary>
    public const int Cancelled = 130;
}
