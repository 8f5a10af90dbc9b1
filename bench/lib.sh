# bench/lib.sh — shared by the shell benchmarks (sourced, not run).
# Expects $B (build dir, absolute) and $json (1: JSON lines on stdout, the
# rest on stderr).  Programs run in the current directory, output to files
# there (compared with the native run's, so a benchmark that breaks a
# program says so instead of timing it).

# bench_args "$@" : the options every benchmark takes (bench/bench.h's
# --json, --quick, --runs N; --data is accepted and unused); sets json,
# quick, runs.  -h prints the calling script's head comment.
bench_args() {
    json=0 quick=0 runs=
    while [ $# -gt 0 ]; do
        case $1 in
        --json) json=1 ;;
        --quick) quick=1 ;;
        --runs) runs=$2; shift ;;
        --data) shift ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "${0##*/}: unknown option $1" >&2; exit 2 ;;
        esac
        shift
    done
    [ -n "$runs" ] || { [ $quick = 1 ] && runs=1 || runs=3; }
}

# bench_start NAME BUILD_DIR [options] : what every shell benchmark does
# first: B (absolute), the options (bench_args), the helpers it runs
# checked, and a scratch directory T (/tmp/zswapu-NAME.*) gone at exit.
bench_start() {
    bn=$1
    [ $# -ge 2 ] || { echo "usage: ${0##*/} BUILD_DIR [--json] [--quick] [--runs N]" >&2; exit 2; }
    B=$(cd "$2" && pwd) || exit 1
    shift 2
    bench_args "$@"
    bench_need "$B/zswapu" "$B/tests/rsswatch" || exit 1
    T=$(mktemp -d "/tmp/zswapu-$bn.XXXXXX") || exit 1
    trap 'rm -rf "$T"' EXIT INT TERM
}

# bench_mid : stdin lines sorted by their first number; prints the middle
# one (the median, with whatever else its line holds).
bench_mid() {
    sort -n | awk '{ a[NR] = $0 } END { print a[int((NR + 1) / 2)] }'
}

PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

bench_need() {
    for f in "$@"; do
        [ -e "$f" ] || { echo "${0##*/}: $f missing: build first (make all)" >&2; return 1; }
    done
}

bench_note() {
    if [ "$json" = 1 ]; then echo "$*" >&2; else echo "$*"; fi
}

bench_table_head() {
    [ "$json" = 1 ] || echo "$*"
}

bench_now() { date +%s.%N; }

bench_secs() { awk -v a="$1" -v b="$(bench_now)" 'BEGIN { printf "%.2f", b - a }'; }

# bench_time_native CMD... : prints seconds; leaves the peak resident
# anonymous bytes in native.peak and the output in native.out for later runs.
# The peak is that of the largest process of the tree: a limit is per
# process, and from a pipeline's shell (a few hundred KiB) it put each xz
# of the overhead bench's pipeline far over its limit.
bench_time_native() {
    s=$(bench_now)
    "$B/tests/rsswatch" -o native.rss -- "$@" > native.out 2> native.err || {
        echo "${0##*/}: native run of '$*' failed: $(tail -3 native.err)" >&2
        return 1
    }
    bench_secs "$s"
    awk '$1 == "tree_peak_rss_anon_bytes" { print $2 }' native.rss > native.peak
}

# bench_time_zswapu LIMIT CMD... : the same under `zswapu run` (no limit
# when LIMIT is empty); fails when the output differs from native.out
# (unless BENCH_NOCMP=1: a program that checks itself and prints timings).
bench_time_zswapu() {
    lim=$1
    shift
    s=$(bench_now)
    if [ -n "$lim" ]; then
        "$B/zswapu" run --limit "$lim" --stats -- "$@" > zswapu.out 2> zswapu.err
    else
        "$B/zswapu" run --stats -- "$@" > zswapu.out 2> zswapu.err
    fi || { echo "${0##*/}: '$*' failed under zswapu: $(tail -3 zswapu.err)" >&2; return 1; }
    bench_secs "$s"
    [ "${BENCH_NOCMP:-0}" = 1 ] || cmp -s native.out zswapu.out || {
        echo "${0##*/}: '$*' printed something else under zswapu than natively" >&2
        return 1
    }
}

# bench_median N FUNCTION ARGS... : runs FUNCTION N times, prints the median
# of what it prints.
bench_median() {
    n=$1
    shift
    vals=
    i=0
    while [ $i -lt "$n" ]; do
        v=$("$@") || return 1
        vals="$vals $v"
        i=$((i + 1))
    done
    echo $vals | tr ' ' '\n' | bench_mid
}
