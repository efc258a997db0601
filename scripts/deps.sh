#!/bin/sh
# Makes sure the dependencies are present. Run as root it installs what is missing with
# apt-get (Debian 12); otherwise it prints the command to run and fails.
#   scripts/deps.sh          everything make test needs
#   scripts/deps.sh build    only what building the library and the examples needs
#   scripts/deps.sh bench    what make bench needs: the build, node and npm, gnuplot
set -eu
mode=${1:-all}

pkgs="build-essential pkg-config libjansson-dev libsodium-dev check libsubunit-dev libcivetweb-dev
      clang libclang-rt-14-dev nodejs npm nginx-light chromium"

missing=""
mods="jansson libsodium"
[ "$mode" = all ] && mods="$mods check"
for mod in $mods; do
    pkg-config --exists "$mod" 2>/dev/null || missing="$missing $mod"
done
for cmd in cc make pkg-config; do
    command -v "$cmd" >/dev/null 2>&1 || missing="$missing $cmd"
done
[ -f /usr/include/civetweb.h ] || missing="$missing civetweb"  # no .pc file in Debian
if [ "$mode" = all ]; then
    # The JS tests: node and npm, nginx as a proxy, Debian's chromium as the browser.
    for cmd in node npm; do
        command -v "$cmd" >/dev/null 2>&1 || missing="$missing $cmd"
    done
    [ -x /usr/sbin/nginx ] || missing="$missing nginx"
    # libFuzzer: clang and its runtime
    command -v clang >/dev/null 2>&1 || missing="$missing clang"
    ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1 ||
        missing="$missing libfuzzer"
    [ -x /usr/bin/chromium ] || missing="$missing chromium"
elif [ "$mode" = bench ]; then
    pkgs="build-essential pkg-config libjansson-dev libsodium-dev libcivetweb-dev nodejs npm
          gnuplot-nox"
    for cmd in node npm gnuplot taskset; do
        command -v "$cmd" >/dev/null 2>&1 || missing="$missing $cmd"
    done
else
    pkgs="build-essential pkg-config libjansson-dev libsodium-dev libcivetweb-dev"
fi
[ -z "$missing" ] && exit 0

echo "deps: missing:$missing" >&2
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # shellcheck disable=SC2086
    apt-get install -y -q --no-install-recommends $pkgs
    # Debian's nginx package starts a server on port 80 when installed; the tests start
    # their own, on a free loopback port.
    if command -v systemctl >/dev/null 2>&1; then systemctl stop nginx 2>/dev/null || true; fi
    if [ -f /run/nginx.pid ]; then kill "$(cat /run/nginx.pid)" 2>/dev/null || true; fi
    exit 0
fi
echo "deps: install them with:  sudo apt-get install -y $pkgs" >&2
exit 1
