#!/bin/sh
# Where the CPU goes when three ferry nodes share one redis-server, against one node: N
# WebSocket sessions (N/3 per node), RATE broadcasts/s published on the first node, servers
# and redis-server on CPU 0, fyload on CPU 1, and `perf record` of CPU 0 for 4 s in the
# middle of the step, for one node and then for three. Prints the step's JSON, the share of
# CPU 0 per process kind and shared object, and the hottest symbols.
#   bench/profile_cluster.sh [N=9000] [RATE=11.111]      (needs perf and root, after make bench)
set -eu
n=${1:-9000}
rate=${2:-11.111}
dir=$(cd "$(dirname "$0")/.." && pwd)
b=$dir/build/bench
out=$(mktemp -d)
pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$out"
}
trap cleanup EXIT INT TERM

free_port() {
    node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

wait_port() { # file
    i=0
    until grep -q port "$1" 2>/dev/null; do
        i=$((i + 1)); [ $i -lt 600 ] || { echo "profile: server did not start" >&2; exit 1; }
        sleep 0.1
    done
    awk '/port/{print $2}' "$1"
}

profile() { # label, fyload args...
    label=$1
    shift
    taskset -c 1 "$b/fyload" "$@" --conns "$n" --procs $(( (n + 3999) / 4000 )) --rates "$rate" \
        --step 14 --label "$label" >"$out/$label.json" 2>"$out/$label.err" &
    lp=$!
    i=0
    until grep -q '"step":"connect"' "$out/$label.json" 2>/dev/null; do
        i=$((i + 1)); [ $i -lt 1200 ] || { echo "profile: clients did not connect" >&2; exit 1; }
        sleep 0.1
    done
    sleep 4
    perf record -q -F 999 -C 0 -g -o "$out/$label.data" -- sleep 4 >/dev/null 2>&1
    wait "$lp" || true
    echo "=== $label"
    grep '"step":"rate"' "$out/$label.json"
    echo "--- CPU 0 by process kind and shared object (top 12)"
    perf report -i "$out/$label.data" --no-children --sort comm,dso --stdio -g none 2>/dev/null |
        grep -E '^ +[0-9]' | head -12
    echo "--- self time by symbol (top 20)"
    perf report -i "$out/$label.data" --no-children --sort comm,sym --stdio -g none 2>/dev/null |
        grep -E '^ +[0-9]' | head -20
}

# one node
PORT=0 taskset -c 0 "$b/ferry_bench" "$n" >"$out/single.port" 2>"$out/single.srv" &
sp=$!
pids="$pids $sp"
port=$(wait_port "$out/single.port")
profile single --port "$port" --pid "$sp" --proto ferry-ws
kill "$sp"
wait "$sp" 2>/dev/null || true

# three nodes on one redis-server
rport=$(free_port)
taskset -c 0 redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$out" --logfile "$out/redis.log" &
rp=$!
pids="$pids $rp"
i=0
until redis-cli -p "$rport" ping >/dev/null 2>&1; do
    i=$((i + 1)); [ $i -lt 100 ] || { echo "profile: redis-server did not start" >&2; exit 1; }
    sleep 0.1
done
per=$(( (n + 2) / 3 ))
ports=""
npids=""
for name in a b c; do
    REDIS=127.0.0.1:$rport NODE=$name PORT=0 taskset -c 0 "$b/ferry_bench" "$per" \
        >"$out/$name.port" 2>"$out/$name.srv" &
    np=$!
    pids="$pids $np"
    npids="$npids${npids:+,}$np"
done
for name in a b c; do
    ports="$ports${ports:+,}$(wait_port "$out/$name.port")"
done
profile cluster --port "${ports%%,*}" --ports "$ports" --pid "$npids,$rp" --proto ferry-ws
