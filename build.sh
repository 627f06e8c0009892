#!/usr/bin/env bash
# goeryx: the one build entry point.
#
#   ./build.sh         install what is missing, build the guest runtime (cached under
#                      $GOERYX_CACHE_DIR), build dist/goeryx-*.whl, install it into .venv/ and
#                      run a smoke test outside the source tree
#   ./build.sh test    run the Go and Python test suites against that build, and build the
#                      user documentation (mkdocs build --strict) into build/site
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

build_wheel() {
    log "wheel"
    rm -rf dist build/wheel-src
    # setuptools-golang copies the whole source tree into a temporary GOPATH: give it only
    # what the wheel is made of.
    mkdir -p build/wheel-src
    cp -r go.mod go.sum setup.py pyproject.toml README.md goeryx cbridge python build/wheel-src/
    (cd build/wheel-src && SETUPTOOLS_GOLANG_GOPATH=$(go env GOPATH) \
        "$VENV/bin/python" -m pip wheel -q --no-deps --disable-pip-version-check -w "$ROOT/dist" .)
    ls dist/goeryx-*.whl >/dev/null || die "no wheel was built"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps dist/goeryx-*.whl
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
    build) check_tools; setup_venv; build_runtime; use_patched_wazero; build_wheel; smoke ;;
    test) check_tools; setup_venv; use_patched_wazero; run_tests ;;
    *) die "usage: ./build.sh [build|test]" ;;
esac
