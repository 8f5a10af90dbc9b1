#!/bin/sh
# bench/overhead.sh BUILD_DIR [--json] [--quick] [--runs N]
#
# What zswapu costs a program that is not under memory pressure.  Each
# workload (bench/workloads: python3 building a dict, sqlite3 in memory,
# sort, xz round trip, gcc) runs
#   native    without zswapu;
#   loaded    under `zswapu run` with no limit: the shim and its options
#             are loaded, nothing is managed (what ZSWAPU_LIMIT unset costs);
#   managed   under `zswapu run --limit` 1.5x the native peak resident
#             anonymous memory: the engine arms at 3/4 of the limit, so a
#             program that peaks at 2/3 of it should pay no more than
#             loaded (armed at half the limit, it registered its memory
#             and every first touch became a uffd zero fill: 1.10-2.2x).
# Wall time, median of --runs (default 3; --quick: 1 run, smaller inputs).
# overhead_vs_native = median mode time / median native time; target <= 1.03.
# --json: one object per workload and mode with fields bench, workload,
# mode, native_s, zswapu_s, overhead_vs_native, target, met.
# OVH_WORKLOADS="sort ..." runs only the workloads named.
set -u
W=$(cd "$(dirname "$0")/workloads" && pwd)
. "$(dirname "$0")/lib.sh"
bench_start overhead "$@"
if [ $quick = 1 ]; then n_py=300000 n_lines=600000 n_funcs=600; else n_py=1200000 n_lines=2500000 n_funcs=2500; fi
"$PY" "$W/lines.py" "$T/lines.txt" $n_lines
head -c $((n_lines * 24)) "$T/lines.txt" > "$T/xzin.txt"
"$PY" "$W/bigc.py" "$T/big.c" $n_funcs

bench_table_head "workload  mode       native_s  zswapu_s  overhead  target"
measure() { # measure NAME CMD...
    name=$1
    shift
    case " ${OVH_WORKLOADS:-$name} " in *" $name "*) ;; *) return ;; esac
    native=$(bench_median $runs bench_time_native "$@") || return
    peak=$(cat native.peak)
    for mode in loaded managed; do
        if [ $mode = loaded ]; then
            t=$(bench_median $runs bench_time_zswapu "" "$@") || return
        else
            t=$(bench_median $runs bench_time_zswapu $((peak * 3 / 2)) "$@") || return
        fi
        r=$(awk -v a="$t" -v b="$native" 'BEGIN { printf "%.3f", a / b }')
        met=$(awk -v r="$r" 'BEGIN { print (r <= 1.03) ? "met" : "missed" }')
        if [ $json = 1 ]; then
            printf '{"bench":"overhead","workload":"%s","mode":"%s","native_s":%s,"zswapu_s":%s,"overhead_vs_native":%s,"target":1.03,"met":%s}\n' \
                "$name" $mode "$native" "$t" "$r" "$([ $met = met ] && echo true || echo false)"
        else
            printf '%-9s %-9s %9s %9s %8sx  <=1.03x %s\n' "$name" $mode "$native" "$t" "$r" "$met"
        fi
    done
}
cd "$T" || exit 1
measure python "$PY" "$W/pydict.py" $n_py
measure sqlite3 sh -c "exec sqlite3 :memory: < '$W/db.sql'"
measure sort sort -S 600M --parallel=1 -o sorted.txt "$T/lines.txt"
measure xz sh -c "xz -6 -T1 -c '$T/xzin.txt' | xz -d -T1 | cmp - '$T/xzin.txt'"
measure gcc gcc -O2 -c "$T/big.c" -o big.o
bench_note "median of $runs run(s) per mode; wall time, so a busy machine shows here: compare modes of one run"
