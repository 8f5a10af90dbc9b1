#!/bin/sh
# tests/tools/run.sh BUILD_DIR — the zswapu command as a user runs it:
#   - zswapu stat / ps / stat --classes / --watch / --raw / --record against a
#     program running under `zswapu run --limit` (tests/tools/memhog), whose
#     counters must move (stores and stored pages rise under pressure);
#   - a reader of a program that exits mid-read ends cleanly; the program's
#     data were intact (memhog checks every page) and its file is gone;
#   - a managed shell redirecting in a loop keeps its descriptors (the
#     engine's reads of /proc never take a number the shell just freed);
#   - a program that closes (and dup2()s over) every descriptor keeps its
#     data: the engine's descriptors are left alone, with one line saying so;
#   - a SIGKILLed program's stale file is removed by the next reader; with
#     two managed programs, `zswapu stat` asks which;
#   - --stall-max: a thrashing program's limit is raised; stat and limit
#     show the limit now beside the one set;
#   - zswapu limit shows and changes a running program's limit: lowered,
#     its resident size comes down, and its data stays intact;
#   - zswapu release puts a program's stored pages back: before it, they
#     cannot be read through /proc/PID/mem (what gdb reads), after it all are;
#   - a forked child whose parent ends by exit, _exit, daemon(3), SIGTERM or
#     abort() reads every page (tests/tools/orphans), though the parent's
#     engine served it, and daemon()'s daemon then manages its own memory;
#     a SIGSEGV core dump holds every stored page
#     (tests/tools/crash; when core_pattern names a file in the directory);
#     the program sees its signal dispositions as natively (tests/tools/sigview);
#   - zswapu plot writes a PNG and a well-formed SVG;
#   - make install DESTDIR=... then a program built with
#     `pkg-config --cflags --libs zswapu` against the installed copy runs,
#     the installed zswapu finds the installed preload library, the man
#     pages render, and make uninstall removes every file.
# As root it runs in a mount namespace of its own with a private /dev/shm,
# so other managed processes on the machine do not disturb the checks
# that count them; otherwise those checks are skipped.
# Prints "N passed, N failed"; exit status 1 when a check failed.
set -u

B=${1:?usage: run.sh BUILD_DIR}
B=$(cd "$B" && pwd) || exit 1
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
Z=$B/zswapu
HOG=$B/tests/tools/memhog

if [ -z "${ZSWAPU_TOOLS_NS:-}" ] && [ "$(id -u)" = 0 ] &&
    unshare --mount --propagation private true 2>/dev/null; then
    export ZSWAPU_TOOLS_NS=1
    exec unshare --mount --propagation private sh -c \
        'mount -t tmpfs -o mode=1777 zswapu-tools /dev/shm && exec "$0" "$@"' "$0" "$@"
fi
ALONE=${ZSWAPU_TOOLS_NS:-}

for f in "$Z" "$HOG" "$B/tests/tools/orphans" "$B/tests/tools/crash" "$B/tests/tools/sigview" \
    "$B/libzswapu-preload.so"; do
    [ -e "$f" ] || { echo "run.sh: $f missing: build first (make all)" >&2; exit 1; }
done

