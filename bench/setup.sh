#!/usr/bin/env bash
# Prepare the benchmark environments (idempotent; bench/run.py calls it first).
#
#   bash bench/setup.sh        # prints KEY=VALUE lines on stdout, progress on stderr
#
# Everything lives under $GOERYX_CACHE_DIR/bench/ (default ~/.cache/goeryx/bench/), in venvs of
# the native CPython 3.13.5 that runtime/build.sh builds from the same Debian source as the guest:
#   venv-goeryx   the wheel from dist/ (reinstalled whenever its sha256 changes)
#   venv-pyeryx   pyeryx, pinned and hash-checked (bench/requirements-pyeryx.txt)
#   venv-plot     matplotlib, pinned and hash-checked (bench/requirements-plot.txt)
# pyeryx and goeryx both install the package `eryx`, hence one venv each.
# A failure to install pyeryx or matplotlib is reported (PYERYX_ERROR=, PLOT_ERROR=) and is not
# fatal; a missing native CPython or goeryx wheel is.
#
# Environment: NATIVE_PYTHON=/path/to/python3.13 to use another native CPython (>= 3.12);
#              GOERYX_WHEEL=/path/to/goeryx-*.whl to benchmark another wheel;
#              GOERYX_BENCH_DIR=DIR for venvs of its own instead of $GOERYX_CACHE_DIR/bench/ (two
#              wheels compared, or two benchmarks at once, do not reinstall each other's).
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
CACHE=${GOERYX_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/goeryx}
B=${GOERYX_BENCH_DIR:-$CACHE/bench}
mkdir -p "$B"
log() { printf '[bench setup] %s\n' "$*" >&2; }
die() { printf '[bench setup] error: %s\n' "$*" >&2; exit 1; }
PIP=(-m pip install -q --disable-pip-version-check --no-input)

# ---- the native CPython: an explicit one, else the one runtime/build.sh built (cached)
NATIVE=${NATIVE_PYTHON:-}
if [ -z "$NATIVE" ]; then
    # Look first, so that a concurrent runtime build (which holds the build lock) is not waited on.
    for p in "$CACHE"/native/cpython-3.13.5-*/bin/python3.13; do
        [ -x "$p" ] && NATIVE=$p
    done
fi
if [ -z "$NATIVE" ]; then
    log "no native CPython under $CACHE/native: building it with runtime/build.sh --native (about 5 minutes)"
    prefix=$(bash "$REPO/runtime/build.sh" --native | tail -n 1) || die "runtime/build.sh --native failed"
    NATIVE=$prefix/bin/python3.13
fi
"$NATIVE" -c 'import sys, ssl; sys.exit(sys.version_info < (3, 12))' 2>/dev/null \
    || die "$NATIVE is not a CPython >= 3.12 with ssl"
NATIVE_ID=$("$NATIVE" -c 'import sys; print(sys.version.split()[0], sys.prefix)' | sha256sum | cut -c1-12)

# mkvenv NAME: a venv of $NATIVE, recreated when the native CPython changes
mkvenv() {
    local v=$B/$1
    if [ "$(cat "$v/.native" 2>/dev/null)" != "$NATIVE_ID" ]; then
        log "creating $v"
        rm -rf "$v"
        "$NATIVE" -m venv "$v" || return 1
        echo "$NATIVE_ID" > "$v/.native"
    fi
}

# ---- goeryx: the wheel from dist/
WHEEL=${GOERYX_WHEEL:-}
if [ -z "$WHEEL" ]; then
    WHEEL=$(ls -t "$REPO"/dist/goeryx-*_"$(uname -m)".whl 2>/dev/null | head -1)  # not the aarch64 one
fi
[ -f "$WHEEL" ] || die "no goeryx wheel in dist/ (run ./build.sh first)"
mkvenv venv-goeryx || die "cannot create venv-goeryx"
want=$(sha256sum "$WHEEL" | cut -c1-64)
if [ "$(cat "$B/venv-goeryx/.wheel" 2>/dev/null)" != "$want" ]; then
    log "installing $(basename "$WHEEL") into venv-goeryx"
    "$B/venv-goeryx/bin/python" "${PIP[@]}" --no-deps --force-reinstall "$WHEEL" || die "cannot install $WHEEL"
    echo "$want" > "$B/venv-goeryx/.wheel"
fi
"$B/venv-goeryx/bin/python" -c 'import eryx' || die "goeryx does not import"

# ---- pyeryx: pinned, hash-checked; failure is reported, not fatal
PYERYX_ERROR=
req=$HERE/requirements-pyeryx.txt
want=$(sha256sum "$req" | cut -c1-64)
# A changed requirements file gets a new venv: pip does not re-check the hash of an installed package.
[ "$(cat "$B/venv-pyeryx/.req" 2>/dev/null)" = "$want" ] || rm -rf "$B/venv-pyeryx"
if ! mkvenv venv-pyeryx; then
    PYERYX_ERROR="cannot create a venv of $NATIVE"
elif [ "$(cat "$B/venv-pyeryx/.req" 2>/dev/null)" != "$want" ]; then
    log "installing pyeryx into venv-pyeryx (hash-checked)"
    if out=$("$B/venv-pyeryx/bin/python" "${PIP[@]}" --require-hashes --only-binary=:all: -r "$req" 2>&1); then
        echo "$want" > "$B/venv-pyeryx/.req"
    else
        PYERYX_ERROR="pip install --require-hashes -r bench/requirements-pyeryx.txt failed: $(echo "$out" | grep -iE 'error|hash' | head -3 | tr '\n' ' ')"
    fi
fi
if [ -z "$PYERYX_ERROR" ]; then
    if ! out=$("$B/venv-pyeryx/bin/python" -c 'import eryx, sys; sys.exit(0 if hasattr(eryx, "Sandbox") else "no eryx.Sandbox")' 2>&1); then
        PYERYX_ERROR="pyeryx does not import: $(echo "$out" | tail -1)"
    fi
fi

# ---- matplotlib for the plot; failure is reported, not fatal
PLOT_ERROR=
req=$HERE/requirements-plot.txt
want=$(sha256sum "$req" | cut -c1-64)
# A changed requirements file gets a new venv: pip does not re-check the hash of an installed package.
[ "$(cat "$B/venv-plot/.req" 2>/dev/null)" = "$want" ] || rm -rf "$B/venv-plot"
if ! mkvenv venv-plot; then
    PLOT_ERROR="cannot create a venv of $NATIVE"
elif [ "$(cat "$B/venv-plot/.req" 2>/dev/null)" != "$want" ]; then
    log "installing matplotlib into venv-plot (hash-checked)"
    if out=$("$B/venv-plot/bin/python" "${PIP[@]}" --require-hashes --only-binary=:all: -r "$req" 2>&1); then
        echo "$want" > "$B/venv-plot/.req"
    else
        PLOT_ERROR="pip install --require-hashes -r bench/requirements-plot.txt failed: $(echo "$out" | grep -iE 'error|hash' | head -3 | tr '\n' ' ')"
    fi
fi

echo "NATIVE=$NATIVE"
echo "GOERYX_PY=$B/venv-goeryx/bin/python"
echo "GOERYX_WHEEL=$WHEEL"
echo "PYERYX_PY=$B/venv-pyeryx/bin/python"
echo "PYERYX_ERROR=$PYERYX_ERROR"
echo "PLOT_PY=$B/venv-plot/bin/python"
echo "PLOT_ERROR=$PLOT_ERROR"
