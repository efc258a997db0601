#!/bin/sh
# Makes sure the build and test dependencies are present. Run as root it installs what is
# missing with apt-get (Debian 12); otherwise it prints the command to run and fails.
set -eu

pkgs="build-essential pkg-config libjansson-dev libsodium-dev check libsubunit-dev libcivetweb-dev"

missing=""
for mod in jansson libsodium check; do
    pkg-config --exists "$mod" 2>/dev/null || missing="$missing $mod"
done
for cmd in cc make pkg-config; do
    command -v "$cmd" >/dev/null 2>&1 || missing="$missing $cmd"
done
[ -f /usr/include/civetweb.h ] || missing="$missing civetweb"  # no .pc file in Debian
[ -z "$missing" ] && exit 0

echo "deps: missing:$missing" >&2
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # shellcheck disable=SC2086
    apt-get install -y -q --no-install-recommends $pkgs
    exit 0
fi
echo "deps: install them with:  sudo apt-get install -y $pkgs" >&2
exit 1
