#!/usr/bin/env bash
# Proxy overhead benchmark (run by hand; not a test). In one run, wrk drives the same simulator endpoint:
#   direct    wrk -> ModelSim
#   gateway   wrk -> Gateway (YARP) -> ModelSim
#   yarp      wrk -> bench/BareYarp (YARP alone, none of the gateway's features) -> ModelSim
#   nginx     wrk -> nginx (reverse proxy, keep-alive upstream) -> ModelSim
#   haproxy   wrk -> HAProxy (http-reuse always) -> ModelSim
# and prints requests/s and p99 of each, with the gateway/nginx, gateway/haproxy, gateway/direct and gateway/yarp ratios
# (the last one is the cost of the gateway's own features over YARP and Kestrel).
# Rounds alternate the targets (A B C D, A B C D, ...) so drift of a shared machine hits all alike; medians reported.
#
# Usage: bench/proxy.sh [--duration 10s] [--connections 64] [--threads 2] [--rounds 3] [--chat]
#   --chat   POST /v1/chat/completions (16 output tokens, non-streamed) instead of GET /v1/models
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

duration=10s connections=64 threads=2 rounds=3 chat=""
while (($#)); do
  case "$1" in
    --duration) duration=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --chat) chat=1; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

need_commands wrk:wrk nginx:nginx-light haproxy:haproxy python3:python3 curl:curl
work=$(mktemp -d /tmp/bench-proxy.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

echo "building (Release)..." >&2
build_release
dotnet build bench/BareYarp -c Release -v quiet -nologo -clp:ErrorsOnly >/dev/null
yarp_dll=$PWD/bench/BareYarp/bin/Release/net10.0/BareYarp.dll
SIM=$(free_port); SIMG=$(free_port); GW=$(free_port); NG=$(free_port); HA=$(free_port); YP=$(free_port)
start_fast_sim "$SIM" "$SIMG" "$work/sim.log"
gateway_config "$work/gateway.json" "$GW" "$(free_port)" "$(free_port)" "$(free_port)" "$SIM"
(cd "$work" && exec dotnet "$gw_dll" --config "$work/gateway.json") >"$work/gateway.log" 2>&1 &
pids+=($!)
dotnet "$yarp_dll" "$YP" "http://127.0.0.1:$SIM/" >"$work/yarp.log" 2>&1 &
pids+=($!)

cat >"$work/nginx.conf" <<NGINX
worker_processes auto;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  upstream sim { server 127.0.0.1:$SIM; keepalive 256; }
  server {
    listen 127.0.0.1:$NG;
    location / {
      proxy_pass http://sim;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
}
NGINX
nginx -c "$work/nginx.conf" -g 'daemon off;' >"$work/nginx.log" 2>&1 &
pids+=($!)

cat >"$work/haproxy.cfg" <<HAP
global
  nbthread 2
  maxconn 8192
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
  http-reuse always
frontend fe
  bind 127.0.0.1:$HA
  default_backend sim
backend sim
  server s1 127.0.0.1:$SIM maxconn 1024
HAP
haproxy -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
pids+=($!)

path=/v1/models script=""
if [ -n "$chat" ]; then
  path=/v1/chat/completions script="$work/post.lua"
  post_script "$script" "$path" '{"model":"sim-llm","messages":[{"role":"user","content":"hello there"}],"max_tokens":16}'
fi

declare -A port=([direct]=$SIM [gateway]=$GW [yarp]=$YP [nginx]=$NG [haproxy]=$HA)
targets=(direct gateway yarp nginx haproxy)
wait_http "http://127.0.0.1:$SIM/health"
for t in "${targets[@]}"; do wait_http "http://127.0.0.1:${port[$t]}/v1/models"; done
for t in "${targets[@]}"; do run_wrk "$threads" "$connections" 3s "http://127.0.0.1:${port[$t]}$path" "$script" >/dev/null; done # warm-up

declare -A rps p99
for r in $(seq 1 "$rounds"); do
  for t in "${targets[@]}"; do
    read -r x y e < <(run_wrk "$threads" "$connections" "$duration" "http://127.0.0.1:${port[$t]}$path" "$script")
    rps[$t]+="$x " p99[$t]+="$y "
    echo "  round $r $t: $x req/s, p99 $y ms, errors $e" >&2
  done
done

echo
echo "machine: $(machine)"
echo "load: wrk -t$threads -c$connections -d$duration ${chat:+POST 16-token chat }$path, median of $rounds rounds"
printf '%-10s %12s %10s\n' target "requests/s" "p99 ms"
declare -A med
for t in "${targets[@]}"; do
  med[$t]=$(echo "${rps[$t]}" | median)
  printf '%-10s %12.0f %10.2f\n' "$t" "${med[$t]}" "$(echo "${p99[$t]}" | median)"
done
awk -v g="${med[gateway]}" -v n="${med[nginx]}" -v h="${med[haproxy]}" -v d="${med[direct]}" -v y="${med[yarp]}" 'BEGIN {
  printf "gateway/nginx   %.2fx\ngateway/haproxy %.2fx\ngateway/direct  %.2fx\ngateway/yarp    %.2fx\nyarp/nginx      %.2fx\n", g/n, g/h, g/d, g/y, y/n }'
