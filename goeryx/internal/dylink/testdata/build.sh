#!/bin/sh
# Rebuilds main.wasm and side.so from main.c and side.c (committed, so that the tests need no
# toolchain). CLANG: clang for wasm32-wasip1 with a wasi-libc sysroot, e.g. the runtime build's
# ~/.cache/goeryx/wasi/toolchain-*/bin/clang.
set -eu
cd "$(dirname "$0")"
: "${CLANG:=$(ls -d "$HOME"/.cache/goeryx/wasi/toolchain-*/bin/clang | head -1)}"
"$CLANG" -O2 -fvisibility=default -mexec-model=reactor -Wl,--export-dynamic -Wl,--export-table \
  -Wl,--growable-table -Wl,--export=__stack_pointer -Wl,--export=malloc main.c -o main.wasm
"$CLANG" -O2 -fPIC -fvisibility=default -shared -nostartfiles -nodefaultlibs -Wl,--no-entry \
  -Wl,--allow-undefined -Wl,--export-if-defined=__wasm_call_ctors side.c -o side.so 2>&1 | grep -v 'not yet stable' || true
