#!/bin/sh
# Fills a load-balancer template of this directory and prints the configuration.
#   examples/cluster/render.sh TEMPLATE LISTEN TMP NODE...
#   examples/cluster/render.sh examples/cluster/nginx.conf.in 127.0.0.1:8080 /tmp/lb \
#       127.0.0.1:8081 127.0.0.1:8082 > /tmp/lb/nginx.conf
# @LISTEN@ and @TMP@ become LISTEN and TMP, @PREFIX@ ferry's mount prefix (FERRY_PREFIX,
# /ferry by default), and a line that holds @NODE@ is written once per NODE, with @NODE@
# the node's address and @NAME@ its name (n1, n2, ...).
set -eu

if [ $# -lt 4 ]; then
    echo "usage: $0 TEMPLATE LISTEN TMP NODE..." >&2
    exit 2
fi
template=$1 listen=$2 tmp=$3
shift 3
for v in "$listen" "$tmp" "${FERRY_PREFIX:-/ferry}" "$@"; do
    case "$v" in
    *[!A-Za-z0-9_./:@-]*) echo "render: '$v' has a character a configuration would misread" >&2; exit 2 ;;
    esac
done

awk -v listen="$listen" -v tmp="$tmp" -v prefix="${FERRY_PREFIX:-/ferry}" -v nodes="$*" '
function fill(line, name, node) {
    gsub(/@LISTEN@/, listen, line)
    gsub(/@TMP@/, tmp, line)
    gsub(/@PREFIX@/, prefix, line)
    gsub(/@NAME@/, name, line)
    gsub(/@NODE@/, node, line)
    return line
}
BEGIN { n = split(nodes, node, " ") }
/@NODE@/ { for (i = 1; i <= n; i++) print fill($0, "n" i, node[i]); next }
{ print fill($0, "", "") }
' "$template"
