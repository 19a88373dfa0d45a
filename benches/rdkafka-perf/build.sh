#!/usr/bin/env bash
# Contender (g): librdkafka's own rdkafka_performance tool, compiled from the librdkafka source
# tree that rdkafka-sys bundles (the copy in its build output, the very sources of the static
# library our Rust contenders link) against that static library.
#
#   benches/rdkafka-perf/build.sh [OUT]     default OUT: target/bench/rdkafka-perf/rdkafka_performance
#
# Needs a release build of kafka-listener-bench first (cargo build --release -p kafka-listener-bench),
# so that target/release/build/rdkafka-sys-*/out/ exists.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUT=${1:-$ROOT/target/bench/rdkafka-perf/rdkafka_performance}
# The newest rdkafka-sys build of the release profile (the one kafka-listener-bench links).
SRC=$(ls -dt "$ROOT"/target/release/build/rdkafka-sys-*/out 2>/dev/null | while read -r d; do
  [[ -f $d/src/librdkafka.a && -f $d/examples/rdkafka_performance.c ]] && { echo "$d"; break; }
done)
[[ -n ${SRC:-} ]] || { echo "rdkafka-perf: no rdkafka-sys build output under target/release/build; run cargo build --release -p kafka-listener-bench" >&2; exit 1; }
# Link flags as librdkafka's own configure recorded them.
LIBS=$(sed -n 's/^LIBS+=//p' "$SRC/Makefile.config" | tr '\n' ' ')
mkdir -p "$(dirname "$OUT")"
if [[ -x $OUT && $OUT -nt $SRC/src/librdkafka.a ]]; then exit 0; fi
cc -O2 -Wno-deprecated-declarations -I"$SRC/src" -o "$OUT" "$SRC/examples/rdkafka_performance.c" \
  "$SRC/src/librdkafka.a" $LIBS
echo "rdkafka-perf: built $OUT from $SRC ($("$OUT" -h 2>&1 | sed -n 's/^librdkafka version \([^ ]*\).*/\1/p'))" >&2
