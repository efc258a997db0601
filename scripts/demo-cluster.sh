#!/bin/sh
# The live-scores demo as a cluster (make demo-cluster): redis-server, the publisher (the one
# process that simulates the matches), three web nodes and nginx in front, all on 127.0.0.1.
# It prints the URL and every process id; `kill -9` a node's pid and the page moves to
# another node; `kill` (SIGTERM) a node's pid and it drains (its pages move to the other
# nodes a few at a time, over DRAIN_SPREAD_MS) and exits, as in a rolling deploy. Ctrl-C (or
# SIGTERM to this script) stops them all, each node draining first.
#
# The environment changes it (tests/demo/cluster.test.mjs runs it on free ports):
#   PORT=8080                 nginx's port, where the page is
#   DEMO_DIR=build/demo-cluster  Redis's socket and data, nginx's files, the logs
#   NODES=3                   how many web nodes
#   SPEED, DEMO_CONTROLS      passed on to the publisher and the nodes (server.c)
#   DRAIN_SPREAD_MS=2000, DRAIN_NOTICE_MS=0  a node's drain on SIGTERM (server.c)
# It writes DEMO_DIR/prometheus-targets.json, the nodes' metrics addresses for Prometheus
# (examples/ops/prometheus-cluster.yml).
# Redis listens on a unix socket in DEMO_DIR only, and the nodes on free ports, so only
# PORT can collide with something else.
set -eu
cd "$(dirname "$0")/.."
port=${PORT:-8080}
nodes=${NODES:-3}
bin=$(pwd)/build/examples/live-scores-cluster
www=$(pwd)/examples/live-scores/www
dir=${DEMO_DIR:-build/demo-cluster}
mkdir -p "$dir/nginx-tmp"
dir=$(cd "$dir" && pwd)
sock=$dir/redis.sock

if [ ! -x "$bin" ]; then
    echo "demo-cluster: $bin is missing (make demo-cluster builds it)" >&2
    exit 1
fi

# Every process started, in the order to stop them: nginx, nodes, publisher, Redis.
redis_pid="" pub_pid="" node_pids="" nginx_pid=""

# stop PID...: SIGTERM to each, then waits for all; one still there after 10 s is killed.
stop() {
    for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "$@"; do
        waited=0
        while kill -0 "$p" 2>/dev/null; do
            waited=$((waited + 1))
            if [ $waited -gt 100 ]; then
                echo "demo-cluster: pid $p ignored SIGTERM for 10 s; killing it" >&2
                kill -KILL "$p" 2>/dev/null || true
            fi
            sleep 0.1
        done
    done
}

stopped=false
stop_all() {
    $stopped && return 0
    stopped=true
    # shellcheck disable=SC2086
    stop $nginx_pid
    # shellcheck disable=SC2086
    stop $node_pids
    # shellcheck disable=SC2086
    stop $pub_pid
    # shellcheck disable=SC2086
    stop $redis_pid
}
trap stop_all EXIT
trap 'echo; echo "demo-cluster: stopping"; exit 0' INT TERM

fail() {
    echo "demo-cluster: $*" >&2
    exit 1
}

# wait_for WHAT PID TEST...: up to 10 s for TEST to succeed while PID lives.
wait_for() {
    what=$1 pid=$2
    shift 2
    tries=0
    until "$@" 2>/dev/null; do
        kill -0 "$pid" 2>/dev/null || fail "$what exited at start (its log is above or in $dir)"
        tries=$((tries + 1))
        [ $tries -le 100 ] || fail "$what did not start within 10 s"
        sleep 0.1
    done
}

rm -f "$sock"
# Redis in a session of its own: Ctrl-C reaches the whole process group at once, and Redis
# must outlive the nodes (stop_all stops it last), or they would log that it went away.
setsid redis-server --port 0 --unixsocket "$sock" --unixsocketperm 700 --save '' --appendonly no \
    --dir "$dir" --logfile "$dir/redis.log" &
redis_pid=$!
wait_for redis-server "$redis_pid" test -S "$sock"

# start NAME ENV...: one live-scores process; its first line of output says where it is.
start() {
    name=$1
    shift
    env REDIS="$sock" "$@" "$bin" "$www" > "$dir/$name.out" &
    started=$!
    wait_for "$name" "$started" grep -q '^live-scores:' "$dir/$name.out"
}

start publisher NODE=pub ROLE=publisher PORT=0
pub_pid=$started
: > "$dir/nodes.conf"
listing=""
targets=""
i=1
while [ $i -le "$nodes" ]; do
    start "n$i" NODE="n$i" PORT=0
    node_pids="$node_pids $started"
    node_port=$(sed -n 's|.*http://127\.0\.0\.1:\([0-9]*\)/.*|\1|p' "$dir/n$i.out")
    echo "server 127.0.0.1:$node_port max_fails=0;" >> "$dir/nodes.conf"
    targets="$targets${targets:+,}
  {\"targets\": [\"127.0.0.1:$node_port\"], \"labels\": {\"node\": \"n$i\"}}"
    listing="$listing  node n$i     pid $started  http://127.0.0.1:$node_port/
"
    i=$((i + 1))
done

# Where Prometheus finds the nodes (examples/ops/prometheus-cluster.yml reads it): written
# whole, then renamed, so that it never reads half of it.
printf '[%s\n]\n' "$targets" > "$dir/prometheus-targets.json.tmp"
mv "$dir/prometheus-targets.json.tmp" "$dir/prometheus-targets.json"

sed -e "s|@DIR@|$dir|g" -e "s|@PORT@|$port|g" examples/live-scores/nginx.conf.in > "$dir/nginx.conf"
rm -f "$dir/nginx.pid"
nginx -e "$dir/nginx-error.log" -t -q -c "$dir/nginx.conf" || fail "nginx refused $dir/nginx.conf"
nginx -e "$dir/nginx-error.log" -c "$dir/nginx.conf" &
nginx_pid=$!
wait_for nginx "$nginx_pid" test -s "$dir/nginx.pid"

echo "demo-cluster: open http://127.0.0.1:$port/"
echo "  redis      pid $redis_pid  unix socket $sock"
echo "  publisher  pid $pub_pid  $(sed 's/^live-scores: //' "$dir/publisher.out")"
printf '%s' "$listing"
echo "  nginx      pid $nginx_pid  round robin over the nodes ($dir/nginx.conf)"
echo "Kill the node serving the page (the page says which): kill -9 <its pid>. The page moves"
echo "to another node and misses nothing. kill <its pid> drains it first, as a deploy does."
echo "Ctrl-C stops everything."
echo "demo-cluster: ready"
# Until a signal; a node killed meanwhile leaves the others running.
while :; do
    wait || true
    kill -0 "$nginx_pid" 2>/dev/null || fail "nginx stopped"
done
