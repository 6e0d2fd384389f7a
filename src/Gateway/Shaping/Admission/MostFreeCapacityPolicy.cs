using Yarp.ReverseProxy.LoadBalancing;
using Yarp.ReverseProxy.Model;

namespace Gateway.Shaping.Admission;

/// <summary>
/// Load balancing for model-server replicas, chosen at the moment a request leaves the admission queue (late binding:
/// YARP's load-balancing step runs after admission): the destination with the most free capacity, where capacity is the
/// destination's <c>Metadata:Capacity</c> (its batch slots; unlimited when absent) minus the requests in flight to it;
/// ties go to the fewest in flight (least outstanding requests), then to the first. Cluster setting:
/// <c>"LoadBalancingPolicy": "MostFreeCapacity"</c>.
/// </summary>
internal sealed class MostFreeCapacityPolicy : ILoadBalancingPolicy
{
    /// <summary>The policy's name in configuration.</summary>
    public const string PolicyName = "MostFreeCapacity";

    /// <summary>Destination metadata key holding its capacity (concurrent sequences).</summary>
    public const string CapacityKey = "Capacity";

    public string Name => PolicyName;

    public DestinationState? PickDestination(HttpContext context, ClusterState cluster, IReadOnlyList<DestinationState> availableDestinations)
    {
        DestinationState? best = null;
        long bestFree = long.MinValue;
        var bestInFlight = int.MaxValue;
        for (var i = 0; i < availableDestinations.Count; i++)
        {
            var d = availableDestinations[i];
            var inFlight = d.ConcurrentRequestCount;
            var capacity = d.Model?.Config.Metadata is { } m && m.TryGetValue(CapacityKey, out var c) && long.TryParse(c, out var n) ? n : long.MaxValue / 2;
            var free = capacity - inFlight;
            if (free > bestFree || (free == bestFree && inFlight < bestInFlight))
            {
                best = d;
                bestFree = free;
                bestInFlight = inFlight;
            }
        }

        return best;
    }
}
