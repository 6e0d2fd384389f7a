# Shared helpers of the bench/ scripts (sourced, not run).
#
# The A/B scripts (auth.sh, genai.sh, proxy.sh, recording.sh) share one loop: wrk_option parses their common options,
# wrk_bench_start makes the run's folder, builds and starts the fast simulator, start_gateway_config starts each
# gateway, wrk_rounds warms every target up and runs wrk against them in alternating rounds (A B, A B, ...), and
# median_table / wrk_medians give the medians of the rounds, from which each script prints its ratios. The wrk
# settings are the scripts' variables threads, connections, duration (of one round) and rounds, from the options
# --threads, --connections, --duration and --rounds; the shortest run is --duration 1s --rounds 1 (plus a 3 s warm-up
# of each target). Every process listens on 127.0.0.1 and is stopped at exit (bench_work).

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
  echo "building (Release)..." >&2
  dotnet build src/Gateway -c Release -v quiet -nologo -clp:ErrorsOnly >/dev/null
  dotnet build src/ModelSim -c Release -v quiet -nologo -clp:ErrorsOnly >/dev/null
  gw_dll=$PWD/src/Gateway/bin/Release/net10.0/Gateway.dll
  sim_dll=$PWD/src/ModelSim/bin/Release/net10.0/ModelSim.dll
}

# Starts a simulator fast enough not to be the bottleneck, on free ports, output to $work/sim.log; sets SIM to its HTTP
# port: start_fast_sim
start_fast_sim() {
  SIM=$(free_port)
  dotnet "$sim_dll" --Sim:Http:Port="$SIM" --Sim:Grpc:Port="$(free_port)" --Sim:Slots=4096 --Sim:Queue=4096 \
    --Sim:PerTokenMs=0 --Sim:PrefillMs=0 --Sim:PrefillPerTokenMs=0 --Logging:LogLevel:Default=Warning >"$work/sim.log" 2>&1 &
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

# A temporary folder $work (removed at exit) and the list pids of the processes the script starts, each stopped at
# exit: bench_work NAME (the folder is /tmp/bench-NAME.XXXXXX).
bench_work() {
  work=$(mktemp -d "/tmp/bench-$1.XXXXXX")
  pids=()
  trap 'stop_pids; rm -rf "$work"' EXIT
}

# Stops the processes in pids and waits for them.
stop_pids() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }

# Starts the gateway ($gw_dll, from build_release) in $work on the configuration $work/NAME.json, output to
# $work/NAME.log, and adds it to pids: start_gateway_config NAME
start_gateway_config() {
  (cd "$work" && exec dotnet "$gw_dll" --config "$work/$1.json") >"$work/$1.log" 2>&1 &
  pids+=($!)
}

# The wrk options every A/B script takes (--duration D, --connections N, --threads N, --rounds N): sets the variable
# of that name and succeeds, or fails for any other option. In the option loop: *) wrk_option "$@" || ...; shift 2 ;;
wrk_option() {
  case "$1" in
    --duration|--connections|--threads|--rounds) (($# >= 2)) || { echo "$1 needs a value" >&2; exit 2; }; printf -v "${1#--}" '%s' "$2" ;;
    *) return 1 ;;
  esac
}

# The start of the wrk benchmarks: installs what is missing of wrk, python3, curl and the COMMAND:PACKAGEs named
# (need_commands), makes $work and pids (bench_work NAME), builds Release (build_release) and starts the fast simulator
# (start_fast_sim, sets SIM): wrk_bench_start NAME [COMMAND:PACKAGE...]
wrk_bench_start() {
  need_commands wrk:wrk python3:python3 curl:curl "${@:2}"
  bench_work "$1"
  build_release
  start_fast_sim
}

# Rounds of wrk against two or more targets in turn (A B C, A B C, ...), so that drift of a shared machine hits all
# alike, after a 3 s warm-up of each (not counted): wrk_rounds LABEL SCRIPT NAME=URL...
# Every run is wrk -t$threads -c$connections --latency with the wrk SCRIPT ("" for none), $duration long, $rounds
# rounds, plus the arguments the caller's function wrk_args NAME prints NUL-separated, if it defines one (headers).
# Each run prints "  LABEL: X req/s, p99 Y ms, errors E" to stderr, {r} and {t} in LABEL standing for the round and
# the target's NAME ("round {r} {t}" -> "  round 2 apikey: ..."). Sets rps[NAME], p99[NAME] and errs[NAME] to the
# rounds' figures in order, each followed by a space ("1234.5 1301.2 ").
wrk_rounds() {
  local label=$1 script=$2; shift 2
  local spec r x y e line
  declare -gA rps=() p99=() errs=()
  for spec in "$@"; do wrk_target "$spec" 3s "$script" >/dev/null; done
  for r in $(seq 1 "$rounds"); do
    for spec in "$@"; do
      read -r x y e < <(wrk_target "$spec" "$duration" "$script")
      rps[${spec%%=*}]+="$x " p99[${spec%%=*}]+="$y " errs[${spec%%=*}]+="$e "
      line=${label//\{r\}/$r}
      echo "  ${line//\{t\}/${spec%%=*}}: $x req/s, p99 $y ms, errors $e" >&2
    done
  done
}

# One wrk run of wrk_rounds, printing run_wrk's "rps p99ms errors": wrk_target NAME=URL DURATION SCRIPT
wrk_target() {
  local extra=()
  if declare -F wrk_args >/dev/null; then mapfile -d '' -t extra < <(wrk_args "${1%%=*}"); fi
  run_wrk "$threads" "$connections" "$2" "${1#*=}" "$3" "${extra[@]}"
}

# The medians of wrk_rounds' figures: wrk_medians NAME... sets med[NAME] (requests/s) and medp[NAME] (p99 ms).
wrk_medians() {
  declare -gA med=() medp=()
  local t
  for t in "$@"; do med[$t]=$(echo "${rps[$t]}" | median) medp[$t]=$(echo "${p99[$t]}" | median); done
}

# Prints wrk_medians' figures as a table, a row a target: requests/s and p99 ms, with --over BASE the p99 over BASE's,
# with --rounds each round's requests/s and errors: median_table [--over BASE] [--rounds] TITLE WIDTH NAME...
#   TITLE       requests/s     p99 ms  rounds (req/s; errors)
#   apikey           14432      44.00  7218.51 14541.20; 0 0
median_table() {
  local over="" with_rounds="" t
  while [[ $1 == --* ]]; do
    case "$1" in --over) over=$2; shift 2 ;; --rounds) with_rounds=1; shift ;; *) echo "median_table: unknown option $1" >&2; return 2 ;; esac
  done
  local title=$1 width=$2; shift 2
  wrk_medians "$@"
  local head="%-${width}s %12s %10s" row="%-${width}s %12.0f %10.2f" cols=("$title" "requests/s" "p99 ms")
  [ -n "$over" ] && head+=" %16s" row+=" %16s" cols+=("p99 over $over")
  [ -n "$with_rounds" ] && head+="  %s" row+="  %s; %s" cols+=("rounds (req/s; errors)")
  printf "$head\n" "${cols[@]}"
  for t in "$@"; do
    local vals=("$t" "${med[$t]}" "${medp[$t]}")
    [ -n "$over" ] && vals+=("$(awk -v p="${medp[$t]}" -v d="${medp[$over]}" 'BEGIN {printf "%+.2f ms", p-d}')")
    [ -n "$with_rounds" ] && vals+=("${rps[$t]% }" "${errs[$t]% }")
    printf "$row\n" "${vals[@]}"
  done
}
