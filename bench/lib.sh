# Shared helpers of the bench/ scripts (sourced, not run).

# A free TCP port on 127.0.0.1.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# Waits until an URL answers 2xx (20 s at most).
wait_http() { for _ in $(seq 1 100); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.2; done; echo "no answer from $1" >&2; return 1; }

# wrk latency (1.23ms / 456.00us / 1.02s) in milliseconds.
to_ms() {
  awk -v v="$1" 'BEGIN { if (v ~ /us$/) { sub(/us$/,"",v); print v/1000 } else if (v ~ /ms$/) { sub(/ms$/,"",v); print v } else if (v ~ /s$/) { sub(/s$/,"",v); print v*1000 } else print v }'
}

# Median of the numbers on stdin (space or newline separated).
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# One line about the machine.
machine() { echo "$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr), $(dotnet --version 2>/dev/null | sed 's/^/.NET SDK /')"; }

# Installs Debian packages for the commands that are missing: need_commands wrk:wrk nginx:nginx-light ...
need_commands() {
  local missing=()
  for spec in "$@"; do command -v "${spec%%:*}" >/dev/null 2>&1 || missing+=("${spec#*:}"); done
  ((${#missing[@]} == 0)) && return 0
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

# Builds the gateway and the simulator in Release; sets gw_dll and sim_dll.
build_release() {
  dotnet build src/Gateway -c Release -v quiet -nologo -clp:ErrorsOnly >/dev/null
  dotnet build src/ModelSim -c Release -v quiet -nologo -clp:ErrorsOnly >/dev/null
  gw_dll=$PWD/src/Gateway/bin/Release/net10.0/Gateway.dll
  sim_dll=$PWD/src/ModelSim/bin/Release/net10.0/ModelSim.dll
}

# Starts a simulator fast enough not to be the bottleneck: start_fast_sim HTTP_PORT GRPC_PORT LOG
start_fast_sim() {
  dotnet "$sim_dll" --Sim:Http:Port="$1" --Sim:Grpc:Port="$2" --Sim:Slots=4096 --Sim:Queue=4096 \
    --Sim:PerTokenMs=0 --Sim:PrefillMs=0 --Sim:PrefillPerTokenMs=0 --Logging:LogLevel:Default=Warning >"$3" 2>&1 &
  pids+=($!)
}

# Writes a gateway config with one route /v1/** to the simulator: gateway_config FILE HTTP GRPC WS ADMIN SIM_PORT [EXTRA_GATEWAY_JSON]
gateway_config() {
  cat >"$1" <<JSON
{
  "Logging": { "LogLevel": { "Default": "Warning", "Gateway.Requests": "Warning" } },
  "Gateway": {
    "Listeners": { "Http": { "Port": $2 }, "Grpc": { "Port": $3 }, "WebSocket": { "Port": $4 }, "Admin": { "Port": $5 } }${7:+,
    $7}
  },
  "ReverseProxy": {
    "Routes": { "openai": { "ClusterId": "sim", "Match": { "Path": "/v1/{**rest}" }, "Metadata": { "Listeners": "Http" } } },
    "Clusters": { "sim": { "Destinations": { "d": { "Address": "http://127.0.0.1:$6/" } },
                           "HttpClient": { "MaxConnectionsPerServer": 256 } } }
  }
}
JSON
}

# wrk with --latency; prints "rps p99ms errors" (errors: non-2xx answers and socket errors):
# run_wrk THREADS CONNECTIONS DURATION URL [SCRIPT] [MORE WRK ARGUMENTS, e.g. -H "name: value"...]
run_wrk() {
  local out
  out=$(wrk -t"$1" -c"$2" -d"$3" --latency ${5:+-s "$5"} "${@:6}" "$4")
  local errors
  errors=$(echo "$out" | awk '/Non-2xx/ {n+=$4} /Socket errors/ {gsub(",","");n+=$4+$6+$8+$10} END {print n+0}')
  echo "$(echo "$out" | awk '/Requests\/sec/ {print $2}') $(to_ms "$(echo "$out" | awk '$1=="99%" {print $2}')") $errors"
}

# A wrk script that POSTs a JSON body: post_script FILE PATH BODY
post_script() {
  cat >"$1" <<LUA
wrk.method = "POST"
wrk.path = "$2"
wrk.body = '$3'
wrk.headers["Content-Type"] = "application/json"
LUA
}
