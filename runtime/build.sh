#!/usr/bin/env bash
# runtime/build.sh: build the goeryx guest runtime (CPython 3.13.5 for wasm32-wasip1 as a WASI
# reactor implementing docs/ABI.md) and print the absolute path of the finished runtime directory
# as the last line of stdout. Progress goes to stderr; logs stay in the build trees.
#
#   bash runtime/build.sh            build (or reuse) the runtime, print its directory
#   bash runtime/build.sh --native   build (or reuse) the native CPython 3.13.5, print its prefix
#   bash runtime/build.sh --recipe   print the recipe hash only
#   bash runtime/build.sh --wheels DIR   build (or reuse) the WASI extension wheels of
#                                    runtime/wheels/ (pins there) into DIR, for the runtime
#                                    that a plain run builds (which must exist)
#
# Everything is cached under $CACHE = ${GOERYX_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/goeryx}:
#   downloads/                pinned inputs (runtime/pins.txt), sha256-checked
#   native/cpython-3.13.5-H/  native CPython (build python for the cross build, benchmark baseline)
#   wasi/toolchain-H/         wasi-libc sysroot (unpacked .deb) + clang wrappers ("fake WASI SDK")
#   wasi/deps-H/              zlib, bzip2, liblzma, sqlite3 for wasm32-wasip1
#   wasi/cpython-H/           CPython wasm build tree (objects, libpython3.13.a)
#   runtime/RECIPE/           the artifact: manifest.json, python.wasm, stdlib.zip
#   wheels/H/                 WASI extension wheels (--wheels)
# Each stage directory is named by a hash of what determines it and is written atomically
# (built under a temporary name, then renamed). Nothing is written outside $CACHE, /tmp and the
# apt system packages.
#
# Knobs (part of the recipe hash; the defaults are the measured choice, see runtime/README.md):
#   ERYX_OPT        C optimisation flags for CPython          (default below)
#   ERYX_LTO        "thin" or "no"                            (default below)
#   ERYX_WASM_OPT   wasm-opt level ("" = not run, e.g. "-O3")  (default below)
#   ERYX_PYMALLOC   "yes" or "no": build with pymalloc (CPython's WASI default is no)
#   ERYX_ALLOCATOR  "default" (pymalloc if built, else malloc) or "mimalloc" (selected by eryx_init)
#   ERYX_STDLIB     "bytecode" or "source"
#   JOBS            parallel make jobs (default: nproc; not part of the hash)
set -euo pipefail
umask 022

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
ABI_DIR=$REPO/goeryx/internal/abi
PINS=$HERE/pins.txt
CACHE=${GOERYX_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/goeryx}
JOBS=${JOBS:-$(nproc)}
PYVER=3.13.5
PYMM=3.13
LLVM=/usr/lib/llvm-19/bin

ERYX_OPT=${ERYX_OPT:--O3}
ERYX_LTO=${ERYX_LTO:-no}
ERYX_WASM_OPT=${ERYX_WASM_OPT:--O3}
ERYX_PYMALLOC=${ERYX_PYMALLOC:-yes}
ERYX_ALLOCATOR=${ERYX_ALLOCATOR:-default}
ERYX_STDLIB=${ERYX_STDLIB:-bytecode}
# no: without patches/cpython-eval-tick.patch, the baseline of goeryx's
# TestTimeoutMechanismOverhead (GOERYX_BENCH_BASELINE_DIR); the engine runs it uninstrumented only
ERYX_EVAL_TICK=${ERYX_EVAL_TICK:-yes}
# no: python.wasm not linked for side modules (extension modules; runtime/eryx/reactor.mk), the
# baseline of the cost measurement in runtime/README.md
ERYX_DYLINK=${ERYX_DYLINK:-yes}
ERYX_MAX_MEMORY=4294967296
DEPS_OPT="-O2"

MODE=build
case "${1:-}" in
  "") ;;
  --native) MODE=native ;;
  --recipe) MODE=recipe ;;
  --wheels) MODE=wheels; WHEELS_OUT=${2:?--wheels needs an output directory} ;;
  *) echo "usage: $0 [--native|--recipe|--wheels DIR]" >&2; exit 2 ;;
esac

T0=$SECONDS
log() { echo "[runtime $(date +%T)] $*" >&2; }
die() { echo "[runtime] error: $*" >&2; exit 1; }
sha() { sha256sum | cut -c1-16; }
# run CMD... with output to LOGFILE; on failure show its tail
logged() {
  local logf=$1; shift
  if ! "$@" >>"$logf" 2>&1; then
    echo "[runtime] command failed: $* (log: $logf)" >&2
    tail -n 40 "$logf" >&2
    return 1
  fi
}

