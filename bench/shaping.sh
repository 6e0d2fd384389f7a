#!/usr/bin/env bash
# GPU-queue protection benchmark (run by hand; not a test). A simulated model server with a GPU-like capacity
# (32 batch slots, 16 output tokens at 1.8 ms per token: about 500 requests/s) is offered an open-model load of 3x
# its capacity by the project's own load generator (replay load), in one run:
#   straight    load -> ModelSim (a deep waiting queue, as vLLM's is unbounded)
#   protected   load -> Gateway with config/protect-sim.json -> the same ModelSim
# It prints, for each: admitted requests' average and p95 latency, goodput (successful requests/s), refusals and their
# p99 latency, and the simulator's modelsim_queue_depth_max.
#
# Usage: bench/shaping.sh [--rate 1500] [--duration 30s] [--per-token-ms 1.8] [--max-tokens 16] [--tenant-limits]
#                         [--cold-start [--rounds 3] [--variants "default ..."]]
#
# --cold-start: a gateway (re)started under load, as in a rolling deploy. Each round, for each variant in turn
# (alternating, so a shared machine's drift hits all alike): start a gateway, wait for /readyz, at once send the load
# (no generator warm-up: the first second counts) -> "cold"; then the same load again to the same, now warm, gateway
# -> "warm"; stop it. One simulator (warmed first) serves every run. It prints goodput (whole run and first 3 s),
# refusal p99 and launch-to-ready time, cold/warm ratios per round and their medians (target: cold goodput >= 0.95x
# warm). Duration defaults to 10s here. A variant is NAME[:VAR=VALUE,...]: environment variables of that gateway
# (.NET settings such as DOTNET_TieredPGO=0, or configuration such as Gateway__Admin__WarmupRequests=0); the
# variable GATEWAY_DLL=r2r runs a ReadyToRun publish of the gateway (dotnet publish -p:PublishReadyToRun=true, made
# once into the run's temporary folder).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

rate=1500 duration= per_token=1.8 max_tokens=16 keep_tenant_limits= cold= rounds=3 variants=default
while (($#)); do
  case "$1" in
    --rate) rate=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --per-token-ms) per_token=$2; shift 2 ;;
    --max-tokens) max_tokens=$2; shift 2 ;;
    --tenant-limits) keep_tenant_limits=" (tenant limits kept)"; shift ;;
    --cold-start) cold=1; shift ;;
    --rounds) rounds=$2; shift 2 ;;
    --variants) variants=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

[ -z "$duration" ] && { [ -n "$cold" ] && duration=10s || duration=30s; }
need_commands python3:python3 curl:curl
bench_work shaping

build_release
dotnet build src/Replay -c Release -v quiet -nologo -clp:ErrorsOnly >/dev/null
replay_dll=$PWD/src/Replay/bin/Release/net10.0/Replay.dll

sim_args=(--Sim:Slots=32 --Sim:Queue=100000 --Sim:PrefillMs=20 --Sim:PrefillPerTokenMs=0 --Sim:PerTokenMs="$per_token" --Logging:LogLevel:Default=Warning)
capacity=$(python3 -c "print(round(1000*32/(20+$max_tokens*$per_token*1.5)))")

start_sim() { # start_sim HTTP GRPC: a fresh simulator (fresh counters)
  dotnet "$sim_dll" --Sim:Http:Port="$1" --Sim:Grpc:Port="$2" "${sim_args[@]}" >"$work/sim-$1.log" 2>&1 &
  pids+=($!)
  wait_http "http://127.0.0.1:$1/health"
}
queue_max() { curl -fsS "http://127.0.0.1:$1/metrics" | awk '/^modelsim_queue_depth_max/ {print $2}'; }

load() { # load URL REPORT_DIR [WARMUP]
  dotnet "$replay_dll" load --target "$1" --rate "$rate" --duration "$duration" --warmup "${3:-3s}" --max-tokens "$max_tokens" --timeout 120s \
    --prompt-tokens 32 --report "$2" --progress none >"$2.log" 2>&1 || { echo "load exited $?: $(tail -5 "$2.log")" >&2; }
}

# The load comes from one client, and protect-sim.json's tenant limits (per-key: 200 requests/s per API key or client
# address; tokens-per-key: 2M tokens/min) would refuse it at 200/s long before the GPU queue matters. The benchmark
# measures the GPU-queue protection (admission: in-flight cap, bounded queue, queue timeout), so it lifts them, as if
# the load came from many tenants; --tenant-limits keeps them.
tenant_limits=(--Gateway:Shaping:Policies:per-key:TokensPerPeriod=1000000 --Gateway:Shaping:Policies:per-key:TokenLimit=1000000
  --Gateway:Shaping:Policies:tokens-per-key:Tokens=1000000000)
