#!/usr/bin/env bash
# Where the CPU of one proxied request goes (run by hand; not a test). Starts the simulator, the gateway (the same
# one-route configuration as bench/proxy.sh) and bench/BareYarp, and for each proxy in turn drives it with wrk while
# dotnet-trace samples its managed stacks (EventPipe, dotnet-sampled-thread-time, ~100 Hz per thread; samples of
# threads waiting in native code - idle pool threads, the socket engine's epoll wait, timers, watchers - are dropped,
# so what is left approximates CPU; time in native code and the kernel, e.g. send/recv, shows under its managed caller) and
# dotnet-counters records its runtime counters. (collect-linux, perf_events with kernel frames, needs tracefs mounted.) Prints, for each, requests/s during the trace, CPU seconds per request,
# and inclusive CPU by area (Kestrel, ASP.NET Core, YARP, HttpClient, sockets, the gateway's own code, logging,
# metrics, kernel), then the top frames of the gateway's own code.
#
# Usage: bench/profile-proxy.sh [--duration 10] [--connections 64] [--chat] [--out DIR]
#   Needs dotnet-trace and dotnet-counters (dotnet tool install -g dotnet-trace dotnet-counters).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

seconds=10 connections=64 chat="" out=/tmp/profile-proxy
while (($#)); do
  case "$1" in
    --duration) seconds=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    --chat) chat=1; shift ;;
    --out) out=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
export PATH="$PATH:$HOME/.dotnet/tools"
command -v dotnet-trace >/dev/null && command -v dotnet-counters >/dev/null \
  || { echo "needs dotnet-trace and dotnet-counters: dotnet tool install -g dotnet-trace dotnet-counters" >&2; exit 2; }
mkdir -p "$out"
wrk_bench_start profile
dotnet build bench/BareYarp -c Release -v quiet -nologo -clp:ErrorsOnly >/dev/null
GW=$(free_port); YP=$(free_port)
gateway_config "$work/gateway.json" "$GW" "$(free_port)" "$(free_port)" "$(free_port)" "$SIM"
start_gateway_config gateway
gw_pid=${pids[-1]}
dotnet "$PWD/bench/BareYarp/bin/Release/net10.0/BareYarp.dll" "$YP" "http://127.0.0.1:$SIM/" >"$work/yarp.log" 2>&1 &
yarp_pid=$!; pids+=($yarp_pid)
wait_http "http://127.0.0.1:$SIM/health"; wait_http "http://127.0.0.1:$GW/v1/models"; wait_http "http://127.0.0.1:$YP/v1/models"

path=/v1/models script=""
if [ -n "$chat" ]; then
  path=/v1/chat/completions script=$work/post.lua
  post_script "$script" "$path" '{"model":"sim-llm","messages":[{"role":"user","content":"hello there"}],"max_tokens":16}'
fi

for target in gateway yarp; do
  if [ $target = gateway ]; then port=$GW pid=$gw_pid; else port=$YP pid=$yarp_pid; fi
  run_wrk 2 "$connections" 5s "http://127.0.0.1:$port$path" "$script" >/dev/null # warm-up (tier-1 JIT)
  cpu0=$(awk '{print $14+$15}' "/proc/$pid/stat")
  run_wrk 2 "$connections" "$((seconds + 4))s" "http://127.0.0.1:$port$path" "$script" >"$out/$target.wrk" &
  wrk_pid=$!
  sleep 1
  dotnet-counters collect -p "$pid" --duration "00:00:00:$(printf %02d "$seconds")" --format csv -o "$out/$target.counters.csv" \
    --counters System.Runtime,Microsoft.AspNetCore.Hosting >/dev/null 2>&1 &
  counters_pid=$!
  dotnet-trace collect -p "$pid" --profile dotnet-sampled-thread-time --duration "00:00:00:$(printf %02d "$seconds")" \
    --format Speedscope -o "$out/$target.nettrace" >"$out/$target.trace.log" 2>&1 || echo "dotnet-trace failed: $(tail -3 "$out/$target.trace.log")" >&2
  wait "$counters_pid" || true
  wait "$wrk_pid"
  cpu1=$(awk '{print $14+$15}' "/proc/$pid/stat")
  read -r rps _ _ <"$out/$target.wrk"
  echo "$target: $rps req/s under the trace; $(awk -v c=$((cpu1 - cpu0)) -v r="$rps" -v s="$((seconds + 4))" -v hz="$(getconf CLK_TCK)" \
    'BEGIN {printf "%.1f us CPU per request (process user+sys over the run)", c/hz/(r*s)*1e6}')" | tee "$out/$target.summary"
