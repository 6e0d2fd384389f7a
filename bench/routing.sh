#!/usr/bin/env bash
# Replica-choice benchmark (run by hand; not a test). Four ModelSim replicas with prefix (KV) caches behind one gateway
# cluster; a shared-prefix, MULTI-TURN workload: sessions arrive open-model (replay load --session-arrivals), each a
# conversation of --turns user turns whose requests resend the conversation so far (replay's synthetic --turns: every
# turn is --prompt-tokens of new text after the previous turn's prompt and answer), and each session's first turn
# starts with one of --groups shared prefixes of --prefix-tokens (a system prompt). In one run the cluster's
# LoadBalancingPolicy is RoundRobin, PowerOfTwoChoices, LeastRequests and InferenceAware in turn, each on fresh
# replicas (empty caches, fresh counters). Prints TTFT p50/p95, end-to-end p95, goodput at the SLO, the fleet's prefix
# cache hit rate (from the replicas' vllm:prefix_cache_* counters) and the load spread (requests per replica / mean).
#
# The offered rate is --load (default 0.7) of the fleet's capacity when prefixes hit, from ModelSim's capacity formula
# (docs/modelsim.md): a request holds a slot for PrefillMs + uncached × PrefillPerTokenMs + max_tokens × PerTokenMs ×
# (1 + BatchSlowdown), and when its conversation and prefix are cached only the new text and the previous answer
# (prompt-tokens + max-tokens) are uncached; capacity = 4 × Slots × 1000 / that. The capacity when nothing hits (the
# whole conversation prefilled every turn) is printed beside it. --rate overrides (sessions/s).
#
# The replicas' caches hold about 15 of the prefixes at once (Sim:PrefixCache:Blocks), fewer than the groups, so a
# policy that sends every group everywhere evicts, and one that keeps groups (and conversations) on replicas hits. The
# groups (25) are handed out round-robin by the load generator: a number prime to the 4 replicas, so RoundRobin does
# not keep each group on one replica by coincidence.
#
# Usage: bench/routing.sh [--load 0.7] [--rate SESSIONS_PER_S] [--duration 20s] [--turns 4] [--turn-think 500ms] [--groups 25]
#                         [--prefix-tokens 1000] [--prompt-tokens 50] [--slo-ms 1000] [--policies "RoundRobin ... InferenceAware"]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

load=0.7 rate="" duration=20s turns=4 turn_think=500ms groups=25 prefix_tokens=1000 prompt_tokens=50 slo_ms=1000 max_tokens=16
policies="RoundRobin PowerOfTwoChoices LeastRequests InferenceAware"
slots=8 prefill_ms=20 prefill_per_token_ms=0.5 per_token_ms=10 batch_slowdown=0.5 cache_blocks=1200
while (($#)); do
  case "$1" in
    --load) load=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --turns) turns=$2; shift 2 ;;
    --turn-think) turn_think=$2; shift 2 ;;
    --groups) groups=$2; shift 2 ;;
    --prefix-tokens) prefix_tokens=$2; shift 2 ;;
    --prompt-tokens) prompt_tokens=$2; shift 2 ;;
    --slo-ms) slo_ms=$2; shift 2 ;;
    --policies) policies=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

need_commands python3:python3 curl:curl
bench_work routing
# Each run's reports go to a directory of its own (kept, named at the end): a fixed /tmp/routing-report-*.json was
# shared by every user and run on the machine, so one run overwrote another's (stranger review, issue 14).
reports=$(mktemp -d /tmp/routing-reports.XXXXXX)

build_release
dotnet build src/Replay -c Release -v quiet -nologo -clp:ErrorsOnly >/dev/null
replay_dll=$PWD/src/Replay/bin/Release/net10.0/Replay.dll
sim_args=(--Sim:Slots=$slots --Sim:Queue=100000 --Sim:PrefillMs=$prefill_ms --Sim:PrefillPerTokenMs=$prefill_per_token_ms --Sim:PerTokenMs=$per_token_ms
  --Sim:BatchSlowdown=$batch_slowdown --Sim:PrefixCache:Blocks=$cache_blocks --Logging:LogLevel:Default=Warning)

