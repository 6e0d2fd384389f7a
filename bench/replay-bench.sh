#!/usr/bin/env bash
# Replay load generator benchmark (run by hand, not a test; results go in docs/benchmarks.md, "## Replay load generator").
#
#  1. wrk's closed-loop maximum on a trivial endpoint (the simulator's GET /health);
#  2. the highest constant open-model rate `replay load` sustains on the same endpoint with p99 schedule lag < 1 ms
#     (and achieved >= 99% of intended), found by stepping the rate up;
#  3. Artillery (npm, installed into a temp dir, never committed) asked for that same arrival rate: its achieved rate
#     and p99 beside ours;
#  4. peak RSS of `replay load` holding 10,000 concurrent WebSocket sessions (open model, 1000 new sessions/s for
#     10 s, sessions longer than that), measured with /usr/bin/time -v, with the schedule lag it kept; two shapes.
#
# The server is pinned to the last core and every load generator to core 0 (taskset), so they compete for the same
# single core. Usage: bench/replay-bench.sh [seconds per run, default 10]. Needs wrk, node/npm, python3, taskset.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
ROOT=$PWD
D=${1:-10}
OUT=${OUT:-/tmp/replay-bench}
mkdir -p "$OUT"
log() { printf '\033[1m[replay-bench]\033[0m %s\n' "$*" >&2; }
ulimit -n 65535 2>/dev/null || ulimit -n "$(ulimit -Hn)"

CORES=$(nproc)
GEN_CPU=0
SRV_CPU=$((CORES - 1))

log "building Release into $OUT/art"
dotnet build src/Replay -c Release --artifacts-path "$OUT/art" -v quiet -nologo -clp:ErrorsOnly
dotnet build src/ModelSim -c Release --artifacts-path "$OUT/art" -v quiet -nologo -clp:ErrorsOnly
REPLAY="$OUT/art/bin/Replay/release/Replay.dll"
SIM="$OUT/art/bin/ModelSim/release/ModelSim.dll"

SIM_PID=""
stop_sim() { if [ -n "$SIM_PID" ]; then kill "$SIM_PID" 2>/dev/null || true; wait "$SIM_PID" 2>/dev/null || true; SIM_PID=""; fi; }
trap stop_sim EXIT
start_sim() { # args: per-token ms
  local http grpc
  http=$(free_port); grpc=$(free_port)
  setsid taskset -c "$SRV_CPU" dotnet "$SIM" --Sim:Http:Port="$http" --Sim:Grpc:Port="$grpc" --Sim:Slots=20000 --Sim:Queue=100000 \
    --Sim:PrefillMs=0 --Sim:PrefillPerTokenMs=0 --Sim:PerTokenMs="$1" --Sim:BatchSlowdown=0 </dev/null >"$OUT/sim.log" 2>&1 &
  SIM_PID=$!
  URL="http://127.0.0.1:$http"
  for _ in $(seq 100); do curl -fs "$URL/health" >/dev/null 2>&1 && return 0; sleep 0.1; done
  log "the simulator did not start"; cat "$OUT/sim.log"; exit 1
}

cat >"$OUT/health.json" <<'JSON'
{ "requests": [ { "name": "health", "method": "GET", "path": "/health" } ] }
JSON

start_sim 0
log "target $URL/health (server on core $SRV_CPU, generators on core $GEN_CPU); load average: $(cut -d' ' -f1-3 /proc/loadavg)"

# Warm the server's JIT so the first tool measured is not penalised.
taskset -c "$GEN_CPU" wrk -t1 -c64 -d3s "$URL/health" >/dev/null

log "wrk: closed loop, 1 thread, 64 connections, ${D}s"
taskset -c "$GEN_CPU" wrk -t1 -c64 -d"${D}s" --latency "$URL/health" >"$OUT/wrk.txt"
WRK_RPS=$(awk '/Requests\/sec/ {print $2}' "$OUT/wrk.txt")
WRK_P99=$(awk '$1=="99%" {print $2}' "$OUT/wrk.txt")
log "wrk: $WRK_RPS req/s, p99 $WRK_P99"

run_replay() { # rate -> prints "achieved lag_p99 p99"
  local dir="$OUT/replay-$1"
  taskset -c "$GEN_CPU" dotnet "$REPLAY" load --template "$OUT/health.json" --target "$URL" --rate "$1" --duration "${D}s" \
    --warmup 3s --connections 64 --progress none --report "$dir" >"$dir.txt" 2>&1 || true
  python3 - "$dir/report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(r["achieved_rps"], r["schedule_lag_ms"]["p99"], r["latency_ms"]["p99"], r["failures"])
PY
}

log "replay load: open model at fixed rates (3 s unmeasured warm-up each), and at 0.8x wrk's figure"
AT80=$(python3 -c "print(int(float('$WRK_RPS')*0.8/100)*100)")
BEST=0; BEST_LINE=""
: >"$OUT/replay-steps.txt"
for RATE in 1000 2000 5000 10000 15000 20000 "$AT80"; do
  read -r ACH LAG P99 FAIL < <(run_replay "$RATE")
  echo "| $RATE | $ACH | $LAG | $P99 | $FAIL |" | tee -a "$OUT/replay-steps.txt" >&2
  if python3 -c "import sys; sys.exit(0 if float('$LAG') < 1 and float('$ACH') >= 0.99*$RATE and int('$FAIL') == 0 else 1)"; then
    if [ "$RATE" -gt "$BEST" ]; then BEST=$RATE; BEST_LINE="$ACH $LAG $P99"; fi
  fi
done
log "replay load: best $BEST req/s with p99 lag < 1 ms ($BEST_LINE)"

