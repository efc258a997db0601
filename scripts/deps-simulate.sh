#!/bin/sh
# Asks apt to simulate what scripts/deps.sh would install on a fresh machine of this kind
# (everything it could ever install here, as if nothing were present) and fails on a
# conflict, an unsatisfiable dependency, or a package it would remove. A machine that
# already has everything never runs the install, so this is the only check that sees such
# a problem before a new user does.
set -eu
cd "$(dirname "$0")/.."

if ! command -v apt-get >/dev/null 2>&1; then
    echo "deps-simulate: no apt-get here; skipped" >&2
    exit 0
fi
pkgs=$(for m in all bench; do scripts/deps.sh plan "$m"; done | tr ' ' '\n' | sort -u | tr '\n' ' ')
out=build/deps-simulate.log
mkdir -p build

simulate() {
    # shellcheck disable=SC2086
    apt-get install -s -q --no-install-recommends $pkgs > "$out" 2>&1
}
rc=0
simulate || rc=$?
if grep -qE "Unable to locate package|has no installation candidate" "$out" && [ "$(id -u)" = 0 ]; then
    apt-get update -q >/dev/null   # package lists never fetched on this machine
    rc=0
    simulate || rc=$?
fi
removed=$(grep -E '^Remv ' "$out" || true)
if [ "$rc" -ne 0 ] || [ -n "$removed" ]; then
    echo "deps-simulate: installing what a fresh machine lacks would fail:" >&2
    echo "  apt-get install -s --no-install-recommends $pkgs" >&2
    grep -vE '^(Inst|Conf) ' "$out" | sed 's/^/  /' >&2
    exit 1
fi
echo "deps-simulate: a fresh machine can install $(echo $pkgs | wc -w) packages without conflict" \
     "($(grep -c '^Inst ' "$out" || true) would be new here)"
