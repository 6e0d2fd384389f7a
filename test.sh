#!/usr/bin/env bash
# Runs every test of the project on a fresh Debian/Ubuntu machine that has only the .NET SDK.
# It installs what the tests need (redis-server and the like, from the distribution's packages) when missing,
# restores, builds and runs all test projects. Tests start their own servers on free loopback ports.
set -euo pipefail
cd "$(dirname "$0")"

log() { printf '\033[1m[test.sh]\033[0m %s\n' "$*"; }

install_packages() {
  local missing=()
  for spec in "$@"; do
    local cmd=${spec%%:*} pkg=${spec#*:}
    command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
  done
  ((${#missing[@]} == 0)) && return 0
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  log "installing ${missing[*]} from the distribution's packages"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# command:package pairs the tests need: a real Redis for recording and fleet-wide limits, Debian's chromium and its
# driver for the dashboard test in a headless browser.
install_packages redis-server:redis-server chromium:chromium chromedriver:chromium-driver

export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
log "restoring and building"
dotnet restore Gateway.sln --nologo -v quiet
dotnet build Gateway.sln -c Release --no-restore --nologo -v quiet -clp:ErrorsOnly

log "running tests"
dotnet test Gateway.sln -c Release --no-build --nologo --logger "console;verbosity=minimal" "$@"

# The whole story end to end, checked step by step: only on a full run (arguments select some tests only).
if [ $# -eq 0 ]; then
  log "running ./demo.sh --smoke"
  ./demo.sh --smoke
fi