# ------------------------------------------------------------------------------- recipe hash
[ -f "$ABI_DIR/eryx_abi.h" ] || die "missing $ABI_DIR/eryx_abi.h"
KNOBS="opt=$ERYX_OPT lto=$ERYX_LTO wasm_opt=$ERYX_WASM_OPT pymalloc=$ERYX_PYMALLOC allocator=$ERYX_ALLOCATOR stdlib=$ERYX_STDLIB max_memory=$ERYX_MAX_MEMORY deps_opt=$DEPS_OPT eval_tick=$ERYX_EVAL_TICK dylink=$ERYX_DYLINK"
TOOL_PKGS=(clang-19 lld-19 llvm-19 libclang-rt-19-dev-wasm32 binaryen)
recipe() {   # everything that determines the artifact, hashed
  { echo "$KNOBS"
    for p in "${TOOL_PKGS[@]}"; do echo "$p=$(dpkg-query -W -f='${Version}' "$p" 2>/dev/null || true)"; done
    for f in "$HERE/build.sh" "$PINS" "$HERE/mkstdlib.py" "$HERE"/eryx/* "$HERE"/patches/*.patch "$ABI_DIR/eryx_abi.h"; do
      echo "== ${f#"$REPO"/}"; cat "$f"; done; } | sha256sum | cut -c1-24
}
RECIPE=$(recipe)
if [ "$MODE" = recipe ]; then echo "$RECIPE"; exit 0; fi
OUT=$CACHE/runtime/$RECIPE
if [ "$MODE" = build ] && [ -f "$OUT/manifest.json" ]; then
  log "cached runtime $OUT"
  echo "$OUT"; exit 0
fi

mkdir -p "$CACHE"/{downloads,native,wasi,runtime}
exec 9>"$CACHE/.build.lock"
flock 9
if [ "$MODE" = build ] && [ -f "$OUT/manifest.json" ]; then   # built by a concurrent run
  echo "$OUT"; exit 0
fi

# ------------------------------------------------------------------------------- 0. packages
APT_PKGS=("${TOOL_PKGS[@]}"
          gcc make patch pkg-config xz-utils curl ca-certificates dpkg-dev tcl
          libssl-dev zlib1g-dev libffi-dev libsqlite3-dev libbz2-dev liblzma-dev
          libreadline-dev libncurses-dev libgdbm-dev libgdbm-compat-dev uuid-dev)
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 || true
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  RECIPE=$(recipe)   # the toolchain versions are part of it
  OUT=$CACHE/runtime/$RECIPE
  if [ "$MODE" = build ] && [ -f "$OUT/manifest.json" ]; then echo "$OUT"; exit 0; fi
fi

# ------------------------------------------------------------------------------- 1. pinned inputs
# A private apt configuration (inside $CACHE) with deb-src and trixie entries, pointing at the
# mirror the machine's own apt uses; the system's apt sources are not touched.
APT_DIR=$CACHE/apt
APTO=(-o "Dir::Etc::SourceList=$APT_DIR/sources.list" -o "Dir::Etc::SourceParts=$APT_DIR/parts"
      -o "Dir::State::Lists=$APT_DIR/lists" -o "Dir::Cache=$APT_DIR/cache"
      -o "APT::Get::List-Cleanup=0" -o "Acquire::Languages=none" -o "APT::Sandbox::User=root")
apt_private() {   # once per build run (fetch runs in subshells: the marker is a file)
  [ "$(cat "$APT_DIR/.updated-by" 2>/dev/null)" = "$$" ] && return 0
  local mirror
  mirror=$(grep -hoE '^(URIs:|deb) *[a-z]+://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
           | grep -oE '[a-z]+://[^ ]+' | head -1 || true)
  [ -n "$mirror" ] || die "cannot find the Debian mirror in the apt sources"
  mkdir -p "$APT_DIR"/{lists/partial,parts,cache/archives/partial}
  local kr=/usr/share/keyrings/debian-archive-keyring.gpg
  { echo "deb-src [signed-by=$kr] $mirror trixie main"
    echo "deb-src [signed-by=$kr] $mirror bookworm main"
    echo "deb [arch=$(dpkg --print-architecture) signed-by=$kr] $mirror trixie main"; } > "$APT_DIR/sources.list"
  log "apt-get update (private source lists)"
  apt-get "${APTO[@]}" update -qq >&2
  echo "$$" > "$APT_DIR/.updated-by"
}

# fetch NAME [PINSFILE]: print the path of the verified download of pin NAME (downloading it
# if needed)
fetch() {
  local name=$1 pins=${2:-$PINS} kind pkg where file want dst tmp uri
  read -r kind pkg where file want < <(awk -v n="$name" '$1 !~ /^#/ && $2 == n' "$pins")
  [ -n "${want:-}" ] || die "no pin for $name"
  dst=$CACHE/downloads/$file
  if [ -f "$dst" ] && [ "$(sha256sum < "$dst" | cut -d' ' -f1)" = "$want" ]; then
    echo "$dst"; return 0
  fi
  tmp=$(mktemp -d "$CACHE/downloads/.tmp.XXXXXX")
  case $kind in
    debsrc|debbin)
      apt_private
      local listing
      if [ "$kind" = debsrc ]; then
        listing=$(cd "$tmp" && apt-get "${APTO[@]}" source --print-uris -d "$pkg/$where" 2>/dev/null || true)
      else
        listing=$(cd "$tmp" && apt-get "${APTO[@]}" download --print-uris "$pkg/$where" 2>/dev/null || true)
      fi
      uri=$(awk -v f="$file" '$2 == f { gsub("\047", "", $1); print $1 }' <<<"$listing" | head -1)
      if [ -z "$uri" ]; then
        # the suite moved to another revision: the pinned file lives in the same pool directory
        uri=$(awk 'NF >= 2 { gsub("\047", "", $1); print $1; exit }' <<<"$listing")
        [ -n "$uri" ] || die "apt knows no $pkg in $where"
        local enc=${file//+/%2b}
        uri="${uri%/*}/${enc//\~/%7e}"
      fi
      log "download $file"
      curl -fsSL --retry 3 -o "$tmp/$file" "$uri" || die "download failed: $uri"
      ;;
    pypi)
      log "pip download $pkg==$where"
      PIP_DISABLE_PIP_VERSION_CHECK=1 "$NATIVE_PY" -m pip download -q --no-deps --no-cache-dir \
        --only-binary=:all: -d "$tmp" "$pkg==$where" >&2 || die "pip download $pkg==$where failed"
      ;;
    pypi-any)   # the pure-Python wheel, whatever the build machine
      log "pip download $pkg==$where (pure wheel)"
      PIP_DISABLE_PIP_VERSION_CHECK=1 "$NATIVE_PY" -m pip download -q --no-deps --no-cache-dir \
        --only-binary=:all: --platform any --implementation py --python-version "$PYMM" \
        -d "$tmp" "$pkg==$where" >&2 || die "pip download $pkg==$where failed"
      ;;
    sdist)
      # pip prepares the sdist's metadata (its build backend, in an isolated environment)
      log "pip download $pkg==$where (sdist)"
      PIP_DISABLE_PIP_VERSION_CHECK=1 "$NATIVE_PY" -m pip download -q --no-deps --no-cache-dir \
        --no-binary "$pkg" -d "$tmp" "$pkg==$where" >&2 || die "pip download $pkg==$where failed"
      ;;
    *) die "bad pin kind $kind" ;;
  esac
  [ -f "$tmp/$file" ] || die "$file was not downloaded"
  local got; got=$(sha256sum < "$tmp/$file" | cut -d' ' -f1)
  [ "$got" = "$want" ] || die "sha256 mismatch for $file: got $got, pinned $want"
  mv "$tmp/$file" "$dst"; rm -rf "$tmp"
  echo "$dst"
}
pin_sha() { awk -v n="$1" '$1 !~ /^#/ && $2 == n { print $5 }' "$PINS"; }

PY_TAR=$(fetch python3.13)

# ------------------------------------------------------------------------------- 2. native CPython
# Complete native CPython (ssl, zlib, ctypes, sqlite3, bz2, lzma, readline, pip): the cross
# build's build-python, the benchmark baseline and a host Python for development.
NATIVE_CONFIGURE=(--with-ensurepip=install)
NATIVE_ID=$( { echo "native-v1 $(pin_sha python3.13)"; printf '%s\n' "${NATIVE_CONFIGURE[@]}"; } | sha | cut -c1-12)
NATIVE=$CACHE/native/cpython-$PYVER-$NATIVE_ID
NATIVE_PY=$NATIVE/bin/python$PYMM
if [ ! -x "$NATIVE_PY" ]; then
  log "building native CPython $PYVER -> $NATIVE"
  s=$SECONDS
  NB=$(mktemp -d "$CACHE/native/.build.XXXXXX")
  tar -C "$NB" -xf "$PY_TAR"
  mkdir "$NB/build"
  ( cd "$NB/build"
    logged "$NB/build.log" ../Python-$PYVER/configure --prefix="$NATIVE" "${NATIVE_CONFIGURE[@]}"
    logged "$NB/build.log" make -j"$JOBS"
    logged "$NB/build.log" make install DESTDIR="$NB/dest" )
  "$NB/dest$NATIVE/bin/python$PYMM" -c 'import ssl, zlib, ctypes, sqlite3, bz2, lzma, readline, _uuid, dbm.gnu, pip' \
    || die "native CPython is missing modules (log: $NB/build.log)"
  mv "$NB/dest$NATIVE" "$NATIVE"
  rm -rf "$NB"
  log "native CPython built in $((SECONDS - s))s"
fi
if [ "$MODE" = native ]; then echo "$NATIVE"; exit 0; fi

ZLIB_TAR=$(fetch zlib); BZIP2_TAR=$(fetch bzip2); XZ_TAR=$(fetch xz-utils); SQLITE_TAR=$(fetch sqlite3)
WASI_DEB=$(fetch wasi-libc); TZDATA_WHL=$(fetch tzdata); DILL_WHL=$(fetch dill)

# ------------------------------------------------------------------------------- 3. toolchain
# Debian's clang-19 + the wasi-libc .deb unpacked into a private sysroot, wrapped like a WASI SDK.
TC_ID=$(echo "toolchain-v1 $(pin_sha wasi-libc) $("$LLVM/clang" --version | head -1)" | sha | cut -c1-12)
TC=$CACHE/wasi/toolchain-$TC_ID
if [ ! -x "$TC/bin/clang" ]; then
  log "toolchain -> $TC"
  TT=$(mktemp -d "$CACHE/wasi/.toolchain.XXXXXX")
  dpkg -x "$WASI_DEB" "$TT/sysroot"
  # trixie's package has only */wasm32-wasi; clang-19 --target=wasm32-wasip1 looks for */wasm32-wasip1
  ln -s wasm32-wasi "$TT/sysroot/usr/lib/wasm32-wasip1"
  ln -s wasm32-wasi "$TT/sysroot/usr/include/wasm32-wasip1"
  # clang-19 wants lib/wasm32-unknown-wasip1/libclang_rt.builtins.a in its resource dir; Debian
  # ships lib/wasi/libclang_rt.builtins-wasm32.a: give clang a private resource dir.
  mkdir -p "$TT/clang-rd/lib/wasm32-unknown-wasip1" "$TT/bin"
  ln -s "$("$LLVM/clang" -print-resource-dir)/include" "$TT/clang-rd/include"
  ln -s "$("$LLVM/clang" -print-resource-dir)/lib/wasi/libclang_rt.builtins-wasm32.a" \
        "$TT/clang-rd/lib/wasm32-unknown-wasip1/libclang_rt.builtins.a"
  [ -e "$TT/clang-rd/lib/wasm32-unknown-wasip1/libclang_rt.builtins.a" ] || die "libclang_rt.builtins-wasm32.a not found"
  for x in clang clang++; do
    printf '#!/bin/sh\nexec %s/%s --target=wasm32-wasip1 --sysroot=%s/sysroot/usr -resource-dir=%s/clang-rd "$@"\n' \
      "$LLVM" "$x" "$TC" "$TC" > "$TT/bin/$x"
  done
  printf '#!/bin/sh\nexec %s/clang --target=wasm32-wasip1 --sysroot=%s/sysroot/usr -resource-dir=%s/clang-rd -E "$@"\n' \
    "$LLVM" "$TC" "$TC" > "$TT/bin/clang-cpp"
  chmod +x "$TT"/bin/*
  for x in llvm-ar llvm-ranlib llvm-nm llvm-strip wasm-ld; do ln -s "$LLVM/$x" "$TT/bin/$x"; done
  mv "$TT" "$TC"
fi
WCC=$TC/bin/clang
WAR=$TC/bin/llvm-ar
WRANLIB=$TC/bin/llvm-ranlib
export PKG_CONFIG_PATH="" PKG_CONFIG_LIBDIR="$TC/sysroot/usr/lib/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$TC/sysroot"

# ------------------------------------------------------------------------------- 4. wasm deps
DEPS_ID=$(echo "deps-v1 $TC_ID $DEPS_OPT $(pin_sha zlib) $(pin_sha bzip2) $(pin_sha xz-utils) $(pin_sha sqlite3)" | sha | cut -c1-12)
DEPS=$CACHE/wasi/deps-$DEPS_ID
SQLITE_DEFS=(-DSQLITE_OMIT_LOAD_EXTENSION -DSQLITE_THREADSAFE=0 -DSQLITE_OMIT_WAL -DSQLITE_MAX_MMAP_SIZE=0
             -DSQLITE_OMIT_SHARED_CACHE -DSQLITE_OMIT_POPEN
             -D_WASI_EMULATED_GETPID -D_WASI_EMULATED_SIGNAL -D_WASI_EMULATED_PROCESS_CLOCKS
             -D_WASI_EMULATED_MMAN "-DSQLITE_DEFAULT_UNIX_VFS=\"unix-none\"")
if [ ! -f "$DEPS/.done" ]; then
  log "wasm deps (zlib, bzip2, liblzma, sqlite3) -> $DEPS"
  s=$SECONDS
  DT=$(mktemp -d "$CACHE/wasi/.deps.XXXXXX")
  P=$DT/prefix; mkdir -p "$P/lib" "$P/include" "$DT/src"
  L=$DT/deps.log
  ( cd "$DT/src"
    tar xf "$ZLIB_TAR" && cd zlib-*/
    logged "$L" env CC="$WCC" AR="$WAR" RANLIB="$WRANLIB" CFLAGS="$DEPS_OPT" CHOST=wasm32-wasip1 ./configure --static --prefix="$P"
    logged "$L" make -j"$JOBS" libz.a
    logged "$L" make install )
  ( cd "$DT/src"
    tar xf "$BZIP2_TAR" && cd bzip2-1.0.8
    logged "$L" make -j"$JOBS" libbz2.a CC="$WCC" AR="$WAR" RANLIB="$WRANLIB" CFLAGS="$DEPS_OPT -D_FILE_OFFSET_BITS=64"
    cp libbz2.a "$P/lib/" && cp bzlib.h "$P/include/" && cp LICENSE "$DT/LICENSE.bzip2" )
  ( cd "$DT/src"
    tar xf "$XZ_TAR" && cd xz-5.8.1
    logged "$L" env CC="$WCC" AR="$WAR" RANLIB="$WRANLIB" CFLAGS="$DEPS_OPT" ./configure --host=wasm32-unknown-wasi \
      --prefix="$P" --disable-shared --enable-static --disable-threads --disable-xz --disable-xzdec \
      --disable-lzmadec --disable-lzmainfo --disable-lzma-links --disable-scripts --disable-doc \
      --disable-nls --disable-sandbox
    logged "$L" make -j"$JOBS" -C src/liblzma
    logged "$L" make -C src/liblzma install
    cp COPYING.0BSD "$DT/LICENSE.liblzma" )
  ( cd "$DT/src"
    tar xf "$SQLITE_TAR" && cd sqlite3-3.46.1 && mkdir bld && cd bld
    # native configure only to generate the amalgamation (needs tclsh)
    logged "$L" env -u PKG_CONFIG_LIBDIR -u PKG_CONFIG_SYSROOT_DIR ../configure --disable-tcl
    logged "$L" make sqlite3.c
    logged "$L" "$WCC" $DEPS_OPT -c sqlite3.c -o sqlite3-wasi.o "${SQLITE_DEFS[@]}"
    logged "$L" "$WAR" rcs "$P/lib/libsqlite3.a" sqlite3-wasi.o
    cp sqlite3.h sqlite3ext.h "$P/include/" )
  cp "$DT/src"/zlib-*/LICENSE "$DT/LICENSE.zlib" 2>/dev/null || sed -n '/Copyright/,/^\*\//p' "$DT/src"/zlib-*/zlib.h > "$DT/LICENSE.zlib"
  rm -rf "$DT/src"
  touch "$DT/.done"
  mv "$DT" "$DEPS"
  log "wasm deps built in $((SECONDS - s))s"
fi
D=$DEPS/prefix

# ------------------------------------------------------------------------------- 5. CPython for wasm
WASM_OPTFLAGS="-DNDEBUG -fwrapv $ERYX_OPT -Wall"
WASM_CONFIGURE=(--host=wasm32-wasip1 --build="$(uname -m)-pc-linux-gnu" --disable-test-modules
                --without-ensurepip --disable-ipv6)
[ "$ERYX_LTO" = thin ] && WASM_CONFIGURE+=(--with-lto=thin)
[ "$ERYX_PYMALLOC" = yes ] && WASM_CONFIGURE+=(--with-pymalloc)
SETUP_LOCAL="*static*
_sqlite3 _sqlite/blob.c _sqlite/connection.c _sqlite/cursor.c _sqlite/microprotocols.c _sqlite/module.c _sqlite/prepare_protocol.c _sqlite/row.c _sqlite/statement.c _sqlite/util.c -I\$(srcdir)/Modules/_sqlite -I$D/include -DPY_SQLITE_HAVE_SERIALIZE -L$D/lib -lsqlite3"
# (the cache path is left out of the key: same tree name, same sysconfigdata, wherever $CACHE is)
# the CPython patches (runtime/patches/*.patch, applied in name order with patch -p1) are part of
# the key: changing one rebuilds the CPython objects
CPY_PATCHES=("$HERE"/patches/*.patch)
case $ERYX_EVAL_TICK in
  yes) ;;
  no) kept=()
      for f in "${CPY_PATCHES[@]}"; do [ "${f##*/}" = cpython-eval-tick.patch ] || kept+=("$f"); done
      CPY_PATCHES=("${kept[@]}") ;;
  *) die "ERYX_EVAL_TICK must be yes or no" ;;