run_artillery() { # rate -> prints "rps p99 errors"
  cat >"$OUT/artillery-$1.yml" <<YML
config:
  target: "$URL"
  phases:
    - duration: $D
      arrivalRate: $1
scenarios:
  - flow:
      - get:
          url: "/health"
YML
  (cd "$OUT/artillery" && taskset -c "$GEN_CPU" ./node_modules/.bin/artillery run --output "$OUT/artillery-$1.json" "$OUT/artillery-$1.yml" >"$OUT/artillery-$1.txt" 2>&1) || true
  python3 - "$OUT/artillery-$1.json" <<'PY'
import json, sys
a = json.load(open(sys.argv[1]))["aggregate"]
c, s = a.get("counters", {}), a.get("summaries", {})
err = sum(v for k, v in c.items() if k.startswith("errors."))
# Artillery keeps going until every scheduled virtual user has run, so its achieved rate is the responses over the
# span it actually took (first to last metric), not over the phase's duration.
span = max(1e-3, (a["lastCounterAt"] - a["firstCounterAt"]) / 1000.0)
print(round(c.get("http.responses", 0) / span, 1), s.get("http.response_time", {}).get("p99", "n/a"), err)
PY
}

log "Artillery: installing into $OUT/artillery (npm registry; browser download skipped)"
if [ ! -x "$OUT/artillery/node_modules/.bin/artillery" ]; then
  mkdir -p "$OUT/artillery"
  (cd "$OUT/artillery" && npm init -y >/dev/null && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --ignore-scripts --no-audit --no-fund --loglevel=error artillery@2 >/dev/null)
fi
: >"$OUT/artillery-steps.txt"
for RATE in $(( BEST > 0 ? BEST : 1000 )) 5000 10000; do
  read -r RPS P99 ERR < <(run_artillery "$RATE")
  REPLAY_AT=$(grep "^| $RATE |" "$OUT/replay-steps.txt" | head -1)
  echo "| $RATE | $RPS | $P99 | $ERR | ${REPLAY_AT:-n/a} |" | tee -a "$OUT/artillery-steps.txt" >&2
done

stop_sim
start_sim 10
# Two shapes of 10,000 concurrent sessions (1000 new sessions/s for 10 s, so all are open at t = 10 s):
#   light: 3 turns of 10 tokens, 5 s think time (~15 s per session, ~2,000 turns/s at the peak);
#   heavy: 10 turns of 10 tokens, 1 s think time (~11 s per session, ~10,000 turns/s at the peak).
memory_run() { # name turns think_ms
  python3 - "$OUT/ws-$1.json" "$2" "$3" <<'PY'
import json, sys
turn = {"prompt": "hello", "max_tokens": 10}
json.dump({"requests": [{"name": "ws-session", "protocol": "websocket", "path": "/v1/stream",
                         "think_ms": int(sys.argv[3]), "messages": [turn] * int(sys.argv[2])}]}, open(sys.argv[1], "w"))
PY
  taskset -c "$GEN_CPU" /usr/bin/time -v dotnet "$REPLAY" load --template "$OUT/ws-$1.json" --target "$URL" --rate 1000 --duration 10s \
    --session-arrivals --progress none --report "$OUT/memory-$1" >"$OUT/memory-$1.txt" 2>"$OUT/memory-$1.time" || true
  local rss
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$OUT/memory-$1.time")
  python3 - "$OUT/memory-$1/report.json" "$rss" "$1" "$2" "$3" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); g = r["generator"]; lag = r["schedule_lag_ms"]
print(f"| {sys.argv[3]}: {sys.argv[4]} turns, {sys.argv[5]} ms think | {int(sys.argv[2]) // 1024} MB | {r['peak_concurrent_sessions']} | "
      f"{r['requests']} / {r['failures']} | {lag['p50']} / {lag['p99']} / {lag['max']} ms | {g['cpu_s']} s, GC pause {g['gc_pause_ms']} ms |")
PY
}
log "memory: 10,000 concurrent WebSocket sessions, two shapes"
MEM_LIGHT=$(memory_run light 3 5000)
MEM_HEAVY=$(memory_run heavy 10 1000)
log "memory: $MEM_LIGHT"
log "memory: $MEM_HEAVY"

cat >"$OUT/results.md" <<MD
Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/ {print $2}') GiB; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg).

| wrk closed loop (1 thread, 64 connections, ${D}s) | $WRK_RPS req/s, p99 $WRK_P99 |
| --- | --- |

replay load, open model, constant rate, ${D}s after a 3 s warm-up (64 connections):

| intended req/s | achieved req/s | schedule lag p99 ms | latency p99 ms | failures |
| --- | --- | --- | --- | --- |
$(cat "$OUT/replay-steps.txt")

Highest rate with p99 schedule lag < 1 ms: $BEST req/s, $(python3 -c "print(round($BEST/float('$WRK_RPS'), 2))")x wrk.

Artillery (arrivalRate, ${D}s) beside replay at the same rate:

| arrivals/s | Artillery achieved req/s | Artillery p99 ms | Artillery errors | replay at that rate (intended, achieved, lag p99, p99, failures) |
| --- | --- | --- | --- | --- |
$(cat "$OUT/artillery-steps.txt")

10,000 concurrent WebSocket sessions (1000 new sessions/s for 10 s):

| shape | peak RSS | sessions at once | turns / failures | schedule lag p50 / p99 / max | generator CPU, GC |
| --- | --- | --- | --- | --- | --- |
$MEM_LIGHT
$MEM_HEAVY
MD
cat "$OUT/results.md"
