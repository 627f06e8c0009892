#!/bin/sh
# Rebuilds _dlhello.cpython-313-wasm32-wasi.so from _dlhello.c (committed, so that the tests
# need no toolchain) with the runtime build's clang and CPython headers (runtime/build.sh's
# cache): TC = the toolchain directory, CPY = the CPython wasm build directory.
set -eu
cd "$(dirname "$0")"
C=${GOERYX_CACHE_DIR:-$HOME/.cache/goeryx}/wasi
: "${TC:=$(ls -d "$C"/toolchain-* | head -1)}"
: "${CPY:=$(ls -d "$C"/cpython-* | head -1)}"
"$TC/bin/clang" -O2 -fPIC -shared -nostartfiles -nodefaultlibs -Wl,--no-entry -Wl,--allow-undefined \
  -Wl,--export-if-defined=__wasm_call_ctors -I"$CPY/build" -I"$(echo "$CPY"/Python-*/Include)" \
  _dlhello.c -o _dlhello.cpython-313-wasm32-wasi.so 2>&1 | grep -v 'not yet stable' || true
