using System.Text.Json;
using Contracts.Recording;
using TestSupport;

namespace Replay.Tests.EndToEnd;

/// <summary>Bad input gets a clear message and exit code 2 (3 for an unreachable target); a single bad record is skipped and counted.</summary>
[Collection(RealTimeGroup.Name)]
public sealed class BadInputTests
{
    [Fact(Timeout = 30_000)]
    public async Task An_unknown_recording_is_refused_naming_the_recordings_there()
    {
        using var dir = TestHost.CreateTempDirectory();
        await Recordings.WriteCaptureAsync(dir.Path, "capture");

        var result = await TestHost.RunAsync(["run", "--source", "file:" + dir.Path, "--recording", "nope", "--target", "http://127.0.0.1:9"]);

        Assert.True(result.ExitCode == 2, result.ToString());
        Assert.Contains("--recording 'nope' not found", result.Error, StringComparison.Ordinal);
        Assert.Contains("capture", result.Error, StringComparison.Ordinal);
    }

    [Theory(Timeout = 30_000)]
    [InlineData("--rate", "1e308", "--rate must be at most 1,000,000 requests/s")]
    [InlineData("--source", "azure-llm:", "--source azure-llm:FILE needs a trace file")]
    [InlineData("--source", "template: ", "--source template:FILE needs a template file")]
    public async Task Absurd_or_empty_values_are_refused_before_anything_is_sent(string option, string value, string message)
    {
        var port = FreePort.Next(); // nothing listens: a refusal must come before any connection is tried
        string[] args = option == "--rate"
            ? ["load", "--target", $"http://127.0.0.1:{port}", "--rate", value, "--duration", "2s"]
            : ["run", "--source", value, "--target", $"http://127.0.0.1:{port}", "--rate", "10", "--duration", "1s"];

        var result = await TestHost.RunAsync(args);

        Assert.True(result.ExitCode == 2, result.ToString());
        Assert.Contains(message, result.Error, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", result.Error, StringComparison.Ordinal); // no stack trace for a user's mistake
    }

    [Fact(Timeout = 30_000)]
    public async Task A_report_path_that_is_a_file_is_refused_before_the_run_not_after()
    {
        using var dir = TestHost.CreateTempDirectory();
        var file = dir.Combine("not-a-directory");
        await File.WriteAllTextAsync(file, "x");
        var port = FreePort.Next();

        var result = await TestHost.RunAsync(["load", "--target", $"http://127.0.0.1:{port}", "--rate", "10", "--duration", "1s", "--report", file]);

        Assert.True(result.ExitCode == 2, result.ToString()); // 2 (input), not 3: refused before the target was even tried
        Assert.Contains("--report must be a directory", result.Error, StringComparison.Ordinal);
    }

    [Fact(Timeout = 30_000)]
    public async Task An_unreachable_target_ends_the_run_before_it_starts()
    {
        var port = FreePort.Next();

        var result = await TestHost.RunAsync(["load", "--target", $"http://127.0.0.1:{port}", "--rate", "10", "--duration", "1s"]);

        Assert.True(result.ExitCode == 3, result.ToString());
        Assert.Contains("target unreachable", result.Error, StringComparison.Ordinal);
        Assert.Contains($"127.0.0.1:{port}", result.Error, StringComparison.Ordinal);
    }

    [Fact(Timeout = 30_000)]
    public async Task A_malformed_template_is_refused_with_its_line()
    {
        using var dir = TestHost.CreateTempDirectory();
        var template = dir.Combine("t.json");
        await File.WriteAllTextAsync(template, "{\n  \"requests\": [\n    { \"path\": \"/v1/chat/completions\" \n    { }\n  ]\n}\n");

        var result = await TestHost.RunAsync(["load", "--template", template, "--target", "http://127.0.0.1:9", "--rate", "10", "--duration", "1s"]);

        Assert.True(result.ExitCode == 2, result.ToString());
        Assert.Contains("not valid JSON at line 4", result.Error, StringComparison.Ordinal);
    }

    [Fact(Timeout = 30_000)]
    public async Task A_template_with_wrong_fields_lists_every_problem()
    {
        using var dir = TestHost.CreateTempDirectory();
        var template = dir.Combine("t.json");
        await File.WriteAllTextAsync(template, """{ "requests": [ { "protocol": "smtp" }, { "weight": 0, "path": "v1" }, { "protocol": "websocket" } ] }""");

        var result = await TestHost.RunAsync(["load", "--template", template, "--target", "http://127.0.0.1:9", "--rate", "10", "--duration", "1s"]);

        Assert.True(result.ExitCode == 2, result.ToString());
        Assert.Contains("requests[0].protocol", result.Error, StringComparison.Ordinal);
        Assert.Contains("requests[1].weight", result.Error, StringComparison.Ordinal);
        Assert.Contains("requests[1].path", result.Error, StringComparison.Ordinal);
        Assert.Contains("requests[2].messages", result.Error, StringComparison.Ordinal);
    }

    [Fact(Timeout = 60_000)]
    public async Task A_corrupt_record_is_skipped_and_counted_and_the_rest_is_replayed()
    {
        using var dir = TestHost.CreateTempDirectory();
        var recorded = await Recordings.WriteCaptureAsync(dir.Combine("store"), "capture");
        var file = Path.Combine(dir.Combine("store"), "capture.jsonl");
        await File.AppendAllTextAsync(file, "{\"type\":\"exchange\",\"exchange\":{not json\n");
        var future = Recordings.Http("capture", "late", 1, Recordings.Origin + 1000, false, "x") with { SchemaVersion = 99 };
        await File.AppendAllBytesAsync(file, RecordingFile.ExchangeLine(future));
        await using var sim = await TestHost.StartSimAsync();

        var result = await TestHost.RunAsync(["run", "--source", dir.Combine("store"), "--recording", "capture", "--speed", "4", "--report", dir.Combine("out"), .. TestHost.Targets(sim)]);

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains("skipped line", result.Error, StringComparison.Ordinal);
        Assert.Equal(recorded, sim.Stats.Requests);
        using var report = TestHost.ReadReport(dir.Combine("out"));
        Assert.Equal(2, report.RootElement.GetProperty("skipped_records").GetInt64());
        var reasons = report.RootElement.GetProperty("skipped").EnumerateArray().Select(static s => s.GetProperty("reason").GetString()).ToList();
        Assert.Contains(reasons, static r => r!.Contains("not valid JSON", StringComparison.Ordinal));
        Assert.Contains(reasons, static r => r!.Contains("schema version 99", StringComparison.Ordinal));
    }

    /// <summary>
    /// Stranger review of issue 16: a WebSocket session the gateway refused after its upgrade (close 1013) had no client
    /// message and was skipped as "WebSocket exchange without client messages", mixed with broken records. It is now
    /// recorded with <c>outcome: refused</c> and the gateway's close unit, and counted under its own reason, a recorded
    /// refusal, while the rest of the recording is replayed.
    /// </summary>
    [Fact(Timeout = 60_000)]
    public async Task A_websocket_session_refused_by_the_gateway_is_counted_as_a_recorded_refusal_not_a_broken_record()
    {
        using var dir = TestHost.CreateTempDirectory();
        var recorded = await Recordings.WriteCaptureAsync(dir.Combine("store"), "capture");
        var file = Path.Combine(dir.Combine("store"), "capture.jsonl");
        var refused = Recordings.WebSocket("capture", "ws-refused", Recordings.Origin + 500, turns: 1) with
        {
            Id = "ws-refused-1",
            Outcome = Outcomes.Refused,
            Units = [new StreamUnit { Dir = Directions.ToClient, OffsetMs = 300, Kind = UnitKinds.Close, Text = "1013 queue_timeout admission:model-http", Length = 39 }],
        };
        await File.AppendAllBytesAsync(file, RecordingFile.ExchangeLine(refused));
        await using var sim = await TestHost.StartSimAsync();

        var result = await TestHost.RunAsync(["run", "--source", dir.Combine("store"), "--recording", "capture", "--speed", "4", "--report", dir.Combine("out"), .. TestHost.Targets(sim)]);

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal(recorded, sim.Stats.Requests);
        using var report = TestHost.ReadReport(dir.Combine("out"));
        Assert.Equal(1, report.RootElement.GetProperty("skipped_records").GetInt64());
        var reason = report.RootElement.GetProperty("skipped").EnumerateArray().Single().GetProperty("reason").GetString()!;
        Assert.StartsWith("recorded refusal", reason, StringComparison.Ordinal);
        Assert.DoesNotContain("without client messages", reason, StringComparison.Ordinal);
    }

    [Fact(Timeout = 60_000)]
    public async Task Compare_counts_status_and_body_differences_with_the_recording()
    {
        using var dir = TestHost.CreateTempDirectory();
        await Recordings.WriteCaptureAsync(dir.Combine("store"), "capture");
        await using var sim = await TestHost.StartSimAsync();

        var result = await TestHost.RunAsync(["run", "--source", dir.Combine("store"), "--recording", "capture", "--speed", "4", "--compare", "--report", dir.Combine("out"), .. TestHost.Targets(sim)]);

        Assert.True(result.ExitCode == 0, result.ToString());
        using var report = TestHost.ReadReport(dir.Combine("out"));
        var comparison = report.RootElement.GetProperty("comparison");
        // 18 HTTP and 4 gRPC exchanges are compared (WebSocket connections are not); every status matches the
        // recorded 200 / grpc OK; the 9 non-streamed HTTP bodies were recorded as "{}", so each differs.
        Assert.Equal(22, comparison.GetProperty("compared").GetInt64());
        Assert.Equal(0, comparison.GetProperty("status_mismatches").GetInt64());
        Assert.Equal(9, comparison.GetProperty("body_differences").GetInt64());
    }

    [Fact(Timeout = 30_000)]
    public async Task Invalid_options_are_all_reported_naming_their_flags()
    {
        var result = await TestHost.RunAsync(["run", "--source", "azure-llm:x.csv", "--target", "ftp://host", "--speed", "0", "--amplify", "-1", "--duration", "0", "--assert", "p95<", "--warmup", "1s"]);

        Assert.True(result.ExitCode == 2, result.ToString());
        Assert.Contains("--speed must be > 0 (was 0)", result.Error, StringComparison.Ordinal);
        Assert.Contains("--amplify must be > 0", result.Error, StringComparison.Ordinal);
        Assert.Contains("--duration must be > 0 (was 0s)", result.Error, StringComparison.Ordinal);
        Assert.Contains("--assert 'p95<'", result.Error, StringComparison.Ordinal);
        Assert.Contains("ftp://host", result.Error, StringComparison.Ordinal);
        Assert.Contains("--warmup applies to", result.Error, StringComparison.Ordinal);
    }

    [Fact(Timeout = 30_000)]
    public async Task Unknown_flags_missing_sources_and_missing_files_are_usage_errors()
    {
        var unknown = await TestHost.RunAsync(["load", "--target", "http://127.0.0.1:9", "--rate", "1", "--duration", "1s", "--bogus"]);
        var noRecording = await TestHost.RunAsync(["run", "--source", Path.GetTempPath(), "--target", "http://127.0.0.1:9"]);
        var noTrace = await TestHost.RunAsync(["run", "--source", "azure-llm:/nonexistent/trace.csv", "--target", "http://127.0.0.1:9"]);
        var noStore = await TestHost.RunAsync(["run", "--source", "file:/nonexistent/store", "--recording", "x", "--target", "http://127.0.0.1:9"]);

        Assert.True(unknown.ExitCode == 2, unknown.ToString());
        Assert.Contains("--bogus", unknown.Error, StringComparison.Ordinal);
        Assert.True(noRecording.ExitCode == 2, noRecording.ToString());
        Assert.Contains("--recording NAME", noRecording.Error, StringComparison.Ordinal);
        Assert.True(noTrace.ExitCode == 2, noTrace.ToString());
        Assert.Contains("not found", noTrace.Error, StringComparison.Ordinal);
        Assert.True(noStore.ExitCode == 2, noStore.ToString());
        Assert.Contains("does not exist", noStore.Error, StringComparison.Ordinal);
    }

    [Fact(Timeout = 30_000)]
    public async Task List_shows_the_recordings_and_a_recordings_sessions()
    {
        using var dir = TestHost.CreateTempDirectory();
        await Recordings.WriteCaptureAsync(dir.Path, "capture");

        var all = await TestHost.RunAsync(["list", "--source", dir.Path]);
        var one = await TestHost.RunAsync(["list", "--source", "file:" + dir.Path, "--recording", "capture"]);

        Assert.True(all.ExitCode == 0, all.ToString());
        Assert.Contains("capture", all.Output, StringComparison.Ordinal);
        Assert.Contains("1 recording(s)", all.Output, StringComparison.Ordinal);
        Assert.True(one.ExitCode == 0, one.ToString());
        Assert.Contains("10 session(s)", one.Output, StringComparison.Ordinal);
        Assert.Contains("ws-1", one.Output, StringComparison.Ordinal);
    }
}