esac
CPY_ID=$( { echo "cpython-wasm-v3 $(pin_sha python3.13) $TC_ID $DEPS_ID $NATIVE_ID $WASM_OPTFLAGS"
            printf '%s\n' "${WASM_CONFIGURE[@]}" "${SETUP_LOCAL//"$CACHE"/@CACHE@}"
            for f in "${CPY_PATCHES[@]}"; do echo "== ${f##*/}"; cat "$f"; done; } | sha | cut -c1-12)
CPY=$CACHE/wasi/cpython-$CPY_ID
SRC=$CPY/Python-$PYVER
BLD=$CPY/build
MAKE_WASM=(make -C "$BLD" -f Makefile -f "$HERE/eryx/reactor.mk")
# __DATE__/__TIME__ (sys.version's build date) fixed to the release date of 3.13.5: same bytes
# from every build
export SOURCE_DATE_EPOCH=1749600000
if [ ! -f "$CPY/.done" ]; then
  log "CPython $PYVER for wasm32-wasip1 ($WASM_OPTFLAGS, lto=$ERYX_LTO, pymalloc=$ERYX_PYMALLOC) -> $CPY"
  s=$SECONDS
  # the tree is built in place (its paths end up in the Makefile), so a failed attempt is wiped;
  # configure is run by a relative path so that no cache path ends up in python.wasm (__FILE__
  # strings): the artifact is the same wherever $CACHE is
  rm -rf "$CPY"; mkdir -p "$BLD/Modules"
  tar -C "$CPY" -xf "$PY_TAR"
  for f in "${CPY_PATCHES[@]}"; do
    logged "$CPY/patch.log" patch -d "$SRC" -p1 --forward --no-backup-if-mismatch -i "$f" || die "patch ${f##*/} does not apply"
  done
  printf '%s\n' "$SETUP_LOCAL" > "$BLD/Modules/Setup.local"
  ( cd "$BLD"
    logged "$CPY/configure.log" env CONFIG_SITE="$SRC/Tools/wasm/config.site-wasm32-wasi" \
      CC="$WCC" CPP="$TC/bin/clang-cpp" CXX="$TC/bin/clang++" AR="$WAR" RANLIB="$WRANLIB" LLVM_AR="$WAR" \
      "../Python-$PYVER/configure" "${WASM_CONFIGURE[@]}" --with-build-python="$NATIVE_PY" \
      OPT="$WASM_OPTFLAGS" \
      ZLIB_CFLAGS="-I$D/include" ZLIB_LIBS="-L$D/lib -lz" \
      BZIP2_CFLAGS="-I$D/include" BZIP2_LIBS="-L$D/lib -lbz2" \
      LIBLZMA_CFLAGS="-I$D/include" LIBLZMA_LIBS="-L$D/lib -llzma" )
  logged "$CPY/make.log" env PATH="$TC/bin:$PATH" "${MAKE_WASM[@]}" -j"$JOBS" eryx-prereqs
  touch "$CPY/.done"
  log "CPython for wasm built in $((SECONDS - s))s"
