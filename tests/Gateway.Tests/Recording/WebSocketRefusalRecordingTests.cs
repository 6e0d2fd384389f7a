using System.Net.WebSockets;
using System.Text.Json;
using System.Text.Json.Nodes;
using Contracts.Recording;
using static Gateway.Tests.Shaping.ShapingConfig;

namespace Gateway.Tests.Recording;

/// <summary>
/// Stranger review of issue 16's demo: a WebSocket session refused by admission after its upgrade (close 1013) was
/// recorded as <c>"status":101,"units":[],"outcome":"completed"</c>, so nothing marked it refused (the replay tool then
/// skipped it as "without client messages"), and the dashboard counted it under <c>refused_by_limit</c> but not in
/// <c>totals.refused</c> (781 vs 794). The record now carries the gateway's close unit and <c>outcome: refused</c>, and
/// the dashboard's totals and status mix count it as the 503 it stands for.
/// </summary>
public sealed class WebSocketRefusalRecordingTests
{
    [Fact(Timeout = 60_000)]
    public async Task A_websocket_refused_by_admission_after_its_upgrade_is_recorded_with_its_1013_close_and_counted_as_refused()
    {
        var options = new GatewayHarness.Options
        {
            Edit = With(new JsonObject
            {
                ["Admission"] = new JsonObject
                {
                    ["model-http"] = new JsonObject { ["MaxInFlight"] = 1, ["QueueLimit"] = 1, ["QueueTimeout"] = "00:00:00.300" },
                },
            }),
        };
        await using var r = await RecordingHarness.StartAsync(null, options);
        var name = "ws-refused-" + Guid.NewGuid().ToString("N")[..6];
        await r.StartRecordingAsync(name);
        var uri = new Uri($"ws://{r.H.WebSocket.Authority}/v1/stream");

        // The first session holds the cluster's one slot for as long as it is open.
        using var holder = new ClientWebSocket();
        await holder.ConnectAsync(uri, CancellationToken.None);

        // The second waits 300 ms in the queue, then is accepted and closed with 1013 "try again later".
        using (var refused = new ClientWebSocket())
        {
            await refused.ConnectAsync(uri, CancellationToken.None);
            var result = await refused.ReceiveAsync(new byte[256], CancellationToken.None);
            Assert.Equal(WebSocketMessageType.Close, result.MessageType);
            Assert.Equal((WebSocketCloseStatus)1013, refused.CloseStatus);
        }

        await holder.CloseAsync(WebSocketCloseStatus.NormalClosure, "bye", CancellationToken.None);
        await r.WaitAccountedAsync(2, TimeSpan.FromSeconds(15));
        await r.StopRecordingAsync(name);

        var records = (await r.ReadAsync(name)).Where(x => x.Protocol == Protocols.WebSocket).ToList();
        Assert.Equal(2, records.Count);
        var record = Assert.Single(records, x => x.Outcome == Outcomes.Refused);
        Assert.Equal(101, record.Response.Status);
        var close = Assert.Single(record.Units!);
        Assert.Equal(Directions.ToClient, close.Dir);
        Assert.Equal(UnitKinds.Close, close.Kind);
        Assert.StartsWith("1013 ", close.Text, StringComparison.Ordinal);
        Assert.Contains("admission", close.Text, StringComparison.Ordinal);
        Assert.Equal(Outcomes.Completed, records.Single(x => x != record).Outcome); // the admitted one

        // The dashboard: the refusal counts in totals.refused and the status mix (503), not only under refused_by_limit.
        using var admin = new HttpClient { BaseAddress = r.H.Admin };
        using var doc = JsonDocument.Parse(await admin.GetStringAsync("/admin/stats"));
        var totals = doc.RootElement.GetProperty("totals");
        var byLimit = totals.GetProperty("refused_by_limit").EnumerateObject().Sum(p => p.Value.GetInt64());
        Assert.Equal(1, byLimit);
        Assert.Equal(byLimit, totals.GetProperty("refused").GetInt64());
        Assert.Equal(1, totals.GetProperty("status").GetProperty("503").GetInt64());
    }
}
