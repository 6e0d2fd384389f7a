#!/usr/bin/env bash
# Cost of the OpenTelemetry GenAI metrics on the request path (run by hand; not a test). In one run, wrk drives two
# gateway processes in front of one fast ModelSim, the same build and configuration except
# Gateway:Telemetry:GenAiMetrics (true: the default, each LLM exchange gets a usage meter and four histograms; false:
# only the gateway_* series), in alternating rounds (A B, A B, ...) so that a shared machine's drift hits both alike;
# medians reported, with the ratio genai/plain per workload.
#
# Usage: bench/genai.sh [--duration 8s] [--connections 64] [--threads 2] [--rounds 3]
#   workloads: POST /v1/chat/completions with 16 output tokens, non-streamed (JSON) and streamed (SSE, include_usage)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

duration=8s connections=64 threads=2 rounds=3
while (($#)); do
  case "$1" in
    --duration) duration=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

need_commands wrk:wrk python3:python3 curl:curl
work=$(mktemp -d /tmp/bench-genai.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

echo "building (Release)..." >&2
build_release
SIM=$(free_port); SIMG=$(free_port); GA=$(free_port); GB=$(free_port)
start_fast_sim "$SIM" "$SIMG" "$work/sim.log"
gateway_config "$work/genai.json" "$GA" "$(free_port)" "$(free_port)" "$(free_port)" "$SIM" '"Telemetry": { "GenAiMetrics": true }'
gateway_config "$work/plain.json" "$GB" "$(free_port)" "$(free_port)" "$(free_port)" "$SIM" '"Telemetry": { "GenAiMetrics": false }'
(cd "$work" && exec dotnet "$gw_dll" --config "$work/genai.json") >"$work/genai.log" 2>&1 &
pids+=($!)
(cd "$work" && exec dotnet "$gw_dll" --config "$work/plain.json") >"$work/plain.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$SIM/v1/models"
wait_http "http://127.0.0.1:$GA/v1/models"
wait_http "http://127.0.0.1:$GB/v1/models"

post_script "$work/json.lua" /v1/chat/completions '{"model":"sim-llm","messages":[{"role":"user","content":"hello there"}],"max_tokens":16}'
post_script "$work/sse.lua" /v1/chat/completions '{"model":"sim-llm","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hello there"}],"max_tokens":16}'
declare -A port=([genai]=$GA [plain]=$GB)

for w in json sse; do
  for t in genai plain; do run_wrk "$threads" "$connections" 3s "http://127.0.0.1:${port[$t]}/v1/chat/completions" "$work/$w.lua" >/dev/null; done
  declare -A rps=() p99=()
  for r in $(seq 1 "$rounds"); do
    for t in genai plain; do
      read -r x y e < <(run_wrk "$threads" "$connections" "$duration" "http://127.0.0.1:${port[$t]}/v1/chat/completions" "$work/$w.lua")
      echo "  $w round $r $t: $x req/s, p99 $y ms, errors $e" >&2
      rps[$t]="${rps[$t]:-} $x"; p99[$t]="${p99[$t]:-} $y"
    done
  done
  a=$(echo "${rps[genai]}" | median); b=$(echo "${rps[plain]}" | median)
  printf '%s  genai %8.0f req/s (p99 %s ms)  plain %8.0f req/s (p99 %s ms)  genai/plain %.3fx  rounds: genai%s / plain%s\n' \
    "$w" "$a" "$(echo "${p99[genai]}" | median)" "$b" "$(echo "${p99[plain]}" | median)" "$(awk -v a="$a" -v b="$b" 'BEGIN{print a/b}')" "${rps[genai]}" "${rps[plain]}"
  unset rps p99
done
curl -s "http://127.0.0.1:$(python3 -c "import json;print(json.load(open('$work/genai.json'))['Gateway']['Listeners']['Admin']['Port'])")/metrics" | grep -c '^gen_ai_' | sed 's/^/gen_ai_ sample lines on the genai gateway: /'
echo "machine: $(machine); load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
