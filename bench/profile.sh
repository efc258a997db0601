#!/bin/sh
# Where ferry's server CPU goes under broadcast load: ferry_bench on CPU 0 with N WebSocket
# sessions, fyload on CPU 1 at RATE broadcasts/s, and `perf record` of CPU 0 for 4 s in the
# middle of the step. Prints the hottest call chains grouped by what they are for.
#   bench/profile.sh [N=10000] [RATE=15]          (needs perf and root, after make bench)
set -eu
n=${1:-10000}
rate=${2:-15}
dir=$(cd "$(dirname "$0")/.." && pwd)
b=$dir/build/bench
out=$(mktemp -d)
trap 'kill "$sp" 2>/dev/null || true; rm -rf "$out"' EXIT

taskset -c 0 "$b/ferry_bench" "$n" >"$out/port" &
sp=$!
i=0
until grep -q port "$out/port" 2>/dev/null; do
    i=$((i + 1)); [ $i -lt 300 ] || { echo "profile: server did not start" >&2; exit 1; }
    sleep 0.1
done
port=$(awk '/port/{print $2}' "$out/port")
taskset -c 1 "$b/fyload" --port "$port" --pid "$sp" --proto ferry-ws --conns "$n" \
    --procs $(( (n + 3999) / 4000 )) --rates "$rate" --step 14 >"$out/load.json" 2>"$out/load.err" &
lp=$!
# connect (a few seconds at 10,000) then into the step
i=0
until grep -q '"step":"connect"' "$out/load.json" 2>/dev/null; do
    i=$((i + 1)); [ $i -lt 600 ] || { echo "profile: clients did not connect" >&2; exit 1; }
    sleep 0.1
done
sleep 4
perf record -q -F 999 -C 0 -g -o "$out/perf.data" -- sleep 4 >/dev/null 2>&1
wait "$lp"
grep '"step":"rate"' "$out/load.json"
echo "--- CPU 0 (the server), by function including callees (top 25)"
perf report -i "$out/perf.data" --children --sort sym --stdio -g none 2>/dev/null |
    grep -E '^ +[0-9]' | head -25
echo "--- self time (top 15)"
perf report -i "$out/perf.data" --no-children --sort sym --stdio -g none 2>/dev/null |
    grep -E '^ +[0-9]' | head -15
