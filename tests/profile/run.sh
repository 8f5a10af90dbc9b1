#!/bin/sh
# End-to-end test of the profiler (make check runs it): tests/profile/hotcold
# under the shim with a limit and ZSWAPU_PROFILE.  The compressed bytes must
# be the cold site's, the faulted-back bytes the hot site's; every folded
# file must parse; every SVG must be well-formed XML naming the sites.
# A 64 KiB sampling rate (the blocks are 64 KiB) keeps the estimates tight.
# Faults are sampled 1 in 64 and readahead serves most hot pages without a
# fault: 8 MiB hot against 64 MiB cold gave 0-9 samples in hot_touch, and a
# fresh-clone run got 0; 16 MiB against 128 MiB gave 1-25 samples since
# faults got cheaper (fault threads), and 0 once in a fresh clone.  24 MiB
# hot under the 32 MiB limit keeps part of the hot set out: 190-230
# samples, hot stored 4-6 MiB against 125 cold (1.3 s).
# Exit 0 pass, 1 fail, 77 skip (no userfaultfd).
#   tests/profile/run.sh BUILD_DIR
set -eu
B=${1:-build/release}
tmp=$(mktemp -d /tmp/zswapu-prof.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
prog="$B/tests/hotcold"
out=$(ZSWAPU_LIMIT=32M ZSWAPU_PROFILE="$tmp/p" ZSWAPU_PROFILE_RATE=64K ZSWAPU_LOG=1 \
      LD_PRELOAD="$PWD/$B/libzswapu-preload.so" "$prog" 24 128 6 2>&1) || {
    echo "$out"; echo "profile: hotcold failed" >&2; exit 1; }
case "$out" in
*"cannot start"*) echo "profile: skipped: $out"; exit 77;;
esac
python3 - "$tmp/p" <<'PY'
import re, sys, xml.etree.ElementTree as ET
p = sys.argv[1]
def folded(view):
    sums = {}
    for n, line in enumerate(open(f"{p}.{view}.folded"), 1):
        m = re.fullmatch(r"(\S[^\n]*) (\d+)\n", line)
        assert m, f"{view}.folded line {n} does not parse: {line!r}"
        frames = m.group(1).split(";")
        assert all(frames), f"{view}.folded line {n}: empty frame"
        for f in set(frames):
            sums[f] = sums.get(f, 0) + int(m.group(2))
    return sums
st, rf, fs, al = (folded(v) for v in ("alloc-stored", "alloc-refaulted", "fault-sites", "alloc"))
hot, cold = "hot_site", "cold_site"
print(f"profile: stored cold {st.get(cold,0)>>20} MiB hot {st.get(hot,0)>>20} MiB; "
      f"refaulted hot {rf.get(hot,0)>>20} MiB cold {rf.get(cold,0)>>20} MiB; "
      f"allocated cold {al.get(cold,0)>>20} MiB hot {al.get(hot,0)>>20} MiB; "
      f"faults in hot_touch {fs.get('hot_touch',0)}")
assert st.get(cold, 0) > 2 * st.get(hot, 0), "stored bytes are not the cold site's"
assert rf.get(hot, 0) > 2 * rf.get(cold, 0), "refaulted bytes are not the hot site's"
assert al.get(cold, 0) > al.get(hot, 0) > 0, "allocated bytes"
assert fs.get("refault", 0) > 0 and fs.get("hot_touch", 0) > 0, "no refault sampled in hot_touch"
for v in ("alloc-stored", "alloc-refaulted", "fault-sites", "alloc"):
    root = ET.parse(f"{p}.{v}.svg").getroot()
    titles = [t.text for t in root.iter("{http://www.w3.org/2000/svg}title")]
    want = {"alloc-stored": cold, "alloc-refaulted": hot, "fault-sites": "hot_touch", "alloc": hot}[v]
    assert any(t.startswith(want + " (") for t in titles), f"{v}.svg does not name {want}"
print("profile: ok")
PY
