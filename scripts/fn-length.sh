#!/bin/sh
# Fails if a function in the library's C sources is longer than MAX lines (80), counted from
# its signature's first line to its closing brace (the style keeps both at column 0).
MAX=${MAX:-80}
awk -v max="$MAX" '
  /^[A-Za-z].*\(/ && !/;[ \t]*$/ { name = $0; start = FNR; infn = 1 }
  infn && /^\}/ {
    len = FNR - start + 1
    if (len > max) { printf "%s:%d: %s is %d lines (at most %d)\n", FILENAME, start, name, len, max; bad = 1 }
    infn = 0
  }
  END { exit bad }
' core/src/*.c transports/src/*.c cluster/src/*.c || exit 1
echo "fn-length: no library function over $MAX lines"
