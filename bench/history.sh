#!/usr/bin/env bash
# The dashboard history's cost per exchange (BenchmarkDotNet; run by hand, not a test): TrafficHistory.Record, always
# on and lock-free, against a model of the MeterListener-with-a-lock it replaced, on one and on two threads.
# Usage: bench/history.sh [BenchmarkDotNet arguments, default: --job short]
set -euo pipefail
cd "$(dirname "$0")/.."
args=("$@"); ((${#args[@]})) || args=(--job short)
dotnet run -c Release --project bench/HistoryBench -- --filter '*' "${args[@]}"
