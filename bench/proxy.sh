#!/usr/bin/env bash
# Proxy overhead benchmark (run by hand; not a test). In one run, wrk drives the same simulator endpoint:
#   direct    wrk -> ModelSim
#   gateway   wrk -> Gateway (YARP) -> ModelSim
#   yarp      wrk -> bench/BareYarp (YARP alone, none of the gateway's features) -> ModelSim
#   nginx     wrk -> nginx (reverse proxy, keep-alive upstream) -> ModelSim
#   haproxy   wrk -> HAProxy (http-reuse always) -> ModelSim
#   portkey   wrk -> Portkey's open-source LLM gateway (Node.js; npm-installed into the run's temporary folder, never
#             committed) -> ModelSim, with x-portkey-provider: openai and x-portkey-custom-host: http://SIM/v1 on
#             every request (wrk -H)
# and prints requests/s and p99 of each, the gateway's ratios to each peer (gateway/yarp is the cost of the gateway's
# own features over YARP and Kestrel), and the p99 each proxy adds over direct, with issue 11's targets reported
# (never asserted): gateway >= 0.95x bare YARP, >= 0.75x nginx, added p99 <= nginx's + 1 ms.
# Rounds alternate the targets (A B C D, A B C D, ...) so drift of a shared machine hits all alike; medians reported.
#
# Usage: bench/proxy.sh [--duration 10s] [--connections 64] [--threads 2] [--rounds 3] [--chat | --both]
#                       [--portkey-version 1.15.2 | --no-portkey]
#   --chat     POST /v1/chat/completions (16 output tokens, non-streamed) instead of GET /v1/models
#   --both     both workloads, one after the other, with the same processes
#   --portkey-version V   the @portkey-ai/gateway version to install (1.15.2 answers GET /v1/models with a 500,
#              "TypeError: immutable" in its pass-through path, Portkey-AI/gateway#1389; 1.9.8 serves it but logs a
#              TypeError stack per GET). A workload Portkey does not answer with 200 is reported without it.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

duration=10s connections=64 threads=2 rounds=3 workloads=(models) portkey_version=1.15.2
while (($#)); do
  case "$1" in
    --chat) workloads=(chat); shift ;;
    --both) workloads=(models chat); shift ;;
    --portkey-version) portkey_version=$2; shift 2 ;;
    --no-portkey) portkey_version=""; shift ;;
    *) wrk_option "$@" || { echo "unknown option $1" >&2; exit 2; }; shift 2 ;;
  esac
done

[ -n "$portkey_version" ] && need_commands node:nodejs npm:npm
wrk_bench_start proxy nginx:nginx-light haproxy:haproxy
dotnet build bench/BareYarp -c Release -v quiet -nologo -clp:ErrorsOnly >/dev/null
yarp_dll=$PWD/bench/BareYarp/bin/Release/net10.0/BareYarp.dll
GW=$(free_port); NG=$(free_port); HA=$(free_port); YP=$(free_port); PK=$(free_port)
gateway_config "$work/gateway.json" "$GW" "$(free_port)" "$(free_port)" "$(free_port)" "$SIM"
start_gateway_config gateway
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

if [ -n "$portkey_version" ]; then
  echo "installing @portkey-ai/gateway@$portkey_version into $work/portkey..." >&2
  mkdir "$work/portkey"
  echo '{ "name": "bench-portkey", "private": true }' >"$work/portkey/package.json"
  (cd "$work/portkey" && npm install --no-audit --no-fund --ignore-scripts --loglevel=error "@portkey-ai/gateway@$portkey_version" >"$work/portkey-install.log" 2>&1) \
    || { echo "npm install @portkey-ai/gateway@$portkey_version failed: $(tail -3 "$work/portkey-install.log")" >&2; exit 1; }
  pk_dir=$work/portkey/node_modules/@portkey-ai/gateway
  pk_entry=$pk_dir/$(node -p "require('$pk_dir/package.json').bin" 2>/dev/null || echo build/start-server.js) # build/start-server.js
  # It reads --port=P (with "="; "--port P" is ignored and it listens on 8787); --headless skips its web UI.
  node "$pk_entry" --port="$PK" --headless >"$work/portkey.log" 2>&1 &
  pids+=($!)
