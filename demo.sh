#!/usr/bin/env bash
# The demo on the embedded defaults: builds, starts the simulated GPU model server and the gateway in front of it
# (every listener, HTTPS with a certificate made here), prints each listener's URL and a copy-paste example per
# protocol, and runs until Ctrl-C.
#
#   ./demo.sh           run until Ctrl-C
#   ./demo.sh --smoke   send a few requests through every listener, print what came back, exit 0 only if all succeeded
set -euo pipefail
cd "$(dirname "$0")"

smoke=""
for arg in "$@"; do
  case "$arg" in
    --smoke) smoke=1 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "demo.sh: unknown option '$arg' (use --smoke or --help)" >&2; exit 2 ;;
  esac
done

say() { printf '\033[1;36m==>\033[0m %s\n' "$*"; }
fail() { printf '\033[1;31mdemo.sh: %s\033[0m\n' "$*" >&2; exit 1; }

command -v dotnet >/dev/null || fail "the .NET 10 SDK is required (https://dot.net); dotnet is not on PATH"
command -v curl >/dev/null || { say "installing curl"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl >/dev/null; }
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

state=.demo
mkdir -p "$state/logs" "$state/tls"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for port in 9000 9001 8080 8081 8082 8443 8090; do
  port_busy "$port" && fail "port $port is in use (another demo or gateway running?); stop it and try again"
done

say "building (Release)"
dotnet build Gateway.sln -c Release -nologo -v quiet -clp:ErrorsOnly >"$state/logs/build.log" 2>&1 || { cat "$state/logs/build.log"; fail "build failed"; }
bin() { echo "src/$1/bin/Release/net10.0/$1.dll"; }

say "making a self-signed certificate for the HTTPS listener ($state/tls)"
if [ ! -f "$state/tls/gateway.pem" ]; then
  if command -v openssl >/dev/null; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=localhost" \
      -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
      -keyout "$state/tls/gateway.key" -out "$state/tls/gateway.pem" >/dev/null 2>&1
  else
    dotnet dev-certs https -ep "$state/tls/gateway.pem" --format Pem --no-password >/dev/null
  fi
fi

say "starting the simulated model server (32 batch slots, queue of 64)"
dotnet "$(bin ModelSim)" --Sim:Slots=32 --Sim:Queue=64 --Logging:LogLevel:Default=Warning >"$state/logs/modelsim.log" 2>&1 &
pids+=($!)

say "starting the gateway (./appsettings.json)"
dotnet "$(bin Gateway)" \
  --Gateway:Listeners:Https:Certificate:Path="$state/tls/gateway.pem" \
  --Gateway:Listeners:Https:Certificate:KeyPath="$state/tls/gateway.key" \
  --Gateway:Recording:Directory="$state/recordings" \
  --Logging:LogLevel:Gateway.Requests=Warning >"$state/logs/gateway.log" 2>&1 &
pids+=($!)

for _ in $(seq 1 150); do
  curl -fsS -o /dev/null http://127.0.0.1:8090/readyz 2>/dev/null && break
  for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null || { tail -20 "$state/logs/"*.log; fail "a process exited at start-up (logs in $state/logs)"; }; done
  sleep 0.2
done
curl -fsS -o /dev/null http://127.0.0.1:8090/readyz || fail "the gateway did not become ready (logs in $state/logs)"

cat <<TXT

  listeners
    HTTP/SSE   http://127.0.0.1:8080     REST and server-sent events
    gRPC       http://127.0.0.1:8081     h2c, service inference.v1.Generation
    WebSocket  ws://127.0.0.1:8082       /v1/stream
    HTTPS      https://127.0.0.1:8443    HTTP/1.1 and HTTP/2 by ALPN (self-signed: curl -k)
    admin      http://127.0.0.1:8090     /healthz /readyz /metrics /admin/recordings
    model      http://127.0.0.1:9000     the simulated model server behind it (gRPC on 9001)

  try
    curl -s http://127.0.0.1:8080/v1/chat/completions -H 'content-type: application/json' \\
      -d '{"model":"sim-llm","messages":[{"role":"user","content":"Hello"}],"max_tokens":8}'
    curl -sN http://127.0.0.1:8080/v1/chat/completions -H 'content-type: application/json' \\
      -d '{"model":"sim-llm","messages":[{"role":"user","content":"Hello"}],"max_tokens":8,"stream":true}'
    curl -sk https://127.0.0.1:8443/v1/models
    dotnet $(bin Replay) probe --grpc http://127.0.0.1:8081      # gRPC unary and streaming
    dotnet $(bin Replay) probe --websocket ws://127.0.0.1:8082   # a WebSocket session
    curl -s -X POST http://127.0.0.1:8090/admin/recordings/demo/start
    curl -s http://127.0.0.1:8090/metrics | grep gateway_requests_total

TXT

if [ -z "$smoke" ]; then
  say "running; logs in $state/logs; Ctrl-C stops"
  wait
  exit 0
fi

say "smoke: a few requests through every listener"
failures=0
check() { # check NAME COMMAND...
  local name=$1; shift
  local out
  if out=$("$@" 2>&1); then
    printf '  \033[32mok\033[0m   %-22s %s\n' "$name" "$(echo "$out" | tr '\n' ' ' | cut -c1-110)"
  else
    printf '  \033[31mFAIL\033[0m %-22s %s\n' "$name" "$(echo "$out" | tr '\n' ' ' | cut -c1-200)"
    failures=$((failures + 1))
  fi
}
json='{"model":"sim-llm","messages":[{"role":"user","content":"Hello"}],"max_tokens":8}'
sse='{"model":"sim-llm","messages":[{"role":"user","content":"Hello"}],"max_tokens":8,"stream":true,"stream_options":{"include_usage":true}}'
check "HTTP JSON"          sh -c "curl -fsS http://127.0.0.1:8080/v1/chat/completions -H 'content-type: application/json' -d '$json' | grep -o '\"completion_tokens\":8'"
check "HTTP SSE"           sh -c "curl -fsSN http://127.0.0.1:8080/v1/chat/completions -H 'content-type: application/json' -d '$sse' | grep -c '^data: ' | grep -qx 11 && echo '10 events + [DONE]'"
check "HTTPS HTTP/1.1"     sh -c "curl -fsSk --http1.1 https://127.0.0.1:8443/v1/models | grep -o '\"id\":\"[^\"]*\"'"
check "HTTPS HTTP/2"       sh -c "curl -fsSk --http2 -o /dev/null -w 'HTTP/%{http_version} %{http_code}' https://127.0.0.1:8443/v1/models | grep '^HTTP/2 200'"
check "gRPC"               dotnet "$(bin Replay)" probe --grpc http://127.0.0.1:8081
check "WebSocket"          dotnet "$(bin Replay)" probe --websocket ws://127.0.0.1:8082
check "refused elsewhere"  sh -c "curl -sS -o /dev/null -w '%{http_code}' -X POST http://127.0.0.1:8082/v1/chat/completions -d '{}' | grep -x 404"
check "admin readyz"       sh -c "curl -fsS http://127.0.0.1:8090/readyz"
check "admin metrics"      sh -c "curl -fsS http://127.0.0.1:8090/metrics | grep -m1 '^gateway_requests_total'"

if ((failures > 0)); then
  fail "$failures smoke check(s) failed (logs in $state/logs)"
fi
say "smoke passed"
