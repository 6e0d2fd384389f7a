#!/usr/bin/env bash
# Replay workers benchmark (run by hand, not a test; results go in docs/benchmarks.md, "## Replay workers").
#
# Two `replay worker` processes on one machine against one: the total open-model rate they sustain and the merged
# p99 schedule lag, on a trivial endpoint (the simulator's GET /health, 20,000 slots, so the server is not the limit).
# Configurations, each at every rate of --rates for --duration (after a 2 s warm-up):
#   direct        replay load in one process (no Redis), pinned to core 0        - the baseline
#   1 worker      one worker pinned to core 0, the coordinator sending nothing
#   2 workers/2   two workers on cores 0 and 1 (core 1 shared with the server and Redis)
#   2 workers/1   two workers both pinned to core 0                               - the cost of splitting on one core
# The simulator and the redis-servers are pinned to the last core; every sending process holds at most 4,000
# sockets; the four configurations run back to back at each rate, so they see about the same machine load. "Sustained" = achieved >= 99% of intended and
# completions >= 99% of requests sent.
#
# Usage: bench/replay-workers.sh [--duration 8s] [--rates "2000 5000 10000 15000"]. Needs redis-server, python3, taskset.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

duration=8s rates="2000 5000 10000 15000 20000"
while (($#)); do
  case "$1" in
    --duration) duration=$2; shift 2 ;;
    --rates) rates=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

need_commands redis-server:redis-server python3:python3 curl:curl taskset:util-linux
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
OUT=${OUT:-/tmp/replay-workers-bench}
rm -rf "$OUT/runs"; mkdir -p "$OUT/runs"
pids=()
trap stop_pids EXIT
log() { printf '[replay-workers] %s\n' "$*" >&2; }

log "building Release into $OUT/art"
dotnet build src/Replay -c Release --artifacts-path "$OUT/art" -v quiet -nologo -clp:ErrorsOnly >/dev/null
dotnet build src/ModelSim -c Release --artifacts-path "$OUT/art" -v quiet -nologo -clp:ErrorsOnly >/dev/null
REPLAY="$OUT/art/bin/Replay/release/Replay.dll"
SIM="$OUT/art/bin/ModelSim/release/ModelSim.dll"
CORES=$(nproc); SRV_CPU=$((CORES - 1))

# One redis-server per worker configuration, so that idle workers of one configuration never take the slices of
# another: every configuration is then measured at each rate back to back (the machine is shared, and its load moves).
declare -A REDIS
for cfg in w1 w2-2cores w2-1core; do
  port=$(free_port)
  setsid taskset -c "$SRV_CPU" redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --loglevel warning </dev/null >"$OUT/redis-$cfg.log" 2>&1 &
  pids+=($!); REDIS[$cfg]="127.0.0.1:$port"
done
HTTP=$(free_port); GRPC=$(free_port)
setsid taskset -c "$SRV_CPU" dotnet "$SIM" --Sim:Http:Port="$HTTP" --Sim:Grpc:Port="$GRPC" --Sim:Slots=20000 --Sim:Queue=100000 \
  --Sim:PrefillMs=0 --Sim:PrefillPerTokenMs=0 --Sim:PerTokenMs=0 --Sim:BatchSlowdown=0 --Logging:LogLevel:Default=Warning </dev/null >"$OUT/sim.log" 2>&1 &
pids+=($!)
URL="http://127.0.0.1:$HTTP"
wait_http "$URL/health"
cat >"$OUT/health.json" <<'JSON'
{ "requests": [ { "name": "health", "method": "GET", "path": "/health" } ] }
JSON

start_worker() { # start_worker CONFIG CPU NAME
  setsid taskset -c "$2" dotnet "$REPLAY" worker --redis "${REDIS[$1]}" --name "$3" </dev/null >"$OUT/worker-$3.log" 2>&1 &
  pids+=($!)
}

# At most 4,000 sockets per sending process: /health answers at once, so that is plenty, and a generator that falls
# behind cannot pile up more connections than the simulator's open-file limit allows (20,000 here).
run() { # run NAME RATE [extra args]: "${prefix[@]}" load ... "$@"
  local name=$1 rate=$2; shift 2
  "${prefix[@]}" load --template "$OUT/health.json" --target "$URL" --rate "$rate" --duration "$duration" --warmup 2s --connections 4000 \
    --progress none --report "$OUT/runs/$name-$rate" "$@" >"$OUT/runs/$name-$rate.log" 2>&1 || log "$name at $rate/s exited $?: $(tail -3 "$OUT/runs/$name-$rate.log")"
}

log "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
start_worker w1 0 w1-a
start_worker w2-2cores 0 w2c-a; start_worker w2-2cores "$SRV_CPU" w2c-b
start_worker w2-1core 0 w21-a; start_worker w2-1core 0 w21-b
sleep 5
for rate in $rates; do
  log "$rate/s: direct, 1 worker, 2 workers on 2 cores, 2 workers on core 0 (load average $(cut -d' ' -f1 /proc/loadavg))"
  prefix=(taskset -c 0 dotnet "$REPLAY"); run direct "$rate"
  prefix=(dotnet "$REPLAY")
  run w1 "$rate" --workers 1 --redis "${REDIS[w1]}"
  run w2-2cores "$rate" --workers 2 --redis "${REDIS[w2-2cores]}"
  run w2-1core "$rate" --workers 2 --redis "${REDIS[w2-1core]}"
done
log "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"

echo
echo "machine: $(machine); load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "target: GET /health of the simulator (20,000 slots) on core $SRV_CPU with redis-server; $duration per rate after a 2 s warm-up"
python3 - "$OUT/runs" "$rates" <<'PY'
import json, os, sys
runs, rates = sys.argv[1], sys.argv[2].split()
names = [("direct", "direct (1 process, core 0)"), ("w1", "1 worker (core 0)"), ("w2-2cores", "2 workers (cores 0, 1)"), ("w2-1core", "2 workers (both core 0)")]
print(f"{'configuration':<28} {'asked/s':>8} {'achieved/s':>10} {'done/s':>8} {'lag p50 ms':>10} {'lag p99 ms':>10} {'lat p99 ms':>10} {'errors':>7} {'lost':>5}  sustained")
best = {}
for key, label in names:
    for rate in rates:
        path = os.path.join(runs, f"{key}-{rate}", "report.json")
        if not os.path.exists(path):
            print(f"{label:<28} {rate:>8}  (no report)"); continue
        r = json.load(open(path))
        lag, lat = r["schedule_lag_ms"], r["latency_ms"]
        lost = r.get("workers", {}).get("lost_sessions", 0)
        ok = r["achieved_rps"] >= 0.99 * float(rate) and r["requests"] >= 0.99 * r["sent"] and r["failures"] <= 0.01 * max(1, r["requests"])
        if ok: best[key] = max(best.get(key, 0), float(rate))
        print(f"{label:<28} {rate:>8} {r['achieved_rps']:>10.0f} {r['throughput_rps']:>8.0f} {lag['p50']:>10.2f} {lag['p99']:>10.2f} {lat['p99']:>10.2f} {r['failures']:>7} {lost:>5}  {'yes' if ok else 'no'}")
print()
for key, label in names:
    print(f"highest sustained rate, {label}: {best.get(key, 0):.0f}/s")
PY
