using Contracts.Recording;
using Gateway.Admin;

namespace Gateway.Recording;

/// <summary>
/// The admin API of recordings (admin listener only):
/// <list type="bullet">
/// <item><c>GET /admin/recordings</c>: every recording with name, state, count, size in bytes, sessions, first and last time;</item>
/// <item><c>POST /admin/recordings/{name}/start</c>, <c>POST /admin/recordings/{name}/stop</c>;</item>
/// <item><c>DELETE /admin/recordings/{name}</c>;</item>
/// <item><c>POST /admin/recordings/{name}/export?path=FILE.jsonl</c> and <c>POST /admin/recordings/import?path=FILE.jsonl[&amp;name=NAME]</c>
/// (files on the gateway's host, in the file store's format).</item>
/// </list>
/// Errors are JSON (<c>{"error":{...}}</c>): 400 for a bad name or path, 404 for an unknown recording, 503 while the store is unreachable.
/// </summary>
internal static class RecordingEndpoints
{
    public static IEndpointRouteBuilder MapRecordingAdmin(this IEndpointRouteBuilder endpoints)
    {
        var group = endpoints.MapGroup("/admin/recordings").WithMetadata(AdminEndpoints.AdminOnly).AddEndpointFilter<AdminTokenFilter>();

        group.MapGet("/", static async (RecordingManager manager, RecordingStoreHolder store, RecordingSink sink, RecordingMetrics metrics, CancellationToken ct) =>
        {
            // While the store is unreachable the list still answers, from this gateway's own state, and says why.
            IReadOnlyList<RecordingInfo> list = [];
            string? storeError = null;
            try
            {
                list = await store.Store.ListAsync(ct).WaitAsync(TimeSpan.FromSeconds(2), ct);
            }
            catch (Exception ex) when (IsStoreFailure(ex))
            {
                storeError = Short(ex.Message);
            }

            var names = list.Select(static r => r.Name).ToHashSet(StringComparer.Ordinal);
            var items = list.Select(r => View(r, manager)).ToList();
            items.AddRange(manager.Active.Where(n => !names.Contains(n)).Select(n => View(new RecordingInfo { Name = n, State = RecordingStates.Recording, Store = store.Store.Kind }, manager)));
            return Results.Json(new
            {
                store = store.Store.Kind,
                store_up = sink.StoreUp && storeError is null,
                store_error = storeError,
                redis_connected = store.RedisConnected,
                queue_depth = sink.QueueDepth,
                written = metrics.WrittenTotal,
                dropped = metrics.DroppedTotal,
                recordings = items,
            });
        });

        group.MapPost("/{name}/start", static async (string name, RecordingManager manager, CancellationToken ct) =>
        {
            if (!RecordingNames.IsValid(name))
            {
                return BadName(name);
            }

            try
            {
                await manager.StartAsync(name, ct);
                return Results.Json(new { name, state = RecordingStates.Recording, store = manager.StoreKind });
            }
            catch (Exception ex) when (IsStoreFailure(ex))
            {
                return Unavailable(ex);
            }
        });

        group.MapPost("/{name}/stop", static async (string name, RecordingManager manager, CancellationToken ct) =>
        {
            if (!RecordingNames.IsValid(name))
            {
                return BadName(name);
            }

            try
            {
                return await manager.StopAsync(name, ct)
                    ? Results.Json(new { name, state = RecordingStates.Stopped })
                    : NotFound(name);
            }
            catch (Exception ex) when (IsStoreFailure(ex))
            {
                return Unavailable(ex);
            }
        });

        group.MapDelete("/{name}", static async (string name, RecordingManager manager, RecordingStoreHolder store, CancellationToken ct) =>
        {
            if (!RecordingNames.IsValid(name))
            {
                return BadName(name);
            }

            if (manager.IsActive(name))
            {
                return Error(StatusCodes.Status409Conflict, "conflict", "recording_running", $"Recording '{name}' is running; stop it first.");
            }

            try
            {
                return await store.Store.DeleteAsync(name, ct) ? Results.NoContent() : NotFound(name);
            }
            catch (Exception ex) when (IsStoreFailure(ex))
            {
                return Unavailable(ex);
            }
        });

        group.MapPost("/{name}/export", static async (string name, string? path, RecordingStoreHolder store, CancellationToken ct) =>
        {
            if (!RecordingNames.IsValid(name))
            {
                return BadName(name);
            }

            if (string.IsNullOrWhiteSpace(path) || !path.EndsWith(".jsonl", StringComparison.Ordinal))
            {
                return Error(StatusCodes.Status400BadRequest, "invalid_request_error", "invalid_path", "Give ?path=FILE.jsonl, a file on the gateway's host to write.");
            }

            try
            {
                var result = await RecordingTransfer.ExportAsync(store.Store, name, path, null, ct);
                return Results.Json(new { name, path = Path.GetFullPath(path), exchanges = result.Exchanges, sessions = result.Sessions, skipped = result.Skipped });
            }
            catch (KeyNotFoundException)
            {
                return NotFound(name);
            }
            catch (Exception ex) when (ex is IOException or ArgumentException or UnauthorizedAccessException)
            {
                return Error(StatusCodes.Status400BadRequest, "invalid_request_error", "invalid_path", ex.Message);
            }
            catch (Exception ex) when (IsStoreFailure(ex))
            {
                return Unavailable(ex);
            }
        });

        group.MapPost("/import", static async (string? path, string? name, RecordingStoreHolder store, CancellationToken ct) =>
        {
            if (string.IsNullOrWhiteSpace(path))
            {
                return Error(StatusCodes.Status400BadRequest, "invalid_request_error", "invalid_path", "Give ?path=FILE.jsonl, a recording file on the gateway's host.");
            }

            if (name is not null && !RecordingNames.IsValid(name))
            {
                return BadName(name);
            }

            var target = name ?? Path.GetFileNameWithoutExtension(path);
            if (Directory.Exists(path))
            {
                return Error(StatusCodes.Status400BadRequest, "invalid_request_error", "invalid_path", $"'{path}' is a directory; give a .jsonl recording file.");
            }

            try
            {
                if (RecordingNames.IsValid(target) && await store.Store.GetAsync(target, ct) is not null)
                {
                    return Error(StatusCodes.Status409Conflict, "conflict", "recording_exists",
                        $"Recording '{target}' exists already; delete it first or import under another name (&name=NEW).");
                }

                var result = await RecordingTransfer.ImportAsync(path, store.Store, name, null, ct);
                if (result.Exchanges == 0 && result.Skipped > 0)
                {
                    await store.Store.DeleteAsync(target, ct);
                    return Error(StatusCodes.Status400BadRequest, "invalid_request_error", "not_a_recording",
                        $"'{path}' holds no readable exchange ({result.Skipped} unreadable line(s)): not a recording file.");
                }

                return Results.Json(new { name = target, exchanges = result.Exchanges, sessions = result.Sessions, skipped = result.Skipped });
            }
            catch (FileNotFoundException)
            {
                return Error(StatusCodes.Status404NotFound, "not_found", "file_not_found", $"'{path}' does not exist on the gateway's host.");
            }
            catch (Exception ex) when (ex is IOException or ArgumentException or UnauthorizedAccessException)
            {
                return Error(StatusCodes.Status400BadRequest, "invalid_request_error", "invalid_path", ex.Message);
            }
            catch (Exception ex) when (IsStoreFailure(ex))
            {
                return Unavailable(ex);
            }
        });

        return endpoints;
    }

