#!/usr/bin/env bash
# Recording overhead benchmark (run by hand; not a test). Two gateways in front of one simulator, identical but for
# recording: one records every exchange with bodies (to Redis, or with --file to the file store), one does not. wrk
# alternates between them (off, on, off, on, ...) and the medians give requests/s, p99 and the on/off ratios.
#
# Usage: bench/recording.sh [--duration 10s] [--connections 32] [--threads 2] [--rounds 3] [--file]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

duration=10s connections=32 threads=2 rounds=3 store=redis
while (($#)); do
  case "$1" in
    --file) store=file; shift ;;
    *) wrk_option "$@" || { echo "unknown option $1" >&2; exit 2; }; shift 2 ;;
  esac
done

wrk_bench_start rec redis-server:redis-server
OFF=$(free_port); ON=$(free_port); ON_ADMIN=$(free_port); REDIS=$(free_port)

if [ "$store" = redis ]; then
  redis-server --port "$REDIS" --bind 127.0.0.1 --save "" --appendonly no --loglevel warning >"$work/redis.log" 2>&1 &
  pids+=($!)
  recording="\"Recording\": { \"Redis\": \"127.0.0.1:$REDIS\", \"StartAtBoot\": \"bench\" }"
else
  recording="\"Recording\": { \"Directory\": \"$work/recordings\", \"StartAtBoot\": \"bench\" }"
fi

gateway_config "$work/off.json" "$OFF" "$(free_port)" "$(free_port)" "$(free_port)" "$SIM"
gateway_config "$work/on.json" "$ON" "$(free_port)" "$(free_port)" "$ON_ADMIN" "$SIM" "$recording"
start_gateway_config off
start_gateway_config on

body='{"model":"sim-llm","messages":[{"role":"user","content":"Summarise the quarterly report in three bullet points, please."}],"max_tokens":16,"session_id":"bench"}'
post_script "$work/post.lua" /v1/chat/completions "$body"
wait_http "http://127.0.0.1:$SIM/health"
wait_http "http://127.0.0.1:$OFF/v1/models"
wait_http "http://127.0.0.1:$ON/v1/models"
wrk_rounds "round {r} recording {t}" "$work/post.lua" off="http://127.0.0.1:$OFF/v1/chat/completions" on="http://127.0.0.1:$ON/v1/chat/completions"

status=$(curl -fsS "http://127.0.0.1:$ON_ADMIN/admin/recordings")
echo
echo "machine: $(machine)"
echo "load: wrk -t$threads -c$connections -d$duration POST /v1/chat/completions (16 tokens), median of $rounds rounds; store: $store"
median_table recording 14 off on
awk -v a="${med[on]}" -v b="${med[off]}" -v pa="${medp[on]}" -v pb="${medp[off]}" 'BEGIN { printf "on/off throughput %.2fx, p99 added %.2f ms\n", a/b, pa-pb }'
echo "recorder: $(echo "$status" | python3 -c '
import json, sys
s = json.load(sys.stdin)
r = [x for x in s["recordings"] if x["name"] == "bench"][0]
print("written %d, dropped %d, stored %d, %.1f MB" % (s["written"], s["dropped"], r["count"], r["size_bytes"] / 1e6))')"
