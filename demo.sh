#!/usr/bin/env bash
# The whole story in one command, on the embedded defaults (Redis when redis-server is installed, the file store
# otherwise):
#   1. a simulated GPU model server (32 batch slots) and the gateway in front of it with config/protect-sim.json;
#   2. real-shaped traffic through the gateway while a recording named "demo" runs: the first minutes of the Azure LLM
#      inference trace (real arrival times and token sizes, time-compressed) plus multi-turn chat sessions over
#      HTTP/SSE, gRPC and WebSocket;
#   3. the recording replayed at --amplify 3 twice: straight to a twin model server (no gateway), and through the gateway;
#   4. a side-by-side table, the two HTML reports and a comparison page;
#   5. the gateway and its dashboard keep running until Ctrl-C.
#
#   ./demo.sh           the story, then keep running (Ctrl-C stops)
#   ./demo.sh --smoke   the same story at a smaller size; checks every step, prints the table, exits 0 only if all passed
set -euo pipefail
cd "$(dirname "$0")"

smoke=""
for arg in "$@"; do
  case "$arg" in
    --smoke) smoke=1 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "demo.sh: unknown option '$arg' (use --smoke or --help)" >&2; exit 2 ;;
  esac
done

say() { printf '\033[1;36m==>\033[0m %s\n' "$*"; }
fail() { printf '\033[1;31mdemo.sh: %s\033[0m\n' "$*" >&2; exit 1; }
pass() { printf '  \033[32mok\033[0m   %s\n' "$*"; }