    private static object View(RecordingInfo r, RecordingManager manager) => new
    {
        name = r.Name,
        state = manager.IsActive(r.Name) ? RecordingStates.Recording : r.State,
        count = r.Count,
        size_bytes = r.Bytes,
        sessions = r.Sessions,
        first = Time(r.FirstUnixMicros),
        last = Time(r.LastUnixMicros),
        store = r.Store,
        written_here = manager.WrittenBy(r.Name),
    };

    private static string? Time(long? unixMicros) =>
        unixMicros is { } us ? DateTimeOffset.UnixEpoch.AddTicks(us * 10).ToString("O", System.Globalization.CultureInfo.InvariantCulture) : null;

    private static bool IsStoreFailure(Exception ex) =>
        ex is StackExchange.Redis.RedisException or TimeoutException or IOException;

    private static IResult BadName(string name) => Error(StatusCodes.Status400BadRequest, "invalid_request_error", "invalid_recording_name",
        $"'{name}' is not a valid recording name: 1 to {RecordingNames.MaxLength} letters, digits, '-', '_' or '.', not starting with '.'.");

    private static IResult NotFound(string name) => Error(StatusCodes.Status404NotFound, "not_found", "recording_not_found", $"There is no recording '{name}'.");

    private static IResult Unavailable(Exception ex) => Error(StatusCodes.Status503ServiceUnavailable, "unavailable", "store_unavailable",
        $"The recording store is unavailable: {Short(ex.Message)}");

    /// <summary>The first sentence of a Redis client's message, without its connection diagnostics.</summary>
    internal static string Short(string message)
    {
        var cut = message.Length;
        foreach (var marker in new[] { ", mc:", ", inst:", "; IOCP", ", serverEndpoint", " (Please take a look" })
        {
            var at = message.IndexOf(marker, StringComparison.Ordinal);
            if (at > 0)
            {
                cut = Math.Min(cut, at);
            }
        }

        var text = message[..cut].Trim();
        return text.Length > 240 ? text[..240] + "..." : text;
    }

    private static IResult Error(int status, string type, string code, string message) =>
        Results.Json(new { error = new { message, type, code } }, statusCode: status);
}
