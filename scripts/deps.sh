#!/bin/sh
# Installs the Debian packages zswapu needs to build, test, benchmark and demo,
# only those missing; runs `apt-get update` at most once. Needs root (or sudo).
set -eu

# build: compiler, libraries; tests: check, and the real programs the
# integration tests run; bench: xz/python3 for data and reports.
PKGS="gcc make pkg-config liblz4-dev libzstd-dev liburing-dev libunwind-dev
libbsd-dev check xz-utils python3 sqlite3 nodejs coreutils procps gnuplot-nox groff-base"

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

SUDO=""
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
        echo "deps.sh: missing packages:$missing; run as root to install them" >&2
        exit 1
    fi
fi
echo "deps.sh: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
