#!/usr/bin/env bash
# make demo: what zswapu does, on real data.  Until the userfaultfd engine
# lands this replays real compressed-page sizes into the three pools and
# prints how densely each packs them (bench/pool_bench --quick).
set -euo pipefail
B=${1:-build/release}
echo "== zswapu demo: real compressed-page sizes (../shared/data/sizes) into each pool =="
"$B/bench/pool_bench" --quick
