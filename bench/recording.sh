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
    --duration) duration=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --file) store=file; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

need_commands wrk:wrk redis-server:redis-server python3:python3 curl:curl
work=$(mktemp -d /tmp/bench-rec.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

echo "building (Release)..." >&2
build_release
SIM=$(free_port); SIMG=$(free_port); OFF=$(free_port); ON=$(free_port); ON_ADMIN=$(free_port); REDIS=$(free_port)
start_fast_sim "$SIM" "$SIMG" "$work/sim.log"

if [ "$store" = redis ]; then
  redis-server --port "$REDIS" --bind 127.0.0.1 --save "" --appendonly no --loglevel warning >"$work/redis.log" 2>&1 &
  pids+=($!)
  recording="\"Recording\": { \"Redis\": \"127.0.0.1:$REDIS\", \"StartAtBoot\": \"bench\" }"
else
  recording="\"Recording\": { \"Directory\": \"$work/recordings\", \"StartAtBoot\": \"bench\" }"
fi

gateway_config "$work/off.json" "$OFF" "$(free_port)" "$(free_port)" "$(free_port)" "$SIM"
gateway_config "$work/on.json" "$ON" "$(free_port)" "$(free_port)" "$ON_ADMIN" "$SIM" "$recording"
(cd "$work" && exec dotnet "$gw_dll" --config "$work/off.json") >"$work/off.log" 2>&1 &
pids+=($!)
(cd "$work" && exec dotnet "$gw_dll" --config "$work/on.json") >"$work/on.log" 2>&1 &
pids+=($!)

body='{"model":"sim-llm","messages":[{"role":"user","content":"Summarise the quarterly report in three bullet points, please."}],"max_tokens":16,"session_id":"bench"}'
post_script "$work/post.lua" /v1/chat/completions "$body"
wait_http "http://127.0.0.1:$SIM/health"
wait_http "http://127.0.0.1:$OFF/v1/models"
wait_http "http://127.0.0.1:$ON/v1/models"
for p in $OFF $ON; do run_wrk "$threads" "$connections" 3s "http://127.0.0.1:$p/v1/chat/completions" "$work/post.lua" >/dev/null; done

declare -A rps p99 port=([off]=$OFF [on]=$ON)
for r in $(seq 1 "$rounds"); do
  for t in off on; do
    read -r x y e < <(run_wrk "$threads" "$connections" "$duration" "http://127.0.0.1:${port[$t]}/v1/chat/completions" "$work/post.lua")
    rps[$t]+="$x " p99[$t]+="$y "
    echo "  round $r recording $t: $x req/s, p99 $y ms, errors $e" >&2
  done
done

status=$(curl -fsS "http://127.0.0.1:$ON_ADMIN/admin/recordings")
echo
echo "machine: $(machine)"
echo "load: wrk -t$threads -c$connections -d$duration POST /v1/chat/completions (16 tokens), median of $rounds rounds; store: $store"
printf '%-14s %12s %10s\n' recording "requests/s" "p99 ms"
declare -A mr mp
for t in off on; do
  mr[$t]=$(echo "${rps[$t]}" | median); mp[$t]=$(echo "${p99[$t]}" | median)
  printf '%-14s %12.0f %10.2f\n' "$t" "${mr[$t]}" "${mp[$t]}"
done
awk -v a="${mr[on]}" -v b="${mr[off]}" -v pa="${mp[on]}" -v pb="${mp[off]}" 'BEGIN { printf "on/off throughput %.2fx, p99 added %.2f ms\n", a/b, pa-pb }'
echo "recorder: $(echo "$status" | python3 -c '
import json, sys
s = json.load(sys.stdin)
r = [x for x in s["recordings"] if x["name"] == "bench"][0]
print("written %d, dropped %d, stored %d, %.1f MB" % (s["written"], s["dropped"], r["count"], r["size_bytes"] / 1e6))')"
