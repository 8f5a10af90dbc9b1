#!/bin/sh
# bench/vs-kernel.sh BUILD_DIR [--json] [--quick] [--runs N]
#
# zswapu against the kernel's own zswap under the same memory limit, on
#   hotcold   ../shared/bench/hotcold.c: 3 GiB of text-like pages, 90 % of
#             accesses to a hot 10 %, every byte verified; 1 GiB limit
#             (--quick: 1 GiB of data, a third of it as the limit);
#   hc_wb     hotcold again with each side's pool capped at 1 % of RAM
#             and writeback on (zswapu: a file in $TMPDIR; the kernel:
#             its swapfile): the writeback tiers side by side;
#   python    bench/workloads/pydict.py under half its native peak (a
#             third got the kernel peer OOM-killed in its cgroup).
# Each runs natively, under `zswapu run --limit L` twice, and under the
# kernel's zswap in a memory cgroup limited to L (../shared/bench/kzswap.sh
# sets up a swapfile + zswap and restores the machine afterwards; root only:
# without root the kernel rows are skipped with a note).
#   pool_counted  zswapu's limit covers the whole process, compressed pool
#                 included: the honest per-process figure;
#   pool_outside  ZSWAPU_LIMIT_POOL=0: the limit covers resident pages only,
#                 the pool lives outside it, which is what the kernel peer
#                 gets (on cgroup v1 its zswap pool is not charged to the
#                 cgroup).
# The kernel here has lzo-rle only (no lz4/zstd); zswapu runs its default
# lz4 + zsmalloc.  Ratios: runtime_vs_kernel = zswapu wall / kernel wall
# (target <= 1.0, aim <= 0.7); ratio_vs_kernel = zswapu compression ratio
# (stored bytes / pool bytes at its peak) / the kernel's (at its peak
# sample).  Medians of --runs (default 3; --quick 1).  Never run it beside
# another benchmark: zswap and swap are machine-wide.  VSK_WORKLOADS="hc_wb
# ..." runs only the workloads named.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
SHARED=$(cd "$HERE/../../shared" 2>/dev/null && pwd) || SHARED=
. "$HERE/lib.sh"
bench_start vsk "$@"
if [ -z "$SHARED" ] || [ ! -f "$SHARED/bench/hotcold.c" ]; then
    echo "vs-kernel.sh: ../shared/bench (hotcold.c, kzswap.sh) not found beside the repository" >&2
    exit 1
fi
KZ=$SHARED/bench/kzswap.sh
kernel=1
if [ "$(id -u)" != 0 ] || ! [ -d /sys/module/zswap ]; then
    kernel=0
    bench_note "note: not root or no zswap in this kernel: the kernel rows are skipped"
fi

cc -O2 -o "$T/hotcold" "$SHARED/bench/hotcold.c" -llz4 || exit 1
cd "$T" || exit 1

# kernel_run LIMIT CMD... : wall seconds and the ratio at the pool's peak
# ("S R"), the command's status checked.
kernel_run() {
    lim=$1
    shift
    "$KZ" run "$lim" -- "$@" > kz.json 2> kz.err || {
        echo "vs-kernel.sh: '$*' failed under kernel zswap: $(tail -3 kz.err)" >&2
        return 1
    }
    "$PY" -c 'import json, sys
j = json.loads(open("kz.json").read().strip().splitlines()[-1])
print(j["wall_s"], j.get("ratio_at_peak") or 0)'
}

zswapu_ratio() { # the first process's compression ratio from --stats
    awk '$1 == "compression_ratio" && $2 ~ /^[0-9.]+$/ { print $2; exit }' zswapu.err
}

bench_table_head "workload  mode          limit_MiB native_s zswapu_s kernel_s vs_native vs_kernel  ratio k_ratio  target(<=1.0, aim 0.7)"
compare() { # compare NAME LIMIT CMD...
    name=$1 lim=$2
    shift 2
    case " ${VSK_WORKLOADS:-$name} " in *" $name "*) ;; *) return ;; esac
    native=$(bench_median $runs bench_time_native "$@") || return
    k_s=0 k_r=0
    if [ $kernel = 1 ]; then
        i=0
        : > k.txt
        while [ $i -lt $runs ]; do kernel_run "$lim" "$@" >> k.txt || break; i=$((i + 1)); done
        if [ $i = $runs ]; then
            read -r k_s k_r <<EOF
