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
  wrk_option "$@" || { echo "unknown option $1" >&2; exit 2; }
  shift 2
done

wrk_bench_start genai
GA=$(free_port); GB=$(free_port)
gateway_config "$work/genai.json" "$GA" "$(free_port)" "$(free_port)" "$(free_port)" "$SIM" '"Telemetry": { "GenAiMetrics": true }'
gateway_config "$work/plain.json" "$GB" "$(free_port)" "$(free_port)" "$(free_port)" "$SIM" '"Telemetry": { "GenAiMetrics": false }'
start_gateway_config genai
start_gateway_config plain
wait_http "http://127.0.0.1:$SIM/v1/models"
wait_http "http://127.0.0.1:$GA/v1/models"
wait_http "http://127.0.0.1:$GB/v1/models"

post_script "$work/json.lua" /v1/chat/completions '{"model":"sim-llm","messages":[{"role":"user","content":"hello there"}],"max_tokens":16}'
post_script "$work/sse.lua" /v1/chat/completions '{"model":"sim-llm","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hello there"}],"max_tokens":16}'

for w in json sse; do
  wrk_rounds "$w round {r} {t}" "$work/$w.lua" genai="http://127.0.0.1:$GA/v1/chat/completions" plain="http://127.0.0.1:$GB/v1/chat/completions"
  wrk_medians genai plain
  printf '%s  genai %8.0f req/s (p99 %s ms)  plain %8.0f req/s (p99 %s ms)  genai/plain %.3fx  rounds: genai %s / plain %s\n' \
    "$w" "${med[genai]}" "${medp[genai]}" "${med[plain]}" "${medp[plain]}" "$(awk -v a="${med[genai]}" -v b="${med[plain]}" 'BEGIN{print a/b}')" \
    "${rps[genai]% }" "${rps[plain]% }"
done
curl -s "http://127.0.0.1:$(python3 -c "import json;print(json.load(open('$work/genai.json'))['Gateway']['Listeners']['Admin']['Port'])")/metrics" | grep -c '^gen_ai_' | sed 's/^/gen_ai_ sample lines on the genai gateway: /'
echo "machine: $(machine); load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
