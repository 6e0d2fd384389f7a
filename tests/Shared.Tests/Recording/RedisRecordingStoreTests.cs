using Contracts.Recording;
using StackExchange.Redis;
using TestSupport;

namespace Contracts.Tests.Recording;

/// <summary>The Redis store against a real redis-server on a free loopback port.</summary>
public sealed class RedisRecordingStoreTests
{
    // Issue 12: after a Redis freeze the gateway's writer retried batches whose first try had gone through (the answer
    // was lost to the timeout), and 4,000 exchanges were stored as 4,004 records: a replay would send 4 twice. An append
    // is now idempotent per batch.
    [Fact]
    public async Task A_batch_appended_twice_is_stored_once_and_the_next_batch_still_lands()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var connection = await ConnectionMultiplexer.ConnectAsync(redis.ConnectionString);
        var store = new RedisRecordingStore(connection);
        await store.StartAsync("idem", CancellationToken.None);
        var batch = Enumerable.Range(1, 5).Select(i => FileRecordingStoreTests.Exchange("idem", "s", i, "b" + i)).ToList();

        await store.AppendAsync("idem", batch, [], CancellationToken.None);
        await store.AppendAsync("idem", batch, [], CancellationToken.None); // the retry of a batch that went through

        var next = Enumerable.Range(6, 3).Select(i => FileRecordingStoreTests.Exchange("idem", "s", i, "b" + i)).ToList();
        await store.AppendAsync("idem", next, [], CancellationToken.None);

        var db = connection.GetDatabase();
        Assert.Equal(8, await db.StreamLengthAsync(RedisRecordingStore.StreamKey("idem")));
        Assert.Equal(8, await db.ListLengthAsync(RedisRecordingStore.SessionIndexKey("idem", "s")));
        var marker = RedisRecordingStore.BatchKey("idem", $"{batch[0].Id}:5");
        var ttl = await db.KeyTimeToLiveAsync(marker);
        Assert.True(ttl is { } t && t > TimeSpan.FromMinutes(59) && t <= TimeSpan.FromHours(1), $"batch marker TTL {ttl}");
    }

    // Issue 12: every Redis key the recorder creates has a TTL or a documented retention; rec:index had neither (a
    // recording that expired with Retention:Ttl left its name behind for ever).
    [Fact]
    public async Task A_recording_whose_keys_expired_leaves_the_index_when_recordings_are_listed()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var connection = await ConnectionMultiplexer.ConnectAsync(redis.ConnectionString);
        var store = new RedisRecordingStore(connection);
        await store.StartAsync("kept", CancellationToken.None);
        await store.StartAsync("gone", CancellationToken.None);
        await store.AppendAsync("gone", [FileRecordingStoreTests.Exchange("gone", "s", 1, "x")], [], CancellationToken.None);
        var db = connection.GetDatabase();
        foreach (var key in new[] { RedisRecordingStore.StreamKey("gone"), RedisRecordingStore.SessionsKey("gone"), RedisRecordingStore.MetaKey("gone") })
        {
            await db.KeyDeleteAsync(key); // as Retention:Ttl expires them
        }

        var listed = await store.ListAsync(CancellationToken.None);
        Assert.Equal(["kept"], listed.Select(static r => r.Name));
        Assert.Equal(["kept"], (await db.SetMembersAsync(RedisRecordingStore.IndexKey)).Select(static m => m.ToString()));
    }
}
