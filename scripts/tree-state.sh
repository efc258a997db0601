#!/bin/sh
# make test must leave the work tree as it found it: tests write only under build/.
#   scripts/tree-state.sh save FILE    records the tree's state
#   scripts/tree-state.sh check FILE   fails, naming the files, if it changed since
set -eu
cd "$(dirname "$0")/.."
git rev-parse --is-inside-work-tree >/dev/null 2>&1 || exit 0  # not a checkout: nothing to compare

state() {
    git status --porcelain=v1 --untracked-files=all
    git diff HEAD --binary | cksum
}
case "$1" in
save)
    mkdir -p "$(dirname "$2")"
    state > "$2" ;;
check)
    now=$(state)
    if [ "$now" != "$(cat "$2")" ]; then
        echo "tree-state: the tests changed the work tree (they may write only under build/):" >&2
        printf '%s\n' "$now" | diff "$2" - | grep '^[<>] [ MADRCU?]' >&2 || true
        exit 1
    fi
    echo "tree-state: the work tree is as the tests found it" ;;
*)
    echo "usage: $0 save|check FILE" >&2
    exit 2 ;;
esac