fi

# ------------------------------------------------------------------------------- wheels
# The WASI extension wheels (runtime/wheels/build_wheels.py): cross-compiled with this
# toolchain against this CPython's headers, checked against the runtime's python.wasm.
if [ "$MODE" = wheels ]; then
  [ -f "$OUT/manifest.json" ] || die "the runtime $RECIPE is not built: run runtime/build.sh first"
  WPINS=$HERE/wheels/pins.txt
  WHEELS_ID=$( { echo "wheels-v1 $RECIPE $TC_ID $CPY_ID"; cat "$WPINS" "$HERE/wheels/build_wheels.py"; } | sha | cut -c1-12)
  WOUT=$CACHE/wheels/$WHEELS_ID
  if ! ls "$WOUT"/*.whl >/dev/null 2>&1; then
    log "WASI extension wheels -> $WOUT"
    s=$SECONDS
    WT=$(mktemp -d "$CACHE/.wheels.XXXXXX")
    trap 'rm -rf "$WT"' EXIT
    inputs=()
    while read -r kind pkg _; do
      case $kind in ''|\#*) continue ;; esac
      inputs+=(--input "$pkg=$(fetch "$pkg" "$WPINS")")
    done < "$WPINS"
    CYTHON_WHL=$(fetch Cython "$WPINS")
    mkdir -p "$WT/cython" "$WT/out"
    ( cd "$WT/cython" && "$NATIVE_PY" -m zipfile -e "$CYTHON_WHL" . )
    logged "$WT/wheels.log" "$NATIVE_PY" "$HERE/wheels/build_wheels.py" --cc "$WCC" \
      --cpython-include "$SRC/Include" --pyconfig-dir "$BLD" --python-wasm "$OUT/python.wasm" \
      --cython "$WT/cython" "${inputs[@]}" --work "$WT/work" --out "$WT/out"
    mkdir -p "$CACHE/wheels"
    rm -rf "$WOUT"; mv "$WT/out" "$WOUT"
    rm -rf "$WT"; trap - EXIT
    log "WASI extension wheels built in $((SECONDS - s))s"
  fi
  mkdir -p "$WHEELS_OUT"
  cp "$WOUT"/*.whl "$WHEELS_OUT"/
  ls "$WHEELS_OUT"/*.whl
  exit 0
fi

# ------------------------------------------------------------------------------- 6. the artifact
log "runtime $RECIPE"
AT=$(mktemp -d "$CACHE/runtime/.tmp.XXXXXX")
trap 'rm -rf "$AT"' EXIT
s=$SECONDS
ERYX_CFLAGS=""
case $ERYX_ALLOCATOR in
  default) ;;
  mimalloc) ERYX_CFLAGS="-DERYX_ALLOCATOR_MIMALLOC" ;;
  *) die "ERYX_ALLOCATOR must be default or mimalloc" ;;
esac
[ "$ERYX_EVAL_TICK" = no ] && ERYX_CFLAGS="$ERYX_CFLAGS -DERYX_NO_EVAL_TICK"
logged "$AT/link.log" env PATH="$TC/bin:$PATH" "${MAKE_WASM[@]}" ERYX_SRC="$HERE/eryx" ERYX_ABI="$ABI_DIR" ERYX_CFLAGS="$ERYX_CFLAGS" \
  ERYX_DYLINK="$ERYX_DYLINK" ERYX_OUT="$AT" ERYX_MAX_MEMORY="$ERYX_MAX_MEMORY" "$AT/python.wasm"
if [ -n "$ERYX_WASM_OPT" ]; then
  # feature flags: exactly what clang-19 emitted (target_features section)
  # -g keeps the name section (function names in traps)
  logged "$AT/link.log" wasm-opt "$ERYX_WASM_OPT" -g --detect-features "$AT/python.wasm" -o "$AT/python.opt.wasm"
  mv "$AT/python.opt.wasm" "$AT/python.wasm"
fi
log "python.wasm linked in $((SECONDS - s))s ($(stat -c %s "$AT/python.wasm") bytes)"

# imports must be exactly _eryx.{host_call,host_take,tick} + wasi_snapshot_preview1
"$NATIVE_PY" - "$AT/python.wasm" <<'EOF' || die "python.wasm has unexpected imports/exports"
import sys
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\0asm\1\0\0\0", "not a wasm module"
def uleb(b, i):
    r = s = 0
    while True:
        x = b[i]; i += 1; r |= (x & 0x7f) << s; s += 7
        if x < 0x80: return r, i
def name(b, i):
    n, i = uleb(b, i); return b[i:i+n].decode(), i + n
i, imports, exports = 8, [], []
while i < len(data):
    sid = data[i]; size, j = uleb(data, i + 1); end = j + size
    if sid == 2:
        n, j = uleb(data, j)
        for _ in range(n):
            m, j = name(data, j); f, j = name(data, j); kind = data[j]; j += 1
            imports.append((m, f))
            if kind == 0: _, j = uleb(data, j)
            elif kind == 1: j += 1; fl, j = uleb(data, j); _, j = uleb(data, j); j = uleb(data, j)[1] if fl & 1 else j
            elif kind == 2: fl, j = uleb(data, j); _, j = uleb(data, j); j = uleb(data, j)[1] if fl & 1 else j
            elif kind == 3: j += 2
    elif sid == 7:
        n, j = uleb(data, j)
        for _ in range(n):
            f, j = name(data, j); j += 1; _, j = uleb(data, j); exports.append(f)
    i = end
bad = [x for x in imports if x[0] not in ("wasi_snapshot_preview1", "_eryx")]
eryx = sorted(f for m, f in imports if m == "_eryx")
need = {"memory", "_initialize", "eryx_init", "eryx_boot", "eryx_call", "eryx_interrupt",
        "eryx_alloc", "eryx_free", "eryx_tick_anchor", "eryx_reset_preopens"}
assert not bad, f"unexpected imports {bad}"
assert eryx == ["host_call", "host_take", "tick"], f"_eryx imports {eryx}"
assert need <= set(exports), f"missing exports {need - set(exports)}"
print(f"imports: {len(imports)} ({', '.join(eryx)} from _eryx), exports: {len(exports)}", file=sys.stderr)
EOF

# stdlib.zip (entries relative to the guest stdlib dir) + licences of what python.wasm contains
{ cat "$SRC/LICENSE"
  for c in zlib bzip2 liblzma; do
    printf '\n\n%s\n%s bundled in python.wasm\n%s\n\n' "$(printf '=%.0s' {1..78})" "$c" "$(printf '=%.0s' {1..78})"
    cat "$DEPS/LICENSE.$c"
  done
  printf '\n\n%s\nSQLite %s bundled in python.wasm: public domain (https://sqlite.org/copyright.html)\n' \
    "$(printf '=%.0s' {1..78})" "3.46.1"
} > "$AT/LICENSE.txt"
STDLIB_ARGS=()
[ "$ERYX_STDLIB" = source ] && STDLIB_ARGS+=(--with-source)
logged "$AT/link.log" "$NATIVE_PY" "$HERE/mkstdlib.py" --lib "$SRC/Lib" \
  --sysconfig "$BLD/$(cat "$BLD/pybuilddir.txt")" --wheel "$TZDATA_WHL" --wheel "$DILL_WHL" \
  --license "$AT/LICENSE.txt" --out "$AT/stdlib.zip" --sysconfig-replace "$CACHE=/build" "${STDLIB_ARGS[@]}"

"$NATIVE_PY" - "$AT" "$RECIPE" <<EOF
import hashlib, json, sys
at, recipe = sys.argv[1], sys.argv[2]
def h(p): return hashlib.sha256(open(f"{at}/{p}", "rb").read()).hexdigest()
pins = {}
for line in open("$PINS"):
    f = line.split()
    if f and not f[0].startswith("#"):
        pins[f[1]] = {"kind": f[0], "where": f[2], "file": f[3], "sha256": f[4]}
m = {
    "abi": $(awk '$1 == "#define" && $2 == "ERYX_ABI_VERSION" { print $3 }' "$ABI_DIR/eryx_abi.h"),
    "python_version": "$PYVER",
    "wasm": "python.wasm", "wasm_sha256": h("python.wasm"),
    "stdlib": "stdlib.zip", "stdlib_sha256": h("stdlib.zip"),
    "recipe": recipe,
    "build": {
        "target": "wasm32-wasip1", "exec_model": "reactor",
        "cflags": "$WASM_OPTFLAGS", "lto": "$ERYX_LTO", "wasm_opt": "$ERYX_WASM_OPT" or None,
        "pymalloc": "$ERYX_PYMALLOC" == "yes", "allocator": "$ERYX_ALLOCATOR", "stdlib_format": "$ERYX_STDLIB",
        "eval_tick": "$ERYX_EVAL_TICK" == "yes", "dylink": "$ERYX_DYLINK" == "yes",
        "max_memory": $ERYX_MAX_MEMORY, "deps_cflags": "$DEPS_OPT",
        "configure": "${WASM_CONFIGURE[*]}",
        "compiler": "$("$LLVM/clang" --version | head -1)",
        "packages": {$(for p in "${TOOL_PKGS[@]}"; do printf '"%s": "%s", ' "$p" "$(dpkg-query -W -f='${Version}' "$p")"; done)},
        "sources": pins,
    },
}
json.dump(m, open(f"{at}/manifest.json.tmp", "w"), indent=2, sort_keys=True)
EOF
mv "$AT/manifest.json.tmp" "$AT/manifest.json"
rm -f "$AT/LICENSE.txt" "$AT/eryx_runtime.o" "$AT/eryx_scrypt.o"
mkdir -p "$CACHE/logs"; mv "$AT/link.log" "$CACHE/logs/link-$RECIPE.log"
chmod 755 "$AT"
mv -T "$AT" "$OUT"
trap - EXIT
log "runtime ready in $((SECONDS - T0))s: python.wasm $(stat -c %s "$OUT/python.wasm") bytes, stdlib.zip $(stat -c %s "$OUT/stdlib.zip") bytes"
echo "$OUT"