command -v dotnet >/dev/null || fail "the .NET 10 SDK is required (https://dot.net); dotnet is not on PATH"
for tool in curl python3; do
  command -v "$tool" >/dev/null || { say "installing $tool"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$tool" >/dev/null; }
done
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

# The real traces are read in place: $GATEWAY_SHARED_DATA, else ../shared/data beside the repository, else /work/shared/data.
shared=${GATEWAY_SHARED_DATA:-}
for candidate in "$shared" ../shared/data /work/shared/data; do
  if [ -n "$candidate" ] && [ -d "$candidate" ]; then shared=$candidate; break; fi
done
trace=${shared:-../shared/data}/azure-llm-2023/AzureLLMInferenceTrace_conv.csv
[ -f "$trace" ] || fail "the Azure LLM trace is not at $trace (the demo reads it in place; set GATEWAY_SHARED_DATA to the folder holding azure-llm-2023/)"
if [ -n "$smoke" ]; then trace_seconds=40; speed=6; session_seconds=5; else trace_seconds=180; speed=4; session_seconds=20; fi

state=.demo
rm -rf "$state/reports" "$state/recordings"
mkdir -p "$state/logs" "$state/tls" "$state/reports"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for port in 9000 9001 9100 9101 8080 8081 8082 8443 8090; do
  port_busy "$port" && fail "port $port is in use (another demo or gateway running?); stop it and try again"
done
wait_http() { for _ in $(seq 1 150); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.2; done; fail "no answer from $1 (logs in $state/logs)"; }

say "building (Release)"
dotnet build Gateway.sln -c Release -nologo -v quiet -clp:ErrorsOnly >"$state/logs/build.log" 2>&1 || { cat "$state/logs/build.log"; fail "build failed"; }
bin() { echo "src/$1/bin/Release/net10.0/$1.dll"; }
replay() { dotnet "$(bin Replay)" "$@"; }

if [ ! -f "$state/tls/gateway.pem" ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$state/tls/gateway.key" -out "$state/tls/gateway.pem" >/dev/null 2>&1 \
    || dotnet dev-certs https -ep "$state/tls/gateway.pem" --format Pem --no-password >/dev/null
fi

# Recordings: Redis when it is installed (a server of the demo's own, on a free port), else the file store.
store_args=()
if command -v redis-server >/dev/null; then
  redis_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
  redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --loglevel warning >"$state/logs/redis.log" 2>&1 &
  pids+=($!)
  source_spec="redis://127.0.0.1:$redis_port"
  store_args=(--Gateway:Recording:Redis="127.0.0.1:$redis_port")
  store_name="Redis (127.0.0.1:$redis_port)"
else
  source_spec="file:$state/recordings"
  store_args=(--Gateway:Recording:Directory="$state/recordings")
  store_name="the file store ($state/recordings)"
fi

# A GPU-like model server: 32 batch slots, 4 ms per output token (x1.5 at a full batch), 20 ms + 0.05 ms per prompt
# token of prefill: with the trace's mean of 928 prompt and 265 output tokens, about 19 requests/s. The trace at 4x is
# about 14 requests/s (it fits); amplified 3x it is about twice what the server can do. The twin takes the unprotected
# replay, so each run starts from a fresh server; its queue is deep, as a real inference server's is.
sim=(--Sim:Slots=32 --Sim:Queue=4096 --Sim:PrefillMs=20 --Sim:PrefillPerTokenMs=0.05 --Sim:PerTokenMs=4 --Logging:LogLevel:Default=Warning)
say "1. starting the simulated model server (32 slots) and the gateway with config/protect-sim.json; recordings go to $store_name"
dotnet "$(bin ModelSim)" "${sim[@]}" >"$state/logs/modelsim.log" 2>&1 &
pids+=($!)
dotnet "$(bin ModelSim)" "${sim[@]}" --Sim:Http:Port=9100 --Sim:Grpc:Port=9101 >"$state/logs/modelsim-twin.log" 2>&1 &
pids+=($!)
dotnet "$(bin Gateway)" --config config/protect-sim.json "${store_args[@]}" \
  --Gateway:Listeners:Https:Certificate:Path="$state/tls/gateway.pem" --Gateway:Listeners:Https:Certificate:KeyPath="$state/tls/gateway.key" \
  --Logging:LogLevel:Gateway.Requests=Warning >"$state/logs/gateway.log" 2>&1 &
pids+=($!)
wait_http http://127.0.0.1:9100/health
wait_http http://127.0.0.1:8090/readyz
for p in "${pids[@]}"; do
  kill -0 "$p" 2>/dev/null || { tail -5 "$state/logs/"*.log; fail "a process of the demo exited at start-up (logs in $state/logs)"; }
done
cat <<TXT
     HTTP/SSE http://127.0.0.1:8080 · gRPC http://127.0.0.1:8081 · WebSocket ws://127.0.0.1:8082 · HTTPS https://127.0.0.1:8443
     admin http://127.0.0.1:8090 · dashboard: open http://127.0.0.1:8090/ in a browser
     model server http://127.0.0.1:9000 (gRPC 9001) · its twin http://127.0.0.1:9100 (gRPC 9101)
TXT

gateway_targets=(--target http://127.0.0.1:8080 --grpc-target http://127.0.0.1:8081 --ws-target ws://127.0.0.1:8082)
straight_targets=(--target http://127.0.0.1:9100 --grpc-target http://127.0.0.1:9101 --ws-target ws://127.0.0.1:9100)

say "2. recording 'demo': the first ${trace_seconds} s of the Azure conversation trace at ${speed}x, and multi-turn sessions over every protocol"
curl -fsS -X POST http://127.0.0.1:8090/admin/recordings/demo/start >/dev/null
replay load --template config/demo-sessions.json --rate 3 --duration "${session_seconds}s" "${gateway_targets[@]}" \
  --progress plain --report "$state/reports/sessions" >"$state/logs/sessions.log" 2>&1 &
sessions_pid=$!
replay run --source "azure-llm:$trace" --duration "${trace_seconds}s" --speed "$speed" --stream "${gateway_targets[@]}" \
  --report "$state/reports/record" 2>&1 | tee "$state/logs/record.log" | grep -v '^$' | tail -n 4
wait "$sessions_pid" || fail "the chat sessions failed (see $state/logs/sessions.log)"
curl -fsS -X POST http://127.0.0.1:8090/admin/recordings/demo/stop >/dev/null
sleep 1
recorded=$(curl -fsS http://127.0.0.1:8090/admin/recordings | python3 -c 'import json,sys; r=[x for x in json.load(sys.stdin)["recordings"] if x["name"]=="demo"][0]; print(r["count"], r["sessions"], r["size_bytes"])')
read -r rec_count rec_sessions rec_bytes <<<"$recorded"
echo "     recorded $rec_count exchanges in $rec_sessions sessions ($((rec_bytes / 1024)) KiB)"
replay list --source "$source_spec" --recording demo >"$state/logs/list.log" 2>&1 || true

say "3a. replaying 'demo' at --amplify 3 straight to the twin model server (no gateway)"
replay run --source "$source_spec" --recording demo --amplify 3 "${straight_targets[@]}" --timeout 60s \
  --slo "ttft<1s" --report "$state/reports/straight" 2>&1 | tee "$state/logs/straight.log" | grep -v '^$' | tail -n 3
say "3b. replaying 'demo' at --amplify 3 through the gateway (protect-sim.json)"
replay run --source "$source_spec" --recording demo --amplify 3 "${gateway_targets[@]}" --timeout 60s \
  --slo "ttft<1s" --report "$state/reports/protected" 2>&1 | tee "$state/logs/protected.log" | grep -v '^$' | tail -n 3

say "4. side by side"
replay compare "$state/reports/straight" "$state/reports/protected" --label-a "straight" --label-b "through gateway" \
  --out "$state/reports/compare.html" | tee "$state/logs/compare.log"
queue_max() { curl -fsS "$1/metrics" | awk '/^modelsim_queue_depth_max/ {print $2}'; }
q_straight=$(queue_max http://127.0.0.1:9100)
q_protected=$(queue_max http://127.0.0.1:9000)
printf '%-30s %18s %18s\n' "model server peak queue depth" "$q_straight" "$q_protected"
cat <<TXT
     reports: $state/reports/straight/report.html
              $state/reports/protected/report.html
     compare: $state/reports/compare.html
TXT

if [ -n "$smoke" ]; then
  say "checking every step"
  json() { python3 -c "import json,sys; r=json.load(open('$1')); print($2)"; }
  [ "$rec_count" -gt 50 ] || fail "the recording holds only $rec_count exchanges"
  grep -q "demo-anna" "$state/logs/list.log" && grep -q "demo-cara" "$state/logs/list.log" && grep -q "ws-" "$state/logs/list.log" \
    || fail "the recording does not hold the HTTP, gRPC and WebSocket sessions (replay list: $state/logs/list.log)"
  pass "recording: $rec_count exchanges, $rec_sessions sessions, HTTP/SSE, gRPC and WebSocket sessions among them"
  s_req=$(json "$state/reports/straight/report.json" 'r["requests"]'); p_req=$(json "$state/reports/protected/report.json" 'r["requests"]')
  python3 - "$rec_count" "$s_req" "$p_req" <<'PY' || fail "the replays did not send 3x the recording"
import sys
rec, s, p = map(int, sys.argv[1:])
assert abs(s - 3 * rec) <= max(3, 0.02 * 3 * rec) and abs(p - 3 * rec) <= max(3, 0.02 * 3 * rec), (rec, s, p)
PY
  pass "replays: $s_req and $p_req requests, 3x the recording"
  refused=$(json "$state/reports/protected/report.json" 'r["failures_by_kind"]["refused"]')
  [ "$refused" -gt 0 ] || fail "the gateway refused nothing at 3x the model server's capacity"
  python3 - "$state/reports/straight/report.json" "$state/reports/protected/report.json" <<'PY' || fail "the protected run was not faster than the straight one"
import json, sys
s, p = (json.load(open(f)) for f in sys.argv[1:])
assert p["success_latency_ms"]["p95"] < s["success_latency_ms"]["p95"], (p["success_latency_ms"]["p95"], s["success_latency_ms"]["p95"])
PY
  limits=$(json "$state/reports/protected/report.json" '", ".join("%s %d" % (k, v["count"]) for k, v in r["refused_by_limit"].items())')
  case "$limits" in ""|"(not named)"*) fail "the protected run's refusals do not name the limit that refused them: '$limits'";; esac
  pass "protection: $refused refused ($limits), admitted p95 below the straight run's"
  [ "${q_protected%.*}" -lt "${q_straight%.*}" ] || fail "the model server queued as much behind the gateway ($q_protected) as without it ($q_straight)"
  pass "model server peak queue: $q_straight straight, $q_protected behind the gateway"
  [ -s "$state/reports/compare.html" ] && [ -s "$state/reports/straight/report.html" ] && [ -s "$state/reports/protected/report.html" ] || fail "a report is missing"
  pass "reports and comparison page written"
  curl -fsS -o "$state/dashboard.html" http://127.0.0.1:8090/ && grep -q "operator's window" "$state/dashboard.html" || fail "the dashboard does not answer"
  pass "dashboard answers on http://127.0.0.1:8090/"
  replay probe --http http://127.0.0.1:8080 --grpc http://127.0.0.1:8081 --websocket ws://127.0.0.1:8082 >"$state/logs/probe.log" 2>&1 \
    || { cat "$state/logs/probe.log"; fail "a listener did not answer the probe"; }
  curl -fsSk --http2 -o /dev/null https://127.0.0.1:8443/v1/models || fail "the HTTPS listener did not answer"
  pass "every listener answers (HTTP/SSE, gRPC, WebSocket, HTTPS)"
  say "smoke passed"
  exit 0
fi

say "5. the gateway and its dashboard keep running: http://127.0.0.1:8090/  (logs in $state/logs; Ctrl-C stops)"
wait
