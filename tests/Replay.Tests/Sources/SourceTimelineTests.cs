using Contracts.Recording;
using Replay.Sources;

namespace Replay.Tests.Sources;

/// <summary>Idle gaps (<c>--max-gap</c>), out-of-order records and <c>--limit</c> with amplification.</summary>
public sealed class SourceTimelineTests
{
    [Fact]
    public void Records_stored_out_of_order_are_sorted_and_counted_with_their_largest_displacement()
    {
        var items = new List<long> { 0, 10, 5, 20, 1, 30 };
        var disorder = SourceTimeline.Sort(items, static x => x);

        Assert.Equal([0, 1, 5, 10, 20, 30], items);
        Assert.NotNull(disorder);
        Assert.Equal(2, disorder.Records); // 5 (after 10) and 1 (after 20)
        Assert.Equal(3, disorder.LargestDisplacement); // 1 moved from position 4 to 1
        Assert.Equal(0.019, disorder.LargestMs, 6); // 1 µs started 19 µs before 20 µs
        Assert.Null(SourceTimeline.Sort(new List<long> { 1, 1, 2 }, static x => x));
    }

    [Fact]
    public void Idle_stretches_longer_than_the_max_gap_are_cut_to_it_measured_from_the_end_of_what_was_in_flight()
    {
        // Records: [0, 100) [50, 2 050) [10 000, 10 010) [10 500, …) [60 000, …), µs; max gap 1 000 µs.
        var moved = SourceTimeline.CloseGaps([0, 50, 10_000, 10_500, 60_000], [100, 2_000, 10, 0, 0], 1_000, out var removed);

        // 2 050 → 10 000 idle: 6 950 cut; 10 500 → 60 000: 48 500 cut. 10 010 → 10 500 (490) kept.
        Assert.Equal(6_950 + 48_500, removed);
        Assert.Equal([0, 50, 3_050, 3_550, 4_550], moved);
        Assert.Equal([0, 50, 10_000], SourceTimeline.CloseGaps([0, 50, 10_000], [0, 0, 0], null, out var none));
        Assert.Equal(0, none);
    }

    [Fact]
    public void Limit_counts_requests_after_amplification_and_cuts_the_crossing_session()
    {
        static PlannedRequest Http() => new() { Protocol = RequestProtocol.Http, PathAndQuery = "/", Route = "r" };
        var sessions = Enumerable.Range(0, 4).Select(i => new PlannedSession { Id = $"s{i}", OriginalId = $"s{i}", StartOffsetMs = i * 10, Requests = [Http(), Http(), Http()] }).ToList();

        var cut = Replay.Scheduling.Planner.Truncate(sessions, 7);

        Assert.Equal(3, cut.Count);
        Assert.Equal([3, 3, 1], cut.Select(static s => s.RequestCount));
    }
}