[ -n "$keep_tenant_limits" ] && tenant_limits=()

start_gateway() { # start_gateway HTTP ADMIN SIM SIM_GRPC DLL LOG [VAR=VALUE...]: sets gw_pid
  env "${@:7}" dotnet "$5" --config "$PWD/config/protect-sim.json" \
    --Gateway:Listeners:Http:Port="$1" --Gateway:Listeners:Grpc:Port="$(free_port)" --Gateway:Listeners:WebSocket:Port="$(free_port)" \
    --Gateway:Listeners:Admin:Port="$2" --Logging:LogLevel:Default=Warning --Logging:LogLevel:Gateway.Requests=Warning \
    --ReverseProxy:Clusters:model-http:Destinations:sim:Address="http://127.0.0.1:$3/" \
    --ReverseProxy:Clusters:model-grpc:Destinations:sim:Address="http://127.0.0.1:$4/" \
    --ReverseProxy:Clusters:model-http:HealthCheck:Active:Enabled=false "${tenant_limits[@]}" >"$6" 2>&1 &
  gw_pid=$!
  pids+=($gw_pid)
}

if [ -n "$cold" ]; then
  # One simulator for every run, warmed first (in a rolling deploy only the gateway restarts).
  S=$(free_port); SG=$(free_port)
  start_sim "$S" "$SG"
  ( rate=400 duration=3s; load "http://127.0.0.1:$S" "$work/sim-warmup" 0s )
  for v in $variants; do
    if [[ "$v" == *GATEWAY_DLL=r2r* && ! -f "$work/r2r/Gateway.dll" ]]; then
      echo "publishing the gateway with ReadyToRun..." >&2
      dotnet publish src/Gateway -c Release -r linux-x64 --self-contained false -p:PublishReadyToRun=true -o "$work/r2r" \
        -v quiet -nologo -clp:ErrorsOnly >/dev/null
    fi
  done
  for r in $(seq 1 "$rounds"); do
    for v in $variants; do
      name=${v%%:*} env_vars=() dll=$gw_dll
      if [[ "$v" == *:* ]]; then IFS=, read -r -a env_vars <<<"${v#*:}"; fi
      for e in "${env_vars[@]}"; do [ "$e" = GATEWAY_DLL=r2r ] && dll=$work/r2r/Gateway.dll; done
      GW=$(free_port); GWA=$(free_port)
      t0=$(date +%s.%N)
      start_gateway "$GW" "$GWA" "$S" "$SG" "$dll" "$work/gateway-$name-$r.log" "${env_vars[@]}"
      until curl -fsS -o /dev/null "http://127.0.0.1:$GWA/readyz" 2>/dev/null; do
        kill -0 "$gw_pid" 2>/dev/null || { echo "gateway $name exited: $(tail -5 "$work/gateway-$name-$r.log")" >&2; exit 1; }
        sleep 0.05
      done
      echo "$(date +%s.%N) - $t0" | bc >"$work/$name-$r.ready"
      load "http://127.0.0.1:$GW" "$work/$name-$r-cold" 0s
      load "http://127.0.0.1:$GW" "$work/$name-$r-warm" 0s
      kill "$gw_pid"; wait "$gw_pid" 2>/dev/null || true
      echo "  round $r $name: ready after $(cat "$work/$name-$r.ready") s" >&2
    done
  done

  echo
  echo "machine: $(machine); load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
  echo "load: replay load --rate $rate --duration $duration --warmup 0s (open model, uniform arrivals), 32-token prompts, $max_tokens output tokens;"
  echo "      cold = sent as soon as /readyz answered 200 after launch; warm = the same load again to the same gateway"
  echo "model server: 32 slots, PerTokenMs $per_token, PrefillMs 20, BatchSlowdown 0.5: capacity about $capacity requests/s"
  python3 - "$work" "$rounds" "$variants" <<'PY'
import json, statistics, sys
work, rounds, variants = sys.argv[1], int(sys.argv[2]), sys.argv[3].split()
def figures(path):
    with open(f"{path}/report.json") as f: r = json.load(f)
    refused = [v for k, v in r["by_status"].items() if k in ("429", "503")]
    ref_p99 = max((v["latency_ms"]["p99"] for v in refused), default=float("nan"))
    goodput = r["succeeded"] / r["send_window_s"]
    first = [s for s in r["series"] if s["t"] < 3]
    good3 = sum(s["completed"] - s["failures"] for s in first) / 3
    return goodput, good3, ref_p99, r["success_latency_ms"]["p95"]
