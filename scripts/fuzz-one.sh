#!/bin/sh
# Runs one libFuzzer target for SECONDS from its seed corpus (tests/fuzz/corpus/<name>);
# new inputs go to DIR/corpus-<name>, its log to DIR/<name>.log. Exits non-zero on a finding.
#   scripts/fuzz-one.sh TARGET SECONDS DIR
set -u
t=$1 secs=$2 dir=$3
n=${t##*/fuzz_}
mkdir -p "$dir/corpus-$n"
"$t" -max_total_time="$secs" -max_len=4096 -print_final_stats=1 \
    -artifact_prefix="$dir/$n-" "$dir/corpus-$n" "tests/fuzz/corpus/$n" >"$dir/$n.log" 2>&1
rc=$?
echo "fuzz: $n for $secs s: $(grep -E '^stat::number_of_executed_units' "$dir/$n.log")"
if [ $rc -ne 0 ]; then
    tail -n 60 "$dir/$n.log"
    echo "fuzz: $n FAILED"
    exit 1
fi
