#!/usr/bin/env bash
# goeryx: the one build entry point.
#
#   ./build.sh         install what is missing, build the guest runtime (cached under
#                      $GOERYX_CACHE_DIR), build dist/goeryx-*.whl, install it into .venv/ and
#                      run a smoke test outside the source tree; build the WASI extension
#                      wheels of runtime/wheels/ into dist/wasi/
#   ./build.sh test    run the Go and Python test suites against that build, and build the
#                      user documentation (mkdocs build --strict) into build/site
#   ./build.sh sdist   also make the source distribution dist/goeryx-*.tar.gz
#   ./build.sh aarch64 cross-build the manylinux aarch64 wheel into dist/ and run it under
#                      qemu-user (Debian's qemu-user and mmdebstrap, installed when missing)
#   ./build.sh dist    all of them: this machine's wheel, the aarch64 wheel and the sdist
#
# The wheel is a manylinux wheel: its extension is linked by zig's C compiler (from PyPI)
# against glibc $GOERYX_GLIBC (default 2.17), and auditwheel checks it and sets the tag.
# GOERYX_ZIG=0 links with the system's C compiler instead (the wheel then needs this machine's
# glibc, whatever auditwheel finds). The wheel carries the guest precompiled for this CPU
# architecture (setup.py; GOERYX_PRECOMPILE=0 leaves it out).
#
# Everything downloaded is pinned and checksummed; a second run reuses the caches.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")" && pwd)
cd "$ROOT"
export GOERYX_CACHE_DIR=${GOERYX_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/goeryx}
PYTHON=${PYTHON:-python3}
VENV=$ROOT/.venv

log() { printf '== %s %s\n' "$(date +%T)" "$*" >&2; }
die() { printf 'build.sh: %s\n' "$*" >&2; exit 1; }