$(bench_mid < k.txt)
EOF
        else
            bench_note "note: $name failed under the kernel's zswap at this limit (see above): no kernel figures"
        fi
    fi
    for mode in pool_counted pool_outside; do
        [ $mode = pool_outside ] && export ZSWAPU_LIMIT_POOL=0
        i=0
        : > z.txt
        while [ $i -lt $runs ]; do
            t=$(bench_time_zswapu "$lim" "$@") || { unset ZSWAPU_LIMIT_POOL; return; }
            echo "$t $(zswapu_ratio)" >> z.txt
            i=$((i + 1))
        done
        unset ZSWAPU_LIMIT_POOL
        read -r z_s z_r <<EOF
$(bench_mid < z.txt)
EOF
        : "${z_r:=0}"
        vn=$(awk -v a="$z_s" -v b="$native" 'BEGIN { printf "%.3f", a / b }')
        vk=$(awk -v a="$z_s" -v b="$k_s" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "null" }')
        rk=$(awk -v a="$z_r" -v b="$k_r" 'BEGIN { if (b > 0 && a > 0) printf "%.3f", a / b; else print "null" }')
        if [ $json = 1 ]; then
            printf '{"bench":"vs-kernel","workload":"%s","mode":"%s","limit_bytes":%s,"native_s":%s,"zswapu_s":%s,"kernel_s":%s,"runtime_vs_native":%s,"runtime_vs_kernel":%s,"zswapu_ratio":%s,"kernel_ratio":%s,"ratio_vs_kernel":%s,"kernel_compressor":"lzo-rle"}\n' \
                "$name" $mode "$lim" "$native" "$z_s" "$k_s" "$vn" "$vk" "$z_r" "$k_r" "$rk"
        else
            printf '%-9s %-13s %9d %8s %8s %8s %8sx %8sx %6s %7s  %s\n' "$name" $mode $((lim / 1048576)) \
                "$native" "$z_s" "$k_s" "$vn" "$vk" "$z_r" "$k_r" \
                "$(awk -v r="$vk" 'BEGIN { if (r == "null") print "-"; else if (r <= 0.7) print "aim met"; else if (r <= 1.0) print "met"; else print "missed" }')"
        fi
    done
}

# hotcold's output has timings in it: it checks its own data (exit 2 on a
# mismatch), so only the status is compared.
BENCH_NOCMP=1
if [ $quick = 1 ]; then
    compare hotcold $((1024 * 1048576 / 3)) ./hotcold -g 1
else
    compare hotcold $((1024 * 1048576)) ./hotcold -g 3
fi
# The writeback tier against the kernel's: the same run with the pool
# capped at 1 % of RAM (max_pool_percent takes whole percents: the
# smallest cap the kernel can be given), zswapu writing to a file in
# $TMPDIR, the kernel to its swapfile.  The kernel rejects pages to the
# swapfile once its pool is full and writes its oldest entries back.
cap=$(awk '$1 == "MemTotal:" { printf "%d\n", $2 * 1024 / 100; exit }' /proc/meminfo)
export KZ_POOL_PERCENT=1 ZSWAPU_MAX_POOL=$cap ZSWAPU_WRITEBACK=1
if [ $quick = 1 ]; then
    compare hc_wb $((1024 * 1048576 / 3)) ./hotcold -g 1
else
    compare hc_wb $((1024 * 1048576)) ./hotcold -g 3
fi
unset KZ_POOL_PERCENT ZSWAPU_MAX_POOL ZSWAPU_WRITEBACK
BENCH_NOCMP=0
if [ $quick = 1 ]; then n_py=300000; else n_py=1200000; fi
"$B/tests/rsswatch" -o py.rss -- "$PY" "$HERE/workloads/pydict.py" $n_py > /dev/null 2>&1
peak=$(awk '$1 == "peak_rss_anon_bytes" { print $2 }' py.rss)
compare python $((peak / 2)) "$PY" "$HERE/workloads/pydict.py" $n_py
bench_note "kernel: zswap lzo-rle in a memory cgroup (kzswap.sh), pool outside the cgroup's charge on cgroup v1; zswapu: lz4 + zsmalloc"
