#!/bin/sh
# Makes sure the dependencies are present, installing only what is missing. Run as root it
# installs with apt-get (Debian 12); otherwise it prints the command to run and fails.
#   scripts/deps.sh [all]        everything make test needs
#   scripts/deps.sh build        building the library and the examples (make demo)
#   scripts/deps.sh cluster      make demo-cluster: the build, hiredis, redis-server, nginx
#   scripts/deps.sh bench        make bench: the build, node and npm, gnuplot
#   scripts/deps.sh plan MODE    prints the packages MODE could ever install here, as if
#                                nothing were present (scripts/deps-simulate.sh uses it)
# node and npm often come from outside Debian (NodeSource, nvm); Debian's npm conflicts with
# NodeSource's nodejs, so a working node is never replaced, and Debian's nodejs and npm are
# installed only where there is no node at all.
set -eu

plan=false
if [ "${1:-}" = plan ]; then
    plan=true
    shift
fi
mode=${1:-all}
case "$mode" in all|build|bench|cluster) ;; *) echo "deps: unknown mode '$mode' (all, build, bench, cluster)" >&2; exit 2 ;; esac

pkgs=""   # Debian packages to install
why=""    # what was found missing, for the message

# need PACKAGES WHAT TEST...: PACKAGES are needed unless the command TEST... succeeds.
need() {
    p=$1 w=$2
    shift 2
    if $plan || ! "$@" >/dev/null 2>&1; then
        pkgs="$pkgs $p"
        why="$why $w"
    fi
}
has() { command -v "$1"; }
pc() { pkg-config --exists "$1"; }
first() { ls "$@"; }

need build-essential cc has cc
need make make has make
need pkg-config pkg-config has pkg-config
need libjansson-dev jansson pc jansson
need libsodium-dev libsodium pc libsodium
need libcivetweb-dev civetweb test -f /usr/include/civetweb.h  # Debian ships no civetweb.pc

if [ "$mode" = all ]; then
    need "check libsubunit-dev" check pc check
    need nginx-light nginx test -x /usr/sbin/nginx
    need haproxy haproxy test -x /usr/sbin/haproxy      # tests/lb starts its own
    need libhiredis-dev hiredis pc hiredis            # the cluster layer (cluster/)
    need redis-server redis-server has redis-server   # its tests start their own
    need chromium chromium test -x /usr/bin/chromium
    need prometheus prometheus has promtool           # make test-ops: promtool and prometheus
    need clang clang has clang
    need libclang-rt-14-dev libfuzzer \
        first /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a
fi
if [ "$mode" = cluster ]; then
    need libhiredis-dev hiredis pc hiredis
    need redis-server redis-server has redis-server
    need nginx-light nginx test -x /usr/sbin/nginx
fi
if [ "$mode" = bench ]; then
    need gnuplot-nox gnuplot has gnuplot
    need util-linux taskset has taskset
fi
if [ "$mode" != build ] && [ "$mode" != cluster ]; then
    if ! has node >/dev/null 2>&1; then
        need "nodejs npm" node false
    elif ! has npm >/dev/null 2>&1; then
        # Debian's npm would conflict with a node from elsewhere: do not guess.
        echo "deps: node is installed ($(command -v node)) but npm is not; install npm from" \
             "the same source as node" >&2
        exit 1
    fi
fi

if $plan; then
    echo $pkgs
    exit 0
fi
[ -z "$pkgs" ] && exit 0

echo "deps: missing:$why" >&2
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    # Debian's nginx, haproxy, redis-server and prometheus packages start their service when
    # installed; the tests start their own on free loopback ports and use only the
    # binaries. A policy-rc.d that denies every start keeps them stopped; one already there
    # (as in containers) is left alone.
    policy=/usr/sbin/policy-rc.d
    own_policy=false
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\n# scripts/deps.sh: no service starts while it installs\nexit 101\n' > "$policy"
        chmod 755 "$policy"
        own_policy=true
        trap 'rm -f "$policy"' EXIT
    fi
    apt-get update -q
    # shellcheck disable=SC2086
    apt-get install -y -q --no-install-recommends $pkgs
    if $own_policy; then
        rm -f "$policy"
        trap - EXIT
    fi
    case "$pkgs" in
    *redis-server*)
        # Debian's redis-server package starts a server on port 6379 when installed; the
        # tests start their own, on a free loopback port.
        if command -v systemctl >/dev/null 2>&1; then systemctl stop redis-server 2>/dev/null || true; fi ;;
    esac
    case "$pkgs" in
    *nginx*)
        # Debian's nginx package starts a server on port 80 when installed; the tests start
        # their own, on a free loopback port.
        if command -v systemctl >/dev/null 2>&1; then systemctl stop nginx 2>/dev/null || true; fi
        if [ -f /run/nginx.pid ]; then kill "$(cat /run/nginx.pid)" 2>/dev/null || true; fi ;;
    esac
    case "$pkgs" in
    *prometheus*)
        # Debian's prometheus package starts a server on port 9090 when installed; the tests
        # start their own, on a free loopback port.
        if command -v systemctl >/dev/null 2>&1; then systemctl stop prometheus 2>/dev/null || true; fi ;;
    esac
    case "$pkgs" in
    *haproxy*)
        # The same for Debian's haproxy (its default configuration listens nowhere).
        if command -v systemctl >/dev/null 2>&1; then systemctl stop haproxy 2>/dev/null || true; fi
        if [ -f /run/haproxy.pid ]; then kill "$(cat /run/haproxy.pid)" 2>/dev/null || true; fi ;;
    esac
    exit 0
fi
echo "deps: install them with:  sudo apt-get install -y --no-install-recommends$pkgs" >&2
exit 1