T=$(mktemp -d /tmp/zswapu-tools.XXXXXX)
PIDS=""
cleanup() {
    for p in $PIDS; do kill -9 "$p" 2>/dev/null; done
    rm -rf "$T"
}
trap cleanup EXIT INT TERM

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   $1"; }
bad() { failed=$((failed + 1)); echo "FAIL $1"; [ $# -gt 1 ] && sed 's/^/     /' "$2"; }
check() { # check NAME COMMAND...: passes when the command succeeds
    name=$1; shift
    if "$@" >"$T/out" 2>&1; then ok "$name"; else bad "$name" "$T/out"; fi
}

# A raw counter of PID's stats, or "" when it cannot be read.
raw() { "$Z" stat --raw "$2" 2>/dev/null | awk -v k="$1" '$1 == k { print $2 }'; }

# Wait (at most ~10 s) until PID has published its stats file.
wait_seg() {
    i=0
    while [ ! -e "/dev/shm/zswapu.$1" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
    [ -e "/dev/shm/zswapu.$1" ]
}

# Poll (~10 s at most) until counter KEY of PID satisfies OP VALUE (test's
# -ge, -le ...); print its last value.
await_raw() { # KEY PID OP VALUE
    i=0
    while v=$(raw "$1" "$2"); ! [ "${v:-x}" "$3" "$4" ] 2>/dev/null && [ $i -lt 100 ]; do
        sleep 0.1; i=$((i + 1))
    done
    echo "$v"
}

# Start memhog MIB SECONDS under a limit; its PID in $HOGPID (zswapu run execs).
start_hog() {
    "$Z" run --limit "$1" -- "$HOG" "$2" "$3" >"$T/hog.$2.out" 2>&1 &
    HOGPID=$!
    PIDS="$PIDS $HOGPID"
}

# ---- help ----
check "help lists stat, ps and plot" sh -c "'$Z' help | grep -q 'zswapu stat' &&
    '$Z' help | grep -q 'zswapu ps' && '$Z' help | grep -q 'zswapu plot'"
check "stat rejects a bad PID" sh -c "! '$Z' stat nonsense 2>$T/e && grep -q 'not a process ID' $T/e"
check "stat of a process that is not managed fails with a message" \
    sh -c "! '$Z' stat 1 >/dev/null 2>$T/e; grep -q 'not a managed process' $T/e"
if [ -n "$ALONE" ]; then
    check "stat without any managed process says so" \
        sh -c "! '$Z' stat 2>$T/e; grep -q 'no managed process' $T/e"
fi

# ---- a managed program under pressure ----
start_hog 24M 48 6
P=$HOGPID
if wait_seg "$P"; then ok "the managed program publishes /dev/shm/zswapu.$P"; else
    bad "the managed program publishes /dev/shm/zswapu.$P" "$T/hog.48.out"; fi
check "its file has mode 0600" sh -c "[ \"\$(stat -c %a /dev/shm/zswapu.$P)\" = 600 ]"
check "zswapu ps lists it" sh -c "'$Z' ps | awk '\$1 == $P && \$2 == \"memhog\"' | grep -q . &&
    '$Z' ps | head -1 | grep -q 'FAULTS/S STALL%\$'"
if [ -n "$ALONE" ]; then
    check "zswapu stat without a PID picks the one managed process" \
        sh -c "'$Z' stat | head -1 | grep -q 'pid $P (memhog)'"
fi

# stores rise and pages get stored while it runs (waits, never times)
s1=$(raw stores "$P"); i=0; s2=$s1; st=0
while [ $i -lt 100 ]; do
    sleep 0.1
    s2=$(raw stores "$P"); st=$(raw stored_pages "$P")
    [ -n "$s2" ] && [ -n "$s1" ] && [ "$s2" -gt "$s1" ] && [ "${st:-0}" -gt 0 ] && break
    i=$((i + 1))
done
if [ -n "$s2" ] && [ -n "$s1" ] && [ "$s2" -gt "$s1" ] && [ "${st:-0}" -gt 0 ]; then
    ok "counters move under pressure (stores $s1 -> $s2, stored_pages $st)"
else
    bad "counters move under pressure (stores '$s1' -> '$s2', stored_pages '$st')"
fi
# its reads of what was stored wait on faults: the stall counts them
sn=$(await_raw stall_ns "$P" -gt 0)
if [ "${sn:-0}" -gt 0 ]; then ok "the stall counts its waits on faults ($sn ns)"; else
    bad "the stall counts its waits on faults (stall_ns '$sn')"; fi
check "stat shows the screen" sh -c "'$Z' stat $P > $T/screen &&
    grep -q '^  resident .* of 24.0 MiB limit' $T/screen && grep -q '^  pool ' $T/screen &&
    grep -q 'effective ratio' $T/screen && grep -q 'refaults per reclaimed page' $T/screen &&
    grep -q '^  writeback ' $T/screen && grep -q 'stored_pages' $T/screen &&
    grep -q '^  stall  *at least [0-9]* % of the last second waiting on faults' $T/screen"
check "stat --raw has the writeback fields" sh -c "'$Z' stat --raw $P > $T/raw &&
    grep -q '^written_back_pages 0' $T/raw && grep -q '^writeback_bytes 0' $T/raw &&
    grep -q '^wb_reads 0' $T/raw && grep -q '^fault_p99_ns ' $T/raw && grep -q '^stall_pct ' $T/raw"
check "stat --classes shows zsmalloc's classes" sh -c "'$Z' stat --classes $P > $T/cls &&
    grep -q 'class  size almost_full' $T/cls && grep -q '^Total' $T/cls"
check "stat --watch -n 3 refreshes three times" sh -c "'$Z' stat --watch -n 3 -i 0.1 $P > $T/w &&
    [ \$(grep -c '^zswapu stat: pid $P' $T/w) -eq 3 ]"
check "stat --record writes a header and samples" sh -c "cd $T && '$Z' stat --record rec.tsv \
    -n 8 -i 0.1 $P && [ \$(grep -c '^[0-9]' rec.tsv) -eq 8 ] && grep -q '^time_s	' rec.tsv"

# a reader that keeps reading while the program exits
"$Z" stat --watch -i 0.02 "$P" >"$T/watch" 2>"$T/watch.err" &
W=$!
PIDS="$PIDS $W"
wait "$P"
hog=$?
wait "$W"
w=$?
if [ $hog -eq 0 ]; then ok "memhog read every page back intact"; else
    bad "memhog read every page back intact (exit $hog)" "$T/hog.48.out"; fi
if [ $w -eq 0 ] && grep -q "has exited" "$T/watch.err"; then
    ok "a reader of a program that exits mid-read ends cleanly"
else
    bad "a reader of a program that exits mid-read ends cleanly (exit $w)" "$T/watch.err"
fi
check "the file is removed at exit" test ! -e "/dev/shm/zswapu.$P"

# sh-redirects: a managed shell redirecting in a loop (dash: close(1), then
# dup2(f, 1)) while its reclaimer runs flat out under a 1 MiB limit: the
# engine opens nothing then (core/maps.h: maps_preopen), so no redirection
# loses its descriptor; before, every run broke within 400 rounds
cat > "$T/redirects.sh" <<'EOF'
i=0
while [ $i -lt 400 ]; do
  /bin/echo $i > out.txt || exit 1
  read v < out.txt
  [ "$v" = "$i" ] || { echo "round $i: read back '$v'"; exit 2; }
  i=$((i+1))
done
echo ok
EOF
if (cd "$T" && ZSWAPU_EXCLUDE=echo ZSWAPU_WRITEBACK=1 "$Z" run --limit 1M -- sh redirects.sh \
    >redir.out 2>redir.err) && [ "$(cat "$T/redir.out")" = ok ]; then
    ok "sh-redirects: a managed shell's redirections keep their descriptors"
else
    cat "$T/redir.err" >>"$T/redir.out"
    bad "sh-redirects: a managed shell's redirections keep their descriptors" "$T/redir.out"
fi

# a program that closes and dup2()s over every descriptor, with most of its
# pages stored or written back: the engine's descriptors survive, its data
# too, and one line says what was refused (core/fdguard.h)
if ZSWAPU_WRITEBACK=1 ZSWAPU_MAX_POOL=1M "$Z" run --limit 8M -- "$HOG" 32 2 closeall \
    >"$T/closeall" 2>&1 && [ "$(grep -c 'which zswapu uses' "$T/closeall")" = 1 ]; then
    ok "a program that closes every descriptor keeps its data"
else
    bad "a program that closes every descriptor keeps its data" "$T/closeall"
fi

# ---- release ----
# gdb reads a process's memory through /proc/PID/mem, which cannot wait for
# the engine to bring a stored page back: such pages fail to read (EIO)
# until zswapu release has put them back and stopped managing the process
cat > "$T/memread.py" <<'EOF'
import sys
pid = sys.argv[1]
bad = good = 0
with open("/proc/%s/maps" % pid) as maps, open("/proc/%s/mem" % pid, "rb", 0) as mem:
    for line in maps:
        f = line.split()
        if f[1] != "rw-p" or f[4] != "0" or (len(f) > 5 and f[5] != "[heap]"):
            continue
        lo, hi = (int(x, 16) for x in f[0].split("-"))
        if hi - lo > 1 << 28:
            continue  # the engine's reservations: gigabytes never touched
        for a in range(lo, hi, 4096):
            try:
                mem.seek(a)
                mem.read(4096)
                good += 1
            except OSError:
                bad += 1
print(good, bad)
EOF
check "release refuses a process that is not managed" \
    sh -c "! '$Z' release 1 2>$T/e && grep -q 'not a managed process' $T/e"
check "release wants a PID" sh -c "! '$Z' release 2>$T/e && grep -q 'usage: zswapu release' $T/e"
start_hog 12M 40 12
R=$HOGPID
wait_seg "$R"
st=$(await_raw stored_pages "$R" -ge 2560)
python3 "$T/memread.py" "$R" >"$T/before" 2>&1
if [ "$(awk '{ print $2 }' "$T/before")" -gt 0 ] 2>/dev/null; then
    ok "stored pages cannot be read through /proc/PID/mem (readable, unreadable: $(cat "$T/before"))"
else
    bad "stored pages cannot be read through /proc/PID/mem (stored_pages '$st')" "$T/before"
fi
check "zswapu release puts them back" sh -c "'$Z' release $R > $T/rel &&
    grep -q 'brought back' $T/rel && grep -q 'runs on unmanaged' $T/rel"
python3 "$T/memread.py" "$R" >"$T/after" 2>&1
if [ "$(awk '{ print $2 }' "$T/after")" = 0 ]; then
    ok "after release every page reads through /proc/PID/mem ($(awk '{ print $1 }' "$T/after") pages)"
else
    bad "after release every page reads through /proc/PID/mem" "$T/after"
fi
check "stat says it is released and holds nothing" sh -c "'$Z' stat $R > $T/rs &&
    grep -q 'released: unmanaged' $T/rs && grep -q 'managed 0 B in 0 ranges' $T/rs &&
    '$Z' stat --raw $R | grep -qx 'stored_pages 0'"
check "a second release says it is done already" sh -c "'$Z' release $R | grep -q 'released already'"
wait "$R"
hog=$?
if [ $hog -eq 0 ]; then ok "memhog, released midway, read every page back intact"; else
    bad "memhog, released midway, read every page back intact (exit $hog)" "$T/hog.40.out"; fi

# ---- limit ----
# a limit changed while the program runs: lowered, the resident size comes
# down to it (memhog reads every page, so faults are held meanwhile), and
# every page still reads back right
check "limit wants a PID" sh -c "! '$Z' limit 2>$T/e && grep -q 'usage: zswapu limit' $T/e"
start_hog 64M 40 12
L=$HOGPID
wait_seg "$L"
rss=$(await_raw anon_rss_bytes "$L" -ge 41943040)
check "limit shows the limit" sh -c "'$Z' limit $L | grep -q 'limit 64.0 MiB, resident'"
check "limit refuses a bad size, as ZSWAPU_LIMIT does" \
    sh -c "'$Z' limit $L 12Q 2>$T/e; [ \$? = 2 ] && grep -q \"ZSWAPU_LIMIT='12Q' is not valid\" $T/e"
check "limit refuses 0 (that is release)" sh -c "! '$Z' limit $L 0 2>$T/e && grep -q 'zswapu release' $T/e"
check "limit 16M is taken" sh -c "'$Z' limit $L 16M > $T/lim && grep -q 'limit 16.0 MiB, was 64.0 MiB' $T/lim"
rss2=$(await_raw anon_rss_bytes "$L" -le 23068672)
if [ "${rss:-0}" -ge 41943040 ] && [ "${rss2:-99999999999}" -le 23068672 ]; then
    ok "under the lower limit the resident size came down ($((rss / 1048576)) to $((rss2 / 1048576)) MiB, engine included)"
else
    bad "under the lower limit the resident size came down ('$rss' to '$rss2' bytes)" "$T/lim"
fi
check "stat and stat --raw show the new limit" sh -c "'$Z' stat $L | head -1 | grep -q 'limit 16.0 MiB' &&
    '$Z' stat --raw $L | grep -qx 'limit_bytes 16777216'"
"$Z" run --cold-age 5 -- "$HOG" 4 4 >"$T/hog.nolimit.out" 2>&1 &
N=$!
wait_seg "$N"
check "limit refuses a process started without one" \
    sh -c "! '$Z' limit $N 8M 2>$T/e && grep -q 'started without a limit' $T/e"
wait "$N"
wait "$L"
hog=$?
if [ $hog -eq 0 ]; then ok "memhog, its limit lowered midway, read every page back intact"; else
    bad "memhog, its limit lowered midway, read every page back intact (exit $hog)" "$T/hog.40.out"; fi

# ---- the stall control ----
# memhog reads all of its 40 MiB each round: under 8M it thrashes, and with
# --stall-max the limit gives; stat, limit and --raw say from what
"$Z" run --limit 8M --stall-max 20 -- "$HOG" 40 8 >"$T/hog.stall.out" 2>&1 &
S=$!
PIDS="$PIDS $S"
wait_seg "$S"
raised=$(await_raw reclaim_limit_raised "$S" -ge 1)
if [ "${raised:-0}" -ge 1 ]; then ok "--stall-max: a thrashing program's limit is raised ($raised times)"; else
    bad "--stall-max: a thrashing program's limit is raised (limit_raised '$raised')" "$T/hog.stall.out"; fi
check "stat shows the limit now and the one set" sh -c "'$Z' stat $S | head -1 |
    grep -q 'limit [0-9.]* MiB (set 8.0 MiB; raised [0-9]* times, lowered [0-9]* by the stall control)' &&
    '$Z' stat --raw $S | grep -qx 'limit_set_bytes 8388608'"
check "limit shows it too" sh -c "'$Z' limit $S | grep -q '(set 8.0 MiB, raised by the stall control)'"
check "--stall-max without --limit is refused" sh -c "! '$Z' run --stall-max 20 -- true 2>$T/e &&
    grep -q \"ZSWAPU_STALL_MAX='20' is not valid without ZSWAPU_LIMIT\" $T/e"
wait "$S"
hog=$?
if [ $hog -eq 0 ]; then ok "memhog, its limit raised by the stall control, read every page back intact"; else
    bad "memhog, its limit raised by the stall control, read every page back intact (exit $hog)" "$T/hog.stall.out"; fi

# ---- a parent that ends without its exit handlers ----
# a forked child reads its stored pages through the parent's engine; the
# parent ending by _exit() (daemon(3) does it) or a fatal signal's default
# action must hand them over first, or the kernel drops the child's
# registration and they read as zeros
ORPH=$B/tests/tools/orphans
for how in exit _exit daemon term abort exec detach; do
    (cd "$T" && ulimit -c 0 && exec "$Z" run --limit 4M -- "$ORPH" "$how" 16) 2>"$T/orph.err" |
        cat >"$T/orph.$how"
    stored=$(awk '/^parent:/ { print $2 }' "$T/orph.$how")
    if [ "${stored:-0}" -gt 0 ] && grep -q '^child: .* 0 read wrong$' "$T/orph.$how"; then
        ok "orphans $how: the child reads every page after its parent is gone ($stored stored at the fork)"
    else
        cat "$T/orph.err" >>"$T/orph.$how"
        bad "orphans $how: the child reads every page after its parent is gone" "$T/orph.$how"
    fi
done

# a parent killed outright hands nothing over: its child takes over (its
# own copy of the userfaultfd, core/orphan.h) and each page the parent
# still kept for it raises SIGBUS, with one line on stderr; no page may
# read wrong, and every other reads right
(cd "$T" && ulimit -c 0 && exec "$Z" run --limit 4M -- "$ORPH" kill 16) 2>"$T/orph.err" |
    cat >"$T/orph.kill"
stored=$(awk '/^parent:/ { print $2 }' "$T/orph.kill")
lost=$(awk '/^child:/ { print $8 }' "$T/orph.kill")
if [ "${stored:-0}" -gt 0 ] && [ "${lost:-0}" -gt 0 ] && [ "$lost" -le "$stored" ] &&
    grep -q '^child: .* 0 read wrong$' "$T/orph.kill" &&
    grep -q 'without handing over [0-9]* stored pages .*SIGBUS' "$T/orph.err"; then
    ok "orphans kill: the child of a SIGKILLed parent never reads a wrong page ($lost of $stored stored raise SIGBUS, the rest read right)"
else
    cat "$T/orph.err" >>"$T/orph.kill"
    bad "orphans kill: the child of a SIGKILLed parent never reads a wrong page" "$T/orph.kill"
fi

# the daemon, which no engine served any more, runs managed by one of its
# own: daemon()'s at once, a fork + exit one (redis) at its next allocation
for how in daemon detach; do
    dstored=$(awk '/^daemon: .* not present/ { print $2 }' "$T/orph.$how")
    if [ "${dstored:-0}" -gt 0 ] && grep -q '^daemon: 0 read wrong$' "$T/orph.$how"; then
        ok "orphans $how: the daemon manages its own memory ($dstored of its pages stored after 2 s cold)"
    else
        bad "orphans $how: the daemon manages its own memory" "$T/orph.$how"
    fi
done

# a worker whose parent lives on (prefork) manages the memory it maps
# itself; the parent's engine serves what it inherited until it ends and
# hands it over, and then the worker's engine takes that on too
(cd "$T" && exec "$Z" run --limit 4M -- "$ORPH" worker 16) 2>&1 | cat >"$T/orph.worker"
wstored=$(awk '/^worker: .* of its own not present/ { print $2 }' "$T/orph.worker")
istored=$(awk '/^worker: .* inherited pages not present/ { print $2 }' "$T/orph.worker")
if [ "${wstored:-0}" -gt 0 ] && grep -q '^worker: 0 of its own read wrong, 0 inherited$' "$T/orph.worker"; then
    ok "orphans worker: a prefork worker manages its own memory ($wstored of its pages stored after 3 s cold)"
else
    bad "orphans worker: a prefork worker manages its own memory" "$T/orph.worker"
fi
if [ "${istored:-0}" -gt 0 ]; then
    ok "orphans worker: and what it inherited once the parent has handed it over ($istored stored)"
else
    bad "orphans worker: and what it inherited once the parent has handed it over" "$T/orph.worker"
fi
# its limit: 4M on top of what it had at the fork while the parent lives,
# 4M alone once the parent has handed its pages over
lraised=$(awk '/^worker: limit .* while the parent lives/ { print $3 }' "$T/orph.worker")
lback=$(awk '/^worker: limit .* once the parent is gone/ { print $3 }' "$T/orph.worker")
if [ "${lraised:-0}" -gt 4194304 ] && [ "${lback:-0}" = 4194304 ]; then
    ok "orphans worker: its limit is raised by what it inherited ($lraised bytes), and back to 4M once the parent is gone"
else
    bad "orphans worker: its limit is raised by what it inherited, and back once the parent is gone" "$T/orph.worker"
fi
wpid=$(awk '/^worker: pid/ { print $3 }' "$T/orph.worker")
if [ -n "$wpid" ] && [ ! -e "/dev/shm/zswapu.$wpid" ]; then
    ok "a worker ended by _exit() leaves no stats file behind"
else
    bad "a worker ended by _exit() leaves no stats file behind" "$T/orph.worker"
fi

# a core dump with every stored page in it (the kernel writes it once the
# engine's threads are gone and leaves out the pages that are not there)
cat > "$T/readcore.py" <<'EOF'
import struct, sys
# crash's pages in its ELF core: how many start with "page <i> here"
core, addr, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with open(core, "rb") as f:
    d = f.read(64)
    phoff, = struct.unpack_from("<Q", d, 32)
    phentsize, phnum = struct.unpack_from("<HH", d, 54)
    segs = []
    for k in range(phnum):
        f.seek(phoff + k * phentsize)
        t, _, off, va, _, filesz = struct.unpack("<IIQQQQ", f.read(40))
        if t == 1:
            segs.append((va, off, filesz))
    good = 0
    for i in range(n):
        a = addr + i * 4096
        for va, off, sz in segs:
            if va <= a < va + sz:
                f.seek(off + a - va)
                good += f.read(32).startswith(b"page %d here\0" % i)
                break
print(good, n)
EOF
pattern=$(cat /proc/sys/kernel/core_pattern)
case "$pattern" in
core|core.%p)
    rm -f "$T"/core "$T"/core.[0-9]*
    (cd "$T" && ulimit -c unlimited && exec "$Z" run --limit 4M -- "$B/tests/tools/crash" 16 \
        >"$T/crash.out" 2>"$T/crash.err")
    core=$(ls "$T"/core "$T"/core.[0-9]* 2>/dev/null | head -1)
    if [ -n "$core" ]; then
        python3 "$T/readcore.py" "$core" $(head -1 "$T/crash.out") >"$T/corepages" 2>&1
        rm -f "$core"
    fi
    if [ -n "$core" ] && [ "$(awk '{ print ($1 == $2 && $2 > 0) }' "$T/corepages")" = 1 ]; then
        ok "a SIGSEGV core dump holds every stored page ($(cat "$T/corepages"))"
    else
        cat "$T/crash.err" >>"$T/corepages"
        bad "a SIGSEGV core dump holds every stored page (core '$core')" "$T/corepages"
    fi ;;
*)
    echo "skip core dump: core_pattern is '$pattern', not a file in the working directory" ;;
esac

# zswapu's own handler for fatal signals left at SIG_DFL is not to be seen:
# sigaction, signal, bsd_signal, sysv_signal and sigset report SIG_DFL
# (flags as the kernel had them), set and restore as natively
SV=$B/tests/tools/sigview
"$SV" >"$T/sv.native" 2>/dev/null
svn=$?
"$Z" run -- "$SV" >"$T/sv.zswapu" 2>/dev/null
svz=$?
if [ $svn = $svz ] && cmp -s "$T/sv.native" "$T/sv.zswapu" && grep -q 'SIGUSR1 now SIG_DFL' "$T/sv.zswapu"; then
    ok "the program sees its signal dispositions as natively (status $svz)"
else
    diff "$T/sv.native" "$T/sv.zswapu" >"$T/sv.diff"
    echo "status $svn natively, $svz under zswapu" >>"$T/sv.diff"
    bad "the program sees its signal dispositions as natively" "$T/sv.diff"
fi

# ---- plot ----
if command -v gnuplot >/dev/null 2>&1; then
    check "zswapu plot writes PNG and SVG" sh -c "cd $T && '$Z' plot rec.tsv >/dev/null &&
        [ \"\$(head -c 8 rec.png | od -An -tx1 | tr -d ' \n')\" = 89504e470d0a1a0a ] &&
        python3 -c 'import sys, xml.dom.minidom as m; d = m.parse(\"rec.svg\");
sys.exit(d.documentElement.tagName != \"svg\")' && grep -q 'resident vs limit' rec.svg &&
        grep -q 'stall %' rec.svg"
    # a record from before the stall was published: drawn without it
    check "zswapu plot draws a record without stall_pct" sh -c "cd $T &&
        awk -F '\t' -v OFS='\t' '/^#/ { print; next }
            !c { for (i = 1; i <= NF; i++) if (\$i == \"stall_pct\") c = i }
            { for (i = c; i < NF; i++) \$i = \$(i + 1); NF--; print }' rec.tsv > old.tsv &&
        ! grep -q stall_pct old.tsv && '$Z' plot old.tsv >/dev/null && [ -s old.svg ] &&
        ! grep -q 'stall %' old.svg"
    check "zswapu plot -o names the files" sh -c "cd $T && '$Z' plot -o other rec.tsv >/dev/null &&
        [ -s other.png ] && [ -s other.svg ]"
else
    echo "skip zswapu plot: gnuplot is not installed (scripts/deps.sh installs gnuplot-nox)"
fi
check "zswapu plot refuses a file it did not write" sh -c "echo hello > $T/x.tsv;
    ! '$Z' plot $T/x.tsv 2>$T/e && grep -q 'not written by' $T/e"

# ---- stale files and several processes ----
start_hog 16M 24 30
A=$HOGPID
start_hog 16M 24 30
C=$HOGPID
wait_seg "$A" && wait_seg "$C"
if [ -n "$ALONE" ]; then
    check "with two managed programs, stat asks which" \
        sh -c "! '$Z' stat >/dev/null 2>$T/e; grep -q '2 managed processes' $T/e"
fi
kill -9 "$A"
wait "$A" 2>/dev/null
check "a killed program leaves its file behind" test -e "/dev/shm/zswapu.$A"
check "zswapu ps does not list it and removes the file" sh -c "! '$Z' ps | awk '\$1 == $A' |
    grep -q . && [ ! -e /dev/shm/zswapu.$A ] && '$Z' ps | awk '\$1 == $C' | grep -q ."
if [ -n "$ALONE" ]; then
    check "stat without a PID then picks the survivor" \
        sh -c "'$Z' stat | head -1 | grep -q 'pid $C '"
fi
kill -9 "$C"
wait "$C" 2>/dev/null
check "stat of a killed program removes its file" sh -c "! '$Z' stat $C 2>$T/e &&
    grep -q 'not a managed process' $T/e && [ ! -e /dev/shm/zswapu.$C ]"

# ---- install ----
D=$T/root
PREFIX=/usr/local
SAN=$(basename "$B")
[ "$SAN" = release ] && SAN=
if make -s -C "$ROOT" install DESTDIR="$D" SANITIZE="$SAN" >"$T/inst" 2>&1; then
    ok "make install DESTDIR=..."
else
    bad "make install DESTDIR=..." "$T/inst"
fi
for f in bin/zswapu lib/libzswapu.so lib/libzswapu-preload.so include/zswapu.h \
    lib/pkgconfig/zswapu.pc share/man/man1/zswapu.1 share/man/man3/zswapu.3 \
    share/man/man3/zswapu_init.3 share/man/man3/zswapu_stats.3 share/man/man7/zswapu.7; do
    [ -e "$D$PREFIX/$f" ] || echo "missing $D$PREFIX/$f"
done >"$T/missing"
if [ -s "$T/missing" ]; then bad "every file is installed" "$T/missing"; else
    ok "every file is installed"; fi
cat >"$T/prog.c" <<'EOF'
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <zswapu.h>

int main(void)
{
    struct zswapu_options o;
    zswapu_options_init(&o);
    int err = zswapu_init(&o);
    if (err) {
        printf("unmanaged: %s\n", strerror(-err));
        return 0; /* no userfaultfd here: the library still loaded and ran */
    }
    size_t len = 8 << 20;
    unsigned char *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    for (size_t i = 0; i < len; i++)
        p[i] = (unsigned char)(i / 4096 % 7);
    if (zswapu_register(p, len) || zswapu_reclaim(p, len) <= 0)
        return 1;
    struct zswapu_stats st;
    zswapu_stats(&st);
    printf("stored %llu\n", (unsigned long long)st.stored_pages);
    for (size_t i = 0; i < len; i++)
        if (p[i] != (unsigned char)(i / 4096 % 7))
            return 1;
    zswapu_shutdown();
    return st.stored_pages ? 0 : 1;
}
EOF
export PKG_CONFIG_PATH="$D$PREFIX/lib/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$D"
FLAGS=$(pkg-config --cflags --libs zswapu 2>"$T/pc")
unset PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR
case "$FLAGS" in
*"-I$D$PREFIX/include"*"-L$D$PREFIX/lib"*"-lzswapu"*) ok "pkg-config zswapu points into DESTDIR ($FLAGS)" ;;
*) bad "pkg-config zswapu points into DESTDIR ('$FLAGS')" "$T/pc" ;;
esac
# shellcheck disable=SC2086
if cc -o "$T/prog" "$T/prog.c" $FLAGS >"$T/cc" 2>&1; then ok "a program builds against it"; else
    bad "a program builds against it" "$T/cc"; fi
check "it runs against the installed library" sh -c "LD_LIBRARY_PATH='$D$PREFIX/lib' '$T/prog' &&
    LD_LIBRARY_PATH='$D$PREFIX/lib' ldd '$T/prog' | grep -q '$D$PREFIX/lib/libzswapu.so'"
check "the installed zswapu preloads the installed library" sh -c "'$D$PREFIX/bin/zswapu' run -- \
    sh -c 'echo \$LD_PRELOAD' | grep -qx '$D$PREFIX/lib/libzswapu-preload.so'"
check "the installed man pages render" sh -c "for p in man1/zswapu.1 man3/zswapu.3 man7/zswapu.7; do
    MANWIDTH=80 man -l '$D$PREFIX/share/man/'\$p 2>&1 >/dev/null | grep . && exit 1; done;
    MANWIDTH=80 man -M '$D$PREFIX/share/man' 3 zswapu_init 2>/dev/null | grep -q zswapu_register"
if make -s -C "$ROOT" uninstall DESTDIR="$D" SANITIZE="$SAN" >"$T/uninst" 2>&1 &&
    [ -z "$(find "$D" -type f)" ]; then
    ok "make uninstall removes every file"
else
    find "$D" -type f >>"$T/uninst"
    bad "make uninstall removes every file" "$T/uninst"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
