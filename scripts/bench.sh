#!/bin/sh
# bench.sh BUILD_DIR [--json] [--quick] [--runs N] [--data DIR]
#
# Runs every benchmark program in BUILD_DIR/bench (`make bench` calls it with
# build/release), the known ones in a fixed order, any others after them
# alphabetically, and passes the options through to each (bench/bench.h
# lists the options all of them accept).  Run it from the repository root:
# the benchmarks find the real data at ../shared/data from there.
#
# Table mode: each benchmark's table under a "== name ==" heading.  --json:
# stdout holds only the benchmarks' JSON lines (one object per line, each
# with a "bench" field); headings and notes go to stderr.
# Exit status: 0 when every benchmark ran (a missed target is not a failure:
# the benchmarks print misses themselves), 1 when one failed, 2 on bad use.
set -u

ORDER="pool_bench store_bench fault_bench hotcold writeback"
# Shell benchmarks in bench/ (real programs, see each file's head), run
# after the programs, with BUILD_DIR first.
SCRIPTS="overhead profile vs-kernel"

usage() {
    echo "usage: $0 BUILD_DIR [--json] [--quick] [--runs N] [--data DIR]" >&2
    exit 2
}

[ $# -ge 1 ] || usage
B=$1
shift
case $B in -*) usage ;; esac
if [ ! -d "$B/bench" ]; then
    echo "bench.sh: $B/bench does not exist: build first (make all)" >&2
    exit 1
fi

json=0
for a in "$@"; do
    [ "$a" = --json ] && json=1
done

# Headings go where they don't break a JSON consumer.
say() {
    if [ "$json" = 1 ]; then
        printf '%s\n' "$*" >&2
    else
        printf '%s\n' "$*"
    fi
}

is_bench() {
    [ -f "$B/bench/$1" ] && [ -x "$B/bench/$1" ]
}

list=""
for n in $ORDER; do
    is_bench "$n" && list="$list $n"
done
for f in "$B"/bench/*; do
    n=${f##*/}
    case " $ORDER " in *" $n "*) continue ;; esac
    is_bench "$n" && list="$list $n"
done
for n in $SCRIPTS; do
    [ -x "bench/$n.sh" ] && list="$list $n.sh"
done
if [ -z "$list" ]; then
    echo "bench.sh: no benchmark programs in $B/bench" >&2
    exit 1
fi

failed=""
for n in $list; do
    say "== $n =="
    start=$(date +%s)
    case $n in
    *.sh) set -- "$B" "$@"; cmd=bench/$n ;;
    *) cmd=$B/bench/$n ;;
    esac
    if "$cmd" "$@"; then
        say "-- $n: $(($(date +%s) - start)) s"
    else
        rc=$?
        say "-- $n: FAILED (exit $rc)"
        failed="$failed $n"
    fi
    case $n in *.sh) shift ;; esac
    say ""
done

if [ -n "$failed" ]; then
    echo "bench.sh: failed:$failed" >&2
    exit 1
fi
exit 0
