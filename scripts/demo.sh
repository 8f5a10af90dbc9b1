#!/usr/bin/env bash
# make demo: zswapu on a real program.  python3 builds a large dictionary
# and a list of strings (about 400 MB), works on a small part of them for a
# while, then reads everything back and prints a checksum.  It runs
# natively, then under `zswapu run` with a limit of a third of its native
# peak; the script compares the outputs byte for byte and prints the run
# times, the peak resident sizes (sampled from /proc/PID/status every
# 0.1 s: VmHWM, and the largest RssAnon seen) and zswapu's stats table.
# What it prints is measured, whatever it is: if the limit is not kept, it
# says so.
set -euo pipefail
B=${1:-build/release}
ZSWAPU=$B/zswapu
# the distribution's python, not a version manager's shell wrapper (whose
# bash would be what the numbers describe)
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3)
N=${DEMO_N:-1500000}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat > "$work/work.py" <<'EOF'
import hashlib, sys
n = int(sys.argv[1])
# a large dictionary and a list of strings, built once and then mostly left alone
d = {}
for i in range(n):
    d[f"user:{i:09d}"] = f"name-{i % 1000:03d} city-{(i * 7) % 500:03d} score={i % 97} " \
                         f"status=active plan=basic region=eu-west-{i % 3}"
words = [f"{i:x}-{i % 1000}" for i in range(n)]
# hot work on a small part of it, many times
total = 0
hot = words[: n // 20]
for r in range(20):
    for w in hot:
        total += len(w)
# every byte again: the cold part comes back
h = hashlib.sha256()
for k, v in d.items():
    h.update(k.encode()); h.update(v.encode())
for w in words:
    h.update(w.encode())
print(len(d), len(words), total, h.hexdigest())
EOF

# run NAME CMD...: runs CMD with stdout in $work/NAME.out, stderr in
# $work/NAME.err; sets SECS, HWM_KB, ANON_KB (peaks) and RC.
run() {
	local name=$1
	shift
	local t0 t1 line
	t0=$(date +%s%N)
	"$@" > "$work/$name.out" 2> "$work/$name.err" &
	local pid=$!
	HWM_KB=0
	ANON_KB=0
	while kill -0 "$pid" 2> /dev/null; do
		# zswapu run execs the program: the pid stays the program's
		while read -r line; do
			case $line in
			VmHWM:*) set -- $line; [ "$2" -gt "$HWM_KB" ] && HWM_KB=$2 ;;
			RssAnon:*) set -- $line; [ "$2" -gt "$ANON_KB" ] && ANON_KB=$2 ;;
			esac
		done < "/proc/$pid/status" 2> /dev/null || true
		sleep 0.1
	done
	RC=0
	wait "$pid" || RC=$?
	t1=$(date +%s%N)
	SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
}

mib() { awk -v k="$1" 'BEGIN { printf "%.0f MiB", k / 1024 }'; }

echo "== zswapu demo: $PY building a dictionary and a list of $N strings each"
run native "$PY" "$work/work.py" "$N"
[ "$RC" = 0 ] || { echo "the native run failed ($RC)"; cat "$work/native.err"; exit 1; }
N_SECS=$SECS N_HWM=$HWM_KB N_ANON=$ANON_KB
LIMIT_KB=$((N_ANON / 3))
echo "native: $N_SECS s, peak resident $(mib "$N_HWM"), peak anonymous $(mib "$N_ANON")"

echo "== under zswapu: $ZSWAPU run --limit ${LIMIT_KB}K --stats -- python3 work.py $N"
run managed "$ZSWAPU" run --limit "${LIMIT_KB}K" --stats -- "$PY" "$work/work.py" "$N"
M_RC=$RC
if [ "$M_RC" != 0 ]; then
	echo "the run under zswapu FAILED (exit status $M_RC):"
	cat "$work/managed.err"
	exit 1
fi
if cmp -s "$work/native.out" "$work/managed.out"; then
	same="identical"
else
	same="DIFFERENT"
fi

ratio=$(awk '$1 == "compression_ratio" { print $2 }' "$work/managed.err")
printf '\n%-22s %-16s %s\n' "" "native" "zswapu run --limit $(mib "$LIMIT_KB")"
printf '%-22s %-16s %s\n' "run time" "$N_SECS s" \
	"$SECS s ($(awk -v a="$SECS" -v b="$N_SECS" 'BEGIN { printf "%.1fx", a / b }'))"
printf '%-22s %-16s %s\n' "peak resident (VmHWM)" "$(mib "$N_HWM")" "$(mib "$HWM_KB")"
printf '%-22s %-16s %s\n' "peak anonymous" "$(mib "$N_ANON")" "$(mib "$ANON_KB")"
printf '%-22s %-16s %s\n' "compression ratio" "-" "${ratio:--}"
printf '%-22s %s\n' "output" "$same: $(cut -c1-60 "$work/native.out")..."
echo
# the margin covers the sampling (0.1 s) and the reclaimer's hysteresis
if [ "$ANON_KB" -le $((LIMIT_KB * 11 / 10)) ]; then
	echo "zswapu kept the program's anonymous memory within its limit (+10%)."
else
	echo "zswapu did NOT keep the limit: peak anonymous $(mib "$ANON_KB") against a limit" \
		"of $(mib "$LIMIT_KB")."
fi
echo "The program's resident size went from $(mib "$N_HWM") to $(mib "$HWM_KB")."
echo
echo "== zswapu's stats table (ZSWAPU_STATS=1)"
grep -v '^zswapu: resident size' "$work/managed.err" || true
[ "$same" = identical ]
