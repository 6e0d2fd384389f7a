using Gateway.Exchange;
using Yarp.ReverseProxy.LoadBalancing;
using Yarp.ReverseProxy.Model;

namespace Gateway.Routing.InferenceAware;

/// <summary>
/// A YARP load-balancing policy for replicas of one model (cluster setting <c>"LoadBalancingPolicy": "InferenceAware"</c>):
/// picks the destination by prompt-prefix affinity, queue depth and KV cache usage, with bounded load
/// (<see cref="ReplicaScorer"/>), with no sidecar.
/// </summary>
/// <remarks>
/// <list type="number">
/// <item>The prompt's chat text (<see cref="Classification.PromptText"/>, read once from the body the classification
/// step read) is hashed into chained blocks of 64 characters, once.</item>
/// <item>The cluster's <see cref="PrefixTable"/> says how many leading blocks each destination recently served, and
/// which destination served the client's session last (its session id, from a configured source, not a generated
/// one): that destination counts as holding the whole prompt, since it computed the previous turn and its answer.</item>
/// <item>Each destination's load is its scraped <c>vllm:num_requests_waiting + vllm:num_requests_running</c> plus the
/// requests the gateway sent it since that scrape (YARP's <see cref="DestinationState.ConcurrentRequestCount"/> now
/// minus at the scrape); a destination whose metrics are stale or unreadable is scored by its in-flight count alone
/// (counted: <c>gateway.routing.stale_scores</c>).</item>
/// <item>The scorer chooses, the table records the chosen destination for every block (a spill for load leaves the
/// prefix's owner in place, so a hot prefix keeps its home), and the decision is counted by
/// reason and left on the exchange for its record (the prefix-match length).</item>
/// </list>
/// YARP runs load balancing after the gateway's steps (<c>AdmissionStep</c>, then <c>ForwardStep</c>, then
/// <c>UseSessionAffinity</c>, <c>UseLoadBalancing</c>), so the replica is chosen when the request leaves the admission
/// queue, with the loads of that moment. Each gateway instance keeps its own table (see docs/routing.md).
/// </remarks>
internal sealed class InferenceAwarePolicy(ReplicaBoard board, InferenceAwareMetrics? metrics = null) : ILoadBalancingPolicy
{
    /// <summary>The policy's name in configuration.</summary>
    public const string PolicyName = "InferenceAware";

    // Candidates held on the stack; a larger cluster rents arrays.
    private const int StackCandidates = 64;

    public string Name => PolicyName;

    public DestinationState? PickDestination(HttpContext context, ClusterState cluster, IReadOnlyList<DestinationState> availableDestinations)
    {
        var count = availableDestinations.Count;
        if (count == 0)
        {
            return null;
        }

        // YARP passes the route's cluster here even when the request was reassigned to a model's cluster
        // (ReassignProxyRequest keeps the route); the cluster serving it is the proxy feature's (stranger review,
        // issue 14: decisions were counted, and prefixes kept, under the route's cluster).
        var model = context.Features.Get<Yarp.ReverseProxy.Model.IReverseProxyFeature>()?.Cluster ?? cluster.Model;
        var clusterId = model.Config.ClusterId;
        var settings = board.SettingsOf(model);
        var exchange = context.GetExchange();
        var text = exchange?.Classification?.PromptText;
        Span<ulong> chain = stackalloc ulong[settings.PrefixBlocks];
        var blocks = text is null ? 0 : PromptPrefix.Chain(text, chain);
        chain = chain[..blocks];

        int[]? rentedMatched = null;
        ReplicaInput[]? rentedInputs = null;
        Span<int> matched = count <= StackCandidates ? stackalloc int[count] : (rentedMatched = System.Buffers.ArrayPool<int>.Shared.Rent(count)).AsSpan(0, count);
        Span<ReplicaInput> inputs = count <= StackCandidates ? stackalloc ReplicaInput[count] : (rentedInputs = System.Buffers.ArrayPool<ReplicaInput>.Shared.Rent(count)).AsSpan(0, count);
        try
        {
            // A session named by the client (not one the gateway generated): its conversation's replica.
            var sessionId = exchange?.Classification?.SessionId;
            var sessionKey = sessionId is not null && !Recording.SessionResolver.IsGenerated(sessionId) ? PromptPrefix.SessionKey(sessionId) : 0UL;
            var table = blocks > 0 || sessionKey != 0 ? board.TableOf(clusterId, settings) : null;
            if (table is not null && blocks > 0)
            {
                table.Match(chain, availableDestinations, matched);
            }
            else
            {
                matched.Clear();
            }

            // The session's last replica computed its previous turn's whole prompt and answer, which this turn resends
            // first: it counts as holding the whole prompt (higress#3810: a short first turn leaves no block to match,
            // so without this the second turn, carrying the answer, was placed by load alone).
            var sessionIndex = -1;
            var sessionMatch = 0;
            if (sessionKey != 0 && table!.OwnerOf(sessionKey) is { } owner)
            {
                for (var i = 0; i < count; i++)
                {
                    if (string.Equals(availableDestinations[i].DestinationId, owner, StringComparison.Ordinal))
                    {
                        sessionIndex = i;
                        sessionMatch = matched[i];
                        matched[i] = Math.Max(matched[i], Math.Max(blocks, 1));
                        break;
                    }
                }
            }

            // Rendezvous key: the first block (prompts that share it tie-break alike); a request without one spreads at random.
            var key = blocks > 0 ? chain[0] : (ulong)Random.Shared.NextInt64();
            var stale = 0;
            for (var i = 0; i < count; i++)
            {
                var destination = availableDestinations[i];
                var load = board.LoadOf(destination);
                var sample = load.Sample;
                var inFlight = destination.ConcurrentRequestCount;
                if (board.IsStale(sample, load.Scrape))
                {
                    stale++;
                    inputs[i] = new ReplicaInput(inFlight, 0, matched[i], PromptPrefix.Mix(key, load.IdHash));
                }
                else
                {
                    var m = sample!.Metrics;
                    inputs[i] = new ReplicaInput(m.Running + m.Waiting + Math.Max(0, inFlight - sample.InFlightAtScrape), m.KvUsage, matched[i], PromptPrefix.Mix(key, load.IdHash));
                }
            }

            var (index, reason) = ReplicaScorer.Pick(inputs, Math.Max(blocks, sessionIndex >= 0 ? 1 : 0), settings);
            var chosen = availableDestinations[index];
            if (table is not null)
            {
                if (blocks > 0)
                {
                    table.Record(chain, chosen.DestinationId, replace: reason != PickReason.Load);
                }

                if (sessionKey != 0)
                {
                    table.RecordKey(sessionKey, chosen.DestinationId);
                }
            }

            if (exchange is not null && text is not null)
            {
                // The blocks the table matched (the session's credit is not a measured match).
                exchange.PrefixMatchChars = (index == sessionIndex ? sessionMatch : matched[index]) * InferenceAwareSettings.BlockChars;
            }

            if (metrics is not null)
            {
                metrics.Decision(clusterId, reason);
                metrics.Stale(clusterId, stale);
            }

            return chosen;
        }
        finally
        {
            if (rentedMatched is not null)
            {
                System.Buffers.ArrayPool<int>.Shared.Return(rentedMatched);
            }

            if (rentedInputs is not null)
            {
                System.Buffers.ArrayPool<ReplicaInput>.Shared.Return(rentedInputs);
            }
        }
    }
}
