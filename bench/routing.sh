#!/usr/bin/env bash
# Replica-choice benchmark (run by hand; not a test). Four ModelSim replicas with prefix (KV) caches behind one gateway
# cluster; a shared-prefix workload (replay load --prefix-groups) at a fixed open-model rate; in one run, the cluster's
# LoadBalancingPolicy is RoundRobin, PowerOfTwoChoices, LeastRequests and InferenceAware in turn, each on fresh
# replicas (empty caches, fresh counters). Prints TTFT p50/p95, end-to-end p95, goodput at the SLO, the fleet's prefix
# cache hit rate (from the replicas' vllm:prefix_cache_* counters) and the load spread (requests per replica / mean).
#
# The replicas' caches hold about 10 of the prefixes at once (Sim:PrefixCache:Blocks), fewer than the groups, so a
# policy that sends every group everywhere evicts, and one that keeps groups on replicas hits. The groups (25) are
# handed out round-robin by the load generator: a number prime to the 4 replicas, so RoundRobin does not keep each
# group on one replica by coincidence (with 24 groups it did, and hit as often as InferenceAware).
#
# Usage: bench/routing.sh [--rate 120] [--duration 20s] [--groups 25] [--prefix-tokens 1000] [--prompt-tokens 50] [--slo-ms 1000]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

rate=120 duration=20s groups=25 prefix_tokens=1000 prompt_tokens=50 slo_ms=1000 max_tokens=16
while (($#)); do
  case "$1" in
    --rate) rate=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --groups) groups=$2; shift 2 ;;
    --prefix-tokens) prefix_tokens=$2; shift 2 ;;
    --prompt-tokens) prompt_tokens=$2; shift 2 ;;
    --slo-ms) slo_ms=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

need_commands python3:python3 curl:curl
work=$(mktemp -d /tmp/bench-routing.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

echo "building (Release)..." >&2
build_release
dotnet build src/Replay -c Release -v quiet -nologo -clp:ErrorsOnly >/dev/null
replay_dll=$PWD/src/Replay/bin/Release/net10.0/Replay.dll
sim_args=(--Sim:Slots=8 --Sim:Queue=100000 --Sim:PrefillMs=20 --Sim:PrefillPerTokenMs=0.5 --Sim:PerTokenMs=5
  --Sim:PrefixCache:Blocks=1200 --Logging:LogLevel:Default=Warning)

printf '%-18s %9s %9s %9s %11s %9s %12s\n' policy "ttft p50" "ttft p95" "e2e p95" "goodput/s" "hit rate" "max/mean load"
for policy in RoundRobin PowerOfTwoChoices LeastRequests InferenceAware; do
  sims=() sim_pids=()
  for r in 1 2 3 4; do
    P=$(free_port) G=$(free_port)
    dotnet "$sim_dll" --Sim:Http:Port="$P" --Sim:Grpc:Port="$G" "${sim_args[@]}" >"$work/sim-$policy-$r.log" 2>&1 &
    sim_pids+=($!) pids+=($!) sims+=("$P")
  done
  for P in "${sims[@]}"; do wait_http "http://127.0.0.1:$P/health"; done
  GW=$(free_port) ADM=$(free_port)
  destinations=$(for i in "${!sims[@]}"; do printf '"r%d": { "Address": "http://127.0.0.1:%s/" }%s' "$i" "${sims[$i]}" "$([ "$i" -lt 3 ] && echo ,)"; done)
  cat >"$work/gw-$policy.json" <<JSON
{
  "Logging": { "LogLevel": { "Default": "Warning", "Gateway.Requests": "Warning" } },
  "Gateway": { "Listeners": { "Http": { "Port": $GW }, "Grpc": { "Port": $(free_port) }, "WebSocket": { "Port": $(free_port) }, "Https": { "Port": $(free_port) }, "Admin": { "Port": $ADM } },
               "Admin": { "WarmupRequests": 0 } },
  "ReverseProxy": {
    "Routes": { "openai": { "ClusterId": "fleet", "Match": { "Path": "/v1/{**rest}" }, "Metadata": { "Listeners": "Http" } } },
    "Clusters": { "fleet": { "LoadBalancingPolicy": "$policy", "Destinations": { $destinations },
                             "HttpClient": { "MaxConnectionsPerServer": 256 } } }
  }
}
JSON
  (cd "$work" && exec dotnet "$gw_dll" --config "$work/gw-$policy.json") >"$work/gw-$policy.log" 2>&1 &
  gw=$! pids+=($gw)
  wait_http "http://127.0.0.1:$ADM/readyz"
  metrics=() ; for P in "${sims[@]}"; do metrics+=(--metrics-url "http://127.0.0.1:$P/metrics"); done
  dotnet "$replay_dll" load --target "http://127.0.0.1:$GW" --rate "$rate" --duration "$duration" --warmup 3s --max-tokens "$max_tokens" \
    --prefix-groups "$groups" --prefix-tokens "$prefix_tokens" --prompt-tokens "$prompt_tokens" --timeout 120s --stream \
    --slo "e2e_p95<${slo_ms}ms" --slo "ttft<${slo_ms}ms" \
    "${metrics[@]}" --report "$work/report-$policy" --progress none >"$work/load-$policy.log" 2>&1 || true
  loads=$(for P in "${sims[@]}"; do curl -fsS "http://127.0.0.1:$P/metrics" | awk '/^modelsim_completed_total/ {s+=$2} END {print s+0}'; done | tr '\n' ' ')
  python3 - "$work/report-$policy/report.json" "$policy" "$slo_ms" "$loads" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); policy, slo, loads = sys.argv[2], float(sys.argv[3]), [float(x) for x in sys.argv[4].split()]
ttft = r.get("ttft_ms") or {}
e2e = r.get("success_latency_ms") or r.get("latency_ms") or {}
window = r.get("send_window_s") or r.get("duration_s") or 1
good = (r.get("goodput") or {}).get("rps")
hit = r.get("prefix_cache_hit_rate")
spread = max(loads) / (sum(loads) / len(loads)) if loads and sum(loads) > 0 else float("nan")
fmt = lambda v: "–" if v is None else f"{v:,.1f}"
print(f"{policy:<18} {fmt(ttft.get('p50')):>9} {fmt(ttft.get('p95')):>9} {fmt(e2e.get('p95')):>9} {fmt(good):>11} "
      f"{('–' if hit is None else f'{100*hit:.1f}%'):>9} {spread:>12.2f}")
PY
  cp "$work/report-$policy/report.json" "/tmp/routing-report-$policy.json" 2>/dev/null || true
  kill "$gw" "${sim_pids[@]}" 2>/dev/null || true
  wait "$gw" "${sim_pids[@]}" 2>/dev/null || true
done
echo "load: replay load --rate $rate --duration $duration, --prefix-groups $groups --prefix-tokens $prefix_tokens --prompt-tokens $prompt_tokens, $max_tokens output tokens; 4 replicas x 8 slots, PrefillPerTokenMs 0.5, PerTokenMs 5, PrefixCache:Blocks 1200"
echo "machine: $(machine)"