fi
portkey_headers=(-H "x-portkey-provider: openai" -H "x-portkey-custom-host: http://127.0.0.1:$SIM/v1")

declare -A port=([direct]=$SIM [gateway]=$GW [yarp]=$YP [nginx]=$NG [haproxy]=$HA [portkey]=$PK)
all_targets=(direct gateway yarp nginx haproxy)
[ -n "$portkey_version" ] && all_targets+=(portkey)
wait_http "http://127.0.0.1:$SIM/health"
for t in direct gateway yarp nginx haproxy; do wait_http "http://127.0.0.1:${port[$t]}/v1/models"; done
if [ -n "$portkey_version" ]; then # any answer will do: it may not serve /v1/models (see --portkey-version)
  for _ in $(seq 1 100); do curl -sS -o /dev/null "http://127.0.0.1:$PK/" 2>/dev/null && break; sleep 0.2; done
fi
chat_body='{"model":"sim-llm","messages":[{"role":"user","content":"hello there"}],"max_tokens":16}'
post_script "$work/post.lua" /v1/chat/completions "$chat_body"
wrk_args() { [ "$1" = portkey ] && printf '%s\0' "${portkey_headers[@]}"; return 0; } # extra wrk arguments of a target

summary=()
for workload in "${workloads[@]}"; do
  if [ "$workload" = chat ]; then path=/v1/chat/completions script=$work/post.lua; else path=/v1/models script=""; fi
  targets=() urls=()
  for t in "${all_targets[@]}"; do
    mapfile -d '' -t extra < <(wrk_args "$t")
    if [ "$workload" = chat ]; then
      code=$(curl -sS -o "$work/probe.out" -w '%{http_code}' "${extra[@]}" -H 'Content-Type: application/json' -d "$chat_body" "http://127.0.0.1:${port[$t]}$path" || true)
    else
      code=$(curl -sS -o "$work/probe.out" -w '%{http_code}' "${extra[@]}" "http://127.0.0.1:${port[$t]}$path" || true)
    fi
    if [ "$code" = 200 ]; then targets+=("$t") urls+=("$t=http://127.0.0.1:${port[$t]}$path"); else
      summary+=("$workload: $t left out: it answered $code ($(head -c 200 "$work/probe.out"))")
      echo "  $t left out of $workload: it answered $code" >&2
    fi
  done
  wrk_rounds "$workload round {r} {t}" "$script" "${urls[@]}"

  echo
  echo "machine: $(machine); load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
  echo "load: wrk -t$threads -c$connections -d$duration $( [ "$workload" = chat ] && echo "POST 16-token chat (non-streamed) ")$path, median of $rounds rounds${portkey_version:+; portkey @portkey-ai/gateway@$portkey_version}"
  median_table --over direct --rounds target 10 "${targets[@]}"
  awk -v g="${med[gateway]}" -v n="${med[nginx]}" -v h="${med[haproxy]}" -v d="${med[direct]}" -v y="${med[yarp]}" -v k="${med[portkey]:-0}" \
      -v gp="${medp[gateway]}" -v np="${medp[nginx]}" -v dp="${medp[direct]}" 'BEGIN {
    printf "gateway/yarp    %.2fx  (target >= 0.95x: %s)\n", g/y, (g >= 0.95*y) ? "met" : "missed"
    printf "gateway/nginx   %.2fx  (target >= 0.75x: %s)\n", g/n, (g >= 0.75*n) ? "met" : "missed"
    printf "gateway/haproxy %.2fx\ngateway/direct  %.2fx\nyarp/nginx      %.2fx\n", g/h, g/d, y/n
    if (k > 0) printf "gateway/portkey %.2fx\n", g/k
    printf "added p99 over direct: gateway %+.2f ms, nginx %+.2f ms (target: gateway <= nginx + 1 ms: %s)\n", gp-dp, np-dp, (gp-dp <= np-dp+1) ? "met" : "missed" }'
done
for line in "${summary[@]}"; do echo "$line"; done