done

echo
echo "machine: $(machine); load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "load: wrk -t2 -c$connections ${chat:+POST 16-token chat }$path; trace: dotnet-trace collect --profile dotnet-sampled-thread-time, ${seconds} s; files in $out"
python3 - "$out" <<'PY'
import json, sys, glob, os
out = sys.argv[1]
areas = [  # a frame's area, from its module (Module!Namespace.Type.Method); inclusive: on the stack; self: the innermost classified frame
    ("gateway (our steps)", ("Gateway",)),
    ("logging", ("Microsoft.Extensions.Logging",)),
    ("metrics", ("System.Diagnostics.DiagnosticSource", "OpenTelemetry")),
    ("YARP", ("Yarp.ReverseProxy",)),
    ("HttpClient", ("System.Net.Http",)),
    ("Kestrel", ("Microsoft.AspNetCore.Server.Kestrel",)),
    ("ASP.NET Core (hosting, routing, http)", ("Microsoft.AspNetCore", "Microsoft.Extensions")),
    ("sockets", ("System.Net.Sockets",)),
    ("pipelines", ("System.IO.Pipelines",)),
    ("thread pool", ("System.Private.CoreLib!System.Threading.ThreadPool", "System.Private.CoreLib!System.Threading.PortableThreadPool")),
]
IDLE = ("LowLevelLifoSemaphore", "WaitHandle.Wait", "Monitor.Wait", "Thread.Sleep", "SocketAsyncEngine.EventLoop", "WaitOneNoCheck",
        "TimerQueue.TimerThread", "ManualResetEventSlim.Wait", "SemaphoreSlim.Wait", "WaitForSocketEvents", "FileSystemWatcher",
        "ConsoleLoggerProcessor", "CounterGroup.PollForValues", "AggregationManager.CollectWorker", "GateThreadStart", "WorkerThreadStart")
def area_of(name):
    if "!" not in name: return None  # process and thread frames
    module = name.split("!", 1)[0]
    for a, prefixes in areas:
        if any(module == p or module.startswith(p + ".") or ("!" in p and name.startswith(p)) for p in prefixes): return a
    return None
for target in ("gateway", "yarp"):
    files = glob.glob(f"{out}/{target}*.speedscope.json")
    if not files: print(f"{target}: no speedscope file"); continue
    doc = json.load(open(files[0]))
    frames = [f["name"] for f in doc["shared"]["frames"]]
    total = 0.0; inc = {}; self_ = {}; own = {}
    stacks = {}  # dotnet-trace writes "evented" profiles (open/close of frames): time between events goes to the open stack
    for prof in doc["profiles"]:
        stack, last = [], None
        for ev in prof.get("events", []):
            if stack and last is not None:
                key = tuple(stack); stacks[key] = stacks.get(key, 0) + ev["at"] - last
            last = ev["at"]
            if ev["type"] == "O": stack.append(ev["frame"])
            elif stack: stack.pop()
        for st, w in zip(prof.get("samples", []), prof.get("weights", [])):
            stacks[tuple(st)] = stacks.get(tuple(st), 0) + w
    if True:
        for stack, w in stacks.items():
            names = [frames[i] for i in stack[-4:]]
            if names and names[-1] == "UNMANAGED_CODE_TIME" and any(k in n for n in names for k in IDLE): continue  # waiting, not CPU
            total += w
            seen = set()
            for i in stack:
                a = area_of(frames[i])
                if a: seen.add(a)
            for a in seen: inc[a] = inc.get(a, 0) + w
            leaf = "other (runtime, kernel, BCL not called from an area above)"
            for i in reversed(stack):  # speedscope stacks run from the root to the leaf
                a = area_of(frames[i])
                if a:
                    leaf = a
                    if a == "gateway (our steps)": own[frames[i]] = own.get(frames[i], 0) + w
                    break
            self_[leaf] = self_.get(leaf, 0) + w
    print(f"\n{target}: share of sampled CPU by area ({total:.0f} samples' weight)")
    print(f"  {'area':<60} {'inclusive':>9} {'self':>6}")
    for a in [a for a, _ in areas] + ["other (runtime, kernel, BCL not called from an area above)"]:
        print(f"  {a:<60} {100*inc.get(a,0)/total:8.1f}% {100*self_.get(a,0)/total:5.1f}%")
    if own:
        print("  self time of the gateway's own methods (with the BCL they call), top 12:")
        for name, w in sorted(own.items(), key=lambda kv: -kv[1])[:12]:
            print(f"    {100*w/total:5.1f}%  {name[:150]}")
PY
