#!/bin/sh
# bench/profile.sh BUILD_DIR [--json] [--quick] [--runs N]
#
# What profiling costs (issue 8: at most 1.10x the same run without it).
# Each workload runs under `zswapu run` twice over, alternating:
#   plain     the managed run as it is;
#   profiled  the same with ZSWAPU_PROFILE at the default rate (one
#             allocation sample per ~512 KiB, one fault in 64 signalled
#             and unwound), the folded stacks and SVGs written at exit
#             (their writing is part of the time).
# Workloads (bench/workloads):
#   python    pydict.py under half its native peak: the engine compresses
#             and faults back all the time, so both samplers fire;
#   sqlite3   db.sql in memory under 1.5x its native peak: the allocation
#             path (many small mallocs), no pressure;
#   gcc       -O2 of a generated C file, no limit: malloc-heavy, short.
# Wall time, median of --runs (default 3; --quick: 1 run, smaller inputs).
# profile_overhead = median profiled / median plain; target <= 1.10.
# --json: one object per workload with fields bench, workload, plain_s,
# profiled_s, profile_overhead, target, met.
set -u
W=$(cd "$(dirname "$0")/workloads" && pwd)
. "$(dirname "$0")/lib.sh"
bench_start profile "$@"
if [ $quick = 1 ]; then n_py=300000 n_funcs=600; else n_py=1200000 n_funcs=2500; fi
"$PY" "$W/bigc.py" "$T/big.c" $n_funcs
cd "$T" || exit 1

profiled() { # profiled LIMIT CMD... : bench_time_zswapu with the profiler on
    t=$(ZSWAPU_PROFILE=$T/fg bench_time_zswapu "$@") || return
    ls "$T"/fg.*.svg > /dev/null 2>&1 || {
        echo "profile.sh: no flame graph written for '$*'" >&2
        return 1
    }
    rm -f "$T"/fg.*
    echo "$t"
}

bench_table_head "workload  limit_MiB  plain_s profiled_s  overhead  target"
measure() { # measure NAME LIMIT_FACTOR_PCT CMD... (0: no limit)
    name=$1 pct=$2
    shift 2
    bench_time_native "$@" > /dev/null || return
    lim=
    [ "$pct" = 0 ] || lim=$(($(cat native.peak) / 100 * pct))
    i=0
    : > plain.txt
    : > prof.txt
    # alternate, so a machine that slows down mid-way hits both alike
    while [ $i -lt "$runs" ]; do
        t=$(bench_time_zswapu "$lim" "$@") || return
        echo "$t" >> plain.txt
        t=$(profiled "$lim" "$@") || return
        echo "$t" >> prof.txt
        i=$((i + 1))
    done
    a=$(bench_mid < plain.txt)
    b=$(bench_mid < prof.txt)
    r=$(awk -v a="$b" -v b="$a" 'BEGIN { printf "%.3f", a / b }')
    met=$(awk -v r="$r" 'BEGIN { print (r <= 1.10) ? "met" : "missed" }')
    if [ $json = 1 ]; then
        printf '{"bench":"profile","workload":"%s","limit_bytes":%s,"plain_s":%s,"profiled_s":%s,"profile_overhead":%s,"target":1.10,"met":%s}\n' \
            "$name" "${lim:-0}" "$a" "$b" "$r" "$([ $met = met ] && echo true || echo false)"
    else
        printf '%-9s %9s %8s %10s %8sx  <=1.10x %s\n' "$name" "$([ -n "$lim" ] && echo $((lim / 1048576)) || echo -)" \
            "$a" "$b" "$r" "$met"
    fi
}
measure python 50 "$PY" "$W/pydict.py" $n_py
measure sqlite3 150 sh -c "exec sqlite3 :memory: < '$W/db.sql'"
measure gcc 0 gcc -O2 -c "$T/big.c" -o big.o
bench_note "median of $runs run(s) per mode, alternating; wall time: compare the two columns of one run"