# Capacity from ModelSim's formula (requests/s of the 4-replica fleet), with every prefix and conversation cached
# (uncached: this turn's new text and the previous answer) and with nothing cached (the mean turn's whole prompt).
read -r cap_hit cap_miss mean_prompt < <(python3 - "$slots" "$prefill_ms" "$prefill_per_token_ms" "$per_token_ms" "$batch_slowdown" "$turns" "$prefix_tokens" "$prompt_tokens" "$max_tokens" <<'PY'
import sys
slots, prefill, per_prompt, per_token, slow = (float(x) for x in sys.argv[1:6])
turns, prefix, prompt, out = (int(x) for x in sys.argv[6:10])
decode = out * per_token * (1 + slow)
hit = prefill + (prompt + out) * per_prompt + decode
mean = sum(prefix + k * prompt + (k - 1) * out for k in range(1, turns + 1)) / turns
miss = prefill + mean * per_prompt + decode
print(f"{4 * slots * 1000 / hit:.1f} {4 * slots * 1000 / miss:.1f} {mean:.0f}")
PY
)
if [ -z "$rate" ]; then
  rate=$(python3 -c "print(round($load * $cap_hit / $turns, 2))")
fi
offered=$(python3 -c "print(round($rate * $turns, 1))")
echo "fleet capacity (ModelSim formula): $cap_hit requests/s when prefixes and conversations hit, $cap_miss when nothing hits (mean prompt $mean_prompt tokens)" >&2
echo "offered: $rate sessions/s x $turns turns = $offered requests/s ($(python3 -c "print(round(100 * $offered / $cap_hit))")% of the hit capacity, $(python3 -c "print(round(100 * $offered / $cap_miss))")% of the miss capacity)" >&2

printf '%-18s %9s %9s %9s %11s %9s %12s  %8s  %-20s %s\n' policy "ttft p50" "ttft p95" "e2e p95" "goodput/s" "hit rate" "max/mean load" requests "per replica" "load avg"
for policy in $policies; do
  load_before=$(cut -d' ' -f1 /proc/loadavg)
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
  dotnet "$replay_dll" load --target "http://127.0.0.1:$GW" --session-arrivals --rate "$rate" --duration "$duration" --warmup 3s \
    --turns "$turns" --turn-think "$turn_think" --max-tokens "$max_tokens" \
    --prefix-groups "$groups" --prefix-tokens "$prefix_tokens" --prompt-tokens "$prompt_tokens" --timeout 60s --stream \
    --slo "e2e_p95<${slo_ms}ms" --slo "ttft<${slo_ms}ms" \
    "${metrics[@]}" --report "$work/report-$policy" --progress none >"$work/load-$policy.log" 2>&1 || true
  loads=$(for P in "${sims[@]}"; do curl -fsS "http://127.0.0.1:$P/metrics" | awk '/^modelsim_completed_total/ {s+=$2} END {print s+0}'; done | tr '\n' ' ')
  python3 - "$work/report-$policy/report.json" "$policy" "$slo_ms" "$loads" "$load_before" "$(cut -d' ' -f1 /proc/loadavg)" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); policy, slo, loads = sys.argv[2], float(sys.argv[3]), [float(x) for x in sys.argv[4].split()]
load_avg = f"{sys.argv[5]}→{sys.argv[6]}"
ttft = r.get("ttft_ms") or {}
e2e = r.get("success_latency_ms") or r.get("latency_ms") or {}
window = r.get("send_window_s") or r.get("duration_s") or 1
good = (r.get("goodput") or {}).get("rps")
hit = r.get("prefix_cache_hit_rate")
spread = max(loads) / (sum(loads) / len(loads)) if loads and sum(loads) > 0 else float("nan")
fmt = lambda v: "–" if v is None else f"{v:,.1f}"
print(f"{policy:<18} {fmt(ttft.get('p50')):>9} {fmt(ttft.get('p95')):>9} {fmt(e2e.get('p95')):>9} {fmt(good):>11} "
      f"{('–' if hit is None else f'{100*hit:.1f}%'):>9} {spread:>12.2f}  {r.get('requests', 0):>8}  {' '.join(str(int(x)) for x in loads):<20} {load_avg}")
PY
  cp "$work/report-$policy/report.json" "$reports/routing-report-$policy.json" 2>/dev/null || true
  kill "$gw" "${sim_pids[@]}" 2>/dev/null || true
  wait "$gw" "${sim_pids[@]}" 2>/dev/null || true
done
echo "load: replay load --session-arrivals --rate $rate (x $turns turns = $offered requests/s) --duration $duration --turn-think $turn_think, --prefix-groups $groups --prefix-tokens $prefix_tokens --prompt-tokens $prompt_tokens, $max_tokens output tokens; 4 replicas x $slots slots, PrefillMs $prefill_ms, PrefillPerTokenMs $prefill_per_token_ms, PerTokenMs $per_token_ms, BatchSlowdown $batch_slowdown, PrefixCache:Blocks $cache_blocks"
echo "machine: $(machine)"
echo "reports: $reports/routing-report-{policy}.json"