print(f"{'variant':<14} {'round':>5} {'ready s':>7} | {'cold goodput/s':>14} {'first 3 s':>9} {'ref p99':>8} {'ok p95':>7} | "
      f"{'warm goodput/s':>14} {'first 3 s':>9} {'ref p99':>8} {'ok p95':>7} | {'cold/warm':>9} {'first 3 s':>9}")
for v in variants:
    name = v.split(":")[0]
    ratios, ratios3 = [], []
    for r in range(1, rounds + 1):
        try:
            c, w = figures(f"{work}/{name}-{r}-cold"), figures(f"{work}/{name}-{r}-warm")
        except (OSError, KeyError, ZeroDivisionError) as e:
            print(f"{name:<14} {r:>5} no report ({e})"); continue
        ready = float(open(f"{work}/{name}-{r}.ready").read())
        ratios.append(c[0] / w[0]); ratios3.append(c[1] / w[1])
        print(f"{name:<14} {r:>5} {ready:>7.2f} | {c[0]:>14.0f} {c[1]:>9.0f} {c[2]:>8.1f} {c[3]:>7.1f} | "
              f"{w[0]:>14.0f} {w[1]:>9.0f} {w[2]:>8.1f} {w[3]:>7.1f} | {ratios[-1]:>8.2f}x {ratios3[-1]:>8.2f}x")
    if ratios:
        m = statistics.median(ratios)
        print(f"{name:<14} median cold/warm goodput {m:.2f}x (first 3 s {statistics.median(ratios3):.2f}x); "
              f"target >= 0.95x: {'met' if m >= 0.95 else 'missed'}")
PY
  exit 0
fi

echo "straight: $rate requests/s at a model server of about $capacity requests/s" >&2
S1=$(free_port); S1G=$(free_port)
start_sim "$S1" "$S1G"
load "http://127.0.0.1:$S1" "$work/straight"
straight_q=$(queue_max "$S1")

echo "protected: the same load through the gateway with config/protect-sim.json${keep_tenant_limits:- (tenant limits lifted)}" >&2
S2=$(free_port); S2G=$(free_port); GW=$(free_port); GWA=$(free_port)
start_sim "$S2" "$S2G"
start_gateway "$GW" "$GWA" "$S2" "$S2G" "$gw_dll" "$work/gateway.log"
wait_http "http://127.0.0.1:$GWA/readyz"
load "http://127.0.0.1:$GW" "$work/protected"
protected_q=$(queue_max "$S2")

echo
echo "machine: $(machine)"
echo "load: replay load --rate $rate --duration $duration (open model, uniform arrivals, 3 s warm-up), 32-token prompts, $max_tokens output tokens"
echo "model server: 32 slots, PerTokenMs $per_token, PrefillMs 20, BatchSlowdown 0.5: capacity about $capacity requests/s"
python3 - "$work" "$straight_q" "$protected_q" "$capacity" <<'PY'
import json, sys
work, sq, pq, cap = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
def load(name):
    with open(f"{work}/{name}/report.json") as f: return json.load(f)
rows = []
for name, q in (("straight", sq), ("protected", pq)):
    r = load(name)
    ok = r["success_latency_ms"]
    refused = [v for k, v in r["by_status"].items() if k in ("429", "503")]
    ref_n = sum(v["count"] for v in refused)
    ref_p99 = max((v["latency_ms"]["p99"] for v in refused), default=float("nan"))
    goodput = r["succeeded"] / r["send_window_s"] if r.get("send_window_s") else float("nan")
    rows.append((name, r["achieved_rps"], r["succeeded"], ok["mean"], ok["p95"], ok["p99"], goodput, ref_n, ref_p99, q))
print(f"{'run':<10} {'offered/s':>9} {'ok':>7} {'avg ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'goodput/s':>9} {'refused':>8} {'ref p99':>8} {'sim queue max':>13}")
for n, a, s, avg, p95, p99, g, rn, rp, q in rows:
    print(f"{n:<10} {a:>9.0f} {s:>7} {avg:>8.1f} {p95:>8.1f} {p99:>8.1f} {g:>9.0f} {rn:>8} {rp:>8.2f} {q:>13}")
p = rows[1]
print(f"protected: goodput {p[6]/cap*100:.0f}% of capacity; targets: avg <= 300 ms ({'met' if p[3] <= 300 else 'MISSED'}), "
      f"p95 <= 500 ms ({'met' if p[4] <= 500 else 'MISSED'}), goodput >= 95% ({'met' if p[6] >= 0.95*cap else 'MISSED'}), "
      f"refusals p99 < 5 ms ({'met' if p[8] < 5 else 'MISSED'}), sim queue <= 64 ({'met' if float(p[9]) <= 64 else 'MISSED'})")
PY
