#!/bin/sh
# run.sh MODE THREADS N PIPE [SPLIT]  (MODE: takeover | threaded)
set -e
cd "$(dirname "$0")"
gcc -O2 -Wall -Wextra -o /tmp/takeover_server takeover_server.c -lcivetweb -lpthread
gcc -O2 -Wall -Wextra -o /tmp/takeover_client takeover_client.c
# a free port on 127.0.0.1 (PORT overrides)
PORT=${PORT:-$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')}
/tmp/takeover_server $PORT "$2" "$1" 2>/tmp/takeover_server.log &
SP=$!
sleep 0.5
/tmp/takeover_client $PORT $SP "$3" "$4" $5 || echo "client exit $?"
kill -USR1 $SP; sleep 0.3; kill $SP; wait $SP 2>/dev/null || true
cat /tmp/takeover_server.log