check_tools() {
    command -v go >/dev/null || die "Go ≥ 1.26 is required (https://go.dev/dl/)"
    local gov; gov=$(go env GOVERSION); gov=${gov#go}
    [ "$(printf '%s\n1.26\n' "$gov" | sort -V | head -1)" = 1.26 ] || die "Go ≥ 1.26 is required, found $gov"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "Python ≥ 3.11 is required ($PYTHON)"
}

# .venv: the host Python environment the wheel is installed into and the tests run in.
setup_venv() {
    [ -x "$VENV/bin/python" ] || { log "creating .venv"; "$PYTHON" -m venv "$VENV"; }
    local stamp="$VENV/.requirements.sha256" want
    want=$(sha256sum requirements-dev.txt | cut -d' ' -f1)
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        log "installing test and build tools into .venv"
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r requirements-dev.txt
        echo "$want" > "$stamp"
    fi
}

# The guest runtime (runtime/build.sh prints its directory on the last line).
build_runtime() {
    log "guest runtime"
    RUNTIME_DIR=$(bash runtime/build.sh | tail -n 1)
    [ -f "$RUNTIME_DIR/manifest.json" ] || die "runtime/build.sh did not produce a runtime ($RUNTIME_DIR)"
    mkdir -p build
    echo "$RUNTIME_DIR" > build/runtime-dir
    rm -rf python/eryx/_runtime
    mkdir -p python/eryx/_runtime
    cp "$RUNTIME_DIR"/manifest.json "$RUNTIME_DIR"/python.wasm "$RUNTIME_DIR"/stdlib.zip python/eryx/_runtime/
}

# The patched wazero (third_party/wazero/PATCH.md) for every Go build below.
use_patched_wazero() {
    local setting
    setting=$(bash third_party/wazero/apply.sh | tail -n 1)
    export "${setting?}"
}

# The C compiler of the extension: a wrapper around zig cc for glibc $GOERYX_GLIBC (a single
# executable, as setuptools-golang runs `go env CC` as one).
zig_cc() {
    local cc=$ROOT/build/zig-cc arch=${1:-$(uname -m)} flags=${2:-} zig
    rm -f "$cc"-*
    # The zig binary itself: pip's isolated build environment hides .venv's packages from
    # Python, so `python -m ziglang` would not find it there.
    zig=$("$VENV/bin/python" -c 'import os, ziglang; print(os.path.join(os.path.dirname(ziglang.__file__), "zig"))')
    [ -x "$zig" ] || die "ziglang has no zig binary ($zig)"
    mkdir -p build
    # It drops setuptools-golang's -Wl,--unresolved-symbols=ignore-all, which zig's linker does
    # not know: it leaves the undefined symbols of a shared library (Python's) to the loader
    # anyway. -O2 (Go's default CGO_CFLAGS and CGO_LDFLAGS, which setuptools-golang replaces):
    # without it zig cc compiles with UBSan and links its runtime, whose 256 KiB of
    # thread-local storage a dlopened library cannot have.
    printf '#!/bin/sh\nfor a do shift; [ "$a" = -Wl,--unresolved-symbols=ignore-all ] || set -- "$@" "$a"; done\nexec "%s" cc -target %s-linux-gnu.%s -O2 -fno-sanitize=all %s "$@"\n' \
        "$zig" "$arch" "${GOERYX_GLIBC:-2.17}" "$flags" > "$cc.tmp"
    chmod +x "$cc.tmp"
    # Named by its content: Go's build cache knows a C compiler by its path and version, not by
    # what a wrapper passes it.
    local named; named=$cc-$(sha256sum "$cc.tmp" | cut -c1-12)
    mv "$cc.tmp" "$named"
    echo "$named"
}

# The wheels of this machine's architecture in dist/ (dist/ may hold the aarch64 one too).
host_wheels() { ls dist/goeryx-*_"$(uname -m)".whl 2>/dev/null; }

build_wheel() {
    log "wheel"
    rm -rf dist/raw build/wheel-src
    rm -f dist/goeryx-*_"$(uname -m)".whl
    # setuptools-golang copies the whole source tree into a temporary GOPATH: give it only
    # what the wheel is made of.
    mkdir -p build/wheel-src
    cp -r go.mod go.sum setup.py pyproject.toml README.md LICENSE goeryx cbridge python build/wheel-src/
    local cc=${CC:-}
    if [ "${GOERYX_ZIG:-1}" != 0 ]; then
        cc=$(zig_cc)
        export ZIG_GLOBAL_CACHE_DIR=${ZIG_GLOBAL_CACHE_DIR:-$GOERYX_CACHE_DIR/zig}
    fi
    (cd build/wheel-src && if [ -n "$cc" ]; then export CC=$cc; fi &&
        SETUPTOOLS_GOLANG_GOPATH=$(go env GOPATH) "$VENV/bin/python" -m pip wheel -q --no-deps --disable-pip-version-check -w "$ROOT/dist/raw" .)
    local raw; raw=$(ls dist/raw/goeryx-*.whl) || die "no wheel was built"
    # auditwheel: the most compatible manylinux tag the extension's symbol versions allow
    # (it has no library to graft: only glibc's).
    PATH="$VENV/bin:$PATH" "$VENV/bin/auditwheel" repair -w dist "$raw" > build/auditwheel.log 2>&1 \
        || { cat build/auditwheel.log; die "auditwheel repair failed"; }
    rm -rf dist/raw
    "$VENV/bin/auditwheel" show $(host_wheels) 2>/dev/null | tr '\n' ' ' | sed 's/  */ /g' | fold -s -w 100 >&2; echo >&2
    host_wheels | grep -q manylinux || die "auditwheel made no manylinux wheel (build/auditwheel.log)"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps $(host_wheels)
}

# ---- the aarch64 wheel, cross-built on this machine (README, "Wheels for aarch64")
#
# Go cross-compiles the bridge; zig's C compiler links it for aarch64 glibc $GOERYX_GLIBC. The
# guest's compiled code is made by the extension itself, as for this machine's wheel, but
# running under qemu-user with an aarch64 CPython: wazero compiles for the architecture it runs
# on (its compiler back end is chosen by GOARCH at build time), so arm64 code can only come
# from an arm64 process. That CPython, and the aarch64 pyconfig.h cgo needs, come from Debian's
# arm64 packages unpacked into a tree (mmdebstrap; apt checks their signatures and hashes),
# cached under $GOERYX_CACHE_DIR/sysroot.
AARCH64_SUITE=bookworm
AARCH64_PACKAGES=python3.11,libpython3.11-dev

# need_debs CMD:PACKAGE...: installs the Debian packages whose command is missing (as root),
# else stops with the apt-get command to run.
need_debs() {
    local missing=() pair
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
    done
    [ ${#missing[@]} = 0 ] && return
    [ "$(id -u)" = 0 ] || die "missing Debian packages: apt-get install ${missing[*]}"
    log "installing ${missing[*]}"
    { apt-get install -y -q "${missing[@]}" || { apt-get update -q && apt-get install -y -q "${missing[@]}"; }; } >&2 \
        || die "apt-get install ${missing[*]} failed"
}

# The arm64 tree (its path printed), made once per suite and package list.
aarch64_sysroot() {
    local key dir
    key=$(printf '%s %s\n' "$AARCH64_SUITE" "$AARCH64_PACKAGES" | sha256sum | cut -c1-12)
    dir=$GOERYX_CACHE_DIR/sysroot/arm64-$AARCH64_SUITE-$key
    if [ ! -x "$dir/usr/bin/python3.11" ]; then
        log "aarch64 CPython: Debian $AARCH64_SUITE arm64 packages into $dir"
        rm -rf "$dir.tmp"
        mkdir -p "$(dirname "$dir")"
        mmdebstrap --quiet --arch=arm64 --variant=extract --include="$AARCH64_PACKAGES" \
            "$AARCH64_SUITE" "$dir.tmp" >&2 || die "mmdebstrap of the arm64 tree failed"
        rm -rf "$dir"
        mv "$dir.tmp" "$dir"
    fi
    echo "$dir"
}

# The aarch64 CPython as a command: qemu-user finds the tree's loader and libraries by -L.
aarch64_python() { echo "qemu-aarch64 -L $1 $1/usr/bin/python3.11"; }

build_wheel_aarch64() {
    log "aarch64 wheel"
    need_debs qemu-aarch64:qemu-user mmdebstrap:mmdebstrap
    local sysroot cc py raw
    sysroot=$(aarch64_sysroot)
    py=$(aarch64_python "$sysroot")
    rm -rf dist/raw-aarch64 build/wheel-src-aarch64
    rm -f dist/goeryx-*_aarch64.whl
    mkdir -p build/wheel-src-aarch64
    cp -r go.mod go.sum setup.py pyproject.toml README.md LICENSE goeryx cbridge python build/wheel-src-aarch64/
    # This machine's pyconfig.h includes the target's (Debian's multiarch layout): the tree's
    # include directory is searched after zig's own C library headers.
    cc=$(zig_cc aarch64 "-idirafter $sysroot/usr/include")
    export ZIG_GLOBAL_CACHE_DIR=${ZIG_GLOBAL_CACHE_DIR:-$GOERYX_CACHE_DIR/zig}
    (cd build/wheel-src-aarch64 && export CC=$cc GOARCH=arm64 CGO_ENABLED=1 GOERYX_PRECOMPILE_PYTHON="$py" &&
        SETUPTOOLS_GOLANG_GOPATH=$(go env GOPATH) "$VENV/bin/python" -m pip wheel -q --no-deps \
            --disable-pip-version-check -w "$ROOT/dist/raw-aarch64" .)
    raw=$(ls dist/raw-aarch64/goeryx-*.whl) || die "no aarch64 wheel was built"
    PATH="$VENV/bin:$PATH" "$VENV/bin/auditwheel" repair -w dist "$raw" \
        > build/auditwheel-aarch64.log 2>&1 \
        || { cat build/auditwheel-aarch64.log; die "auditwheel repair of the aarch64 wheel failed"; }
    rm -rf dist/raw-aarch64
    "$VENV/bin/auditwheel" show dist/goeryx-*_aarch64.whl 2>/dev/null | tr '\n' ' ' | sed 's/  */ /g' | fold -s -w 100 >&2; echo >&2
    ls dist/goeryx-*manylinux*_aarch64.whl >/dev/null 2>&1 || die "auditwheel made no manylinux aarch64 wheel"
    smoke_aarch64 "$py"
}

# The aarch64 wheel unpacked into a fresh directory and run by the aarch64 CPython.
smoke_aarch64() {
    log "aarch64 smoke test (qemu-user)"
    local dir; dir=$(mktemp -d)
    "$VENV/bin/python" -m zipfile -e dist/goeryx-*_aarch64.whl "$dir/site"
    (cd "$dir" && PYTHONPATH=$dir/site GOERYX_CACHE_DIR=$dir/cache $1 -c "import eryx; print(eryx.Sandbox().execute('print(6*7)').stdout)")
    rm -rf "$dir"
}

build_sdist() {
    log "sdist"
    rm -rf build/sdist-src dist/goeryx-*.tar.gz
    mkdir -p build/sdist-src/python/eryx
    # The tracked sources (no build outputs, no venv) and the guest runtime build_runtime copied.
    git ls-files -z | grep -zv '^\(tests\|bench\|runtime\|docs\|third_party\|\.ci\)/' \
        | xargs -0 cp --parents -t build/sdist-src
    cp -r python/eryx/_runtime build/sdist-src/python/eryx/
    rm -rf build/sdist-src/python/eryx/_runtime/precompiled
    "$VENV/bin/python" -m build -q --sdist -o dist build/sdist-src > build/sdist.log 2>&1 \
        || { cat build/sdist.log; die "the sdist failed"; }
    ls dist/goeryx-*.tar.gz >&2
}

# The WASI extension wheels (runtime/wheels/: markupsafe, msgpack, PyYAML cross-compiled as
# WebAssembly side modules) into dist/wasi/, for SandboxFactory(packages=...); cached.
build_wasi_wheels() {
    log "WASI extension wheels"
    rm -rf dist/wasi
    bash runtime/build.sh --wheels "$ROOT/dist/wasi" > /dev/null
    ls dist/wasi/*.whl >&2
}

smoke() {
    log "smoke test (outside the source tree)"
    (cd "${TMPDIR:-/tmp}" && "$VENV/bin/python" -c "import eryx; print(eryx.Sandbox().execute('print(6*7)').stdout)")
}

# Every Go fuzz target (func FuzzXxx) for a few seconds each: their seed corpora already ran
# as ordinary tests above; this looks a little further. Longer runs: SECURITY.md.
fuzz_briefly() {
    local fuzztime=${GOERYX_FUZZTIME:-5s} file pkg target
    [ "$fuzztime" = 0 ] && return
    log "Go fuzz targets, $fuzztime each"
    while IFS=: read -r file target; do
        pkg=./$(dirname "$file")
        target=${target#func }; target=${target%%(*}
        if ! go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg" > build/fuzz.log 2>&1; then
            cat build/fuzz.log
            die "fuzz target $target in $pkg failed (the failing input is under $pkg/testdata/fuzz/$target)"
        fi
    done < <(grep -rHo --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*(' goeryx)
}

# The user documentation (mkdocs.yml, docs/) into build/site, warnings as errors. Offline apart
# from PyPI: the theme loads no web fonts and no plugin downloads anything.
build_docs() {
    log "docs (mkdocs build --strict)"
    NO_MKDOCS_2_WARNING=1 "$VENV/bin/mkdocs" build --strict --quiet --site-dir "$ROOT/build/site"
}

run_tests() {
    [ -f build/runtime-dir ] || die "run ./build.sh first"
    export GOERYX_RUNTIME_DIR; GOERYX_RUNTIME_DIR=$(cat build/runtime-dir)
    build_docs
    log "Go tests"
    go test ./goeryx/... ./runtime/...
    fuzz_briefly
    log "Python tests"
    "$VENV/bin/python" -m pytest tests
}

case "${1:-build}" in
    build) check_tools; setup_venv; build_runtime; use_patched_wazero; build_wheel; build_wasi_wheels; smoke ;;
    test) check_tools; setup_venv; use_patched_wazero; run_tests ;;
    sdist) check_tools; setup_venv; build_runtime; build_sdist ;;
    aarch64) check_tools; setup_venv; build_runtime; use_patched_wazero; build_wheel_aarch64 ;;
    # (for tests/test_wheel_aarch64.py: the aarch64 CPython command, its tree made if missing)
    python-aarch64) need_debs qemu-aarch64:qemu-user mmdebstrap:mmdebstrap; aarch64_python "$(aarch64_sysroot)" ;;
    dist) check_tools; setup_venv; build_runtime; use_patched_wazero; build_wheel; smoke; build_wheel_aarch64; build_sdist ;;
    *) die "usage: ./build.sh [build|test|sdist|aarch64|dist]" ;;
esac
