#!/usr/bin/env bash
# Time to the first Sandbox result in a fresh Python process, through the installed package:
#
#   python -c 'import time; t=time.perf_counter(); import eryx; eryx.Sandbox().execute("print(1)"); print(time.perf_counter()-t)'
#
# with GOERYX_CACHE_DIR an empty directory (the first process compiles and caches), then the
# same directory warm (the median of N fresh processes). The goal is 150 ms warm.
#
#   bench/coldstart.sh [-n N] [--warm-only] [--python PATH]
#
# --warm-only reuses one cache directory across invocations ($TMPDIR/goeryx-coldstart-cache)
# instead of starting from an empty one. A second table splits each warm run into
# `import eryx`, loading the native module (Go runtime start), opening the runtime
# (OpenRuntime) and the first Execute. The engine's own breakdown is
#   GOERYX_COLDSTART=10 GOERYX_RUNTIME_DIR=$(cat build/runtime-dir) go test -run TestColdStart -v ./goeryx/
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=$ROOT/.venv/bin/python
N=10
WARM_ONLY=
while [ $# -gt 0 ]; do
    case $1 in
        -n) N=$2; shift 2 ;;
        --warm-only) WARM_ONLY=1; shift ;;
        --python) PY=$2; shift 2 ;;
        *) echo "usage: $0 [-n N] [--warm-only] [--python PATH]" >&2; exit 2 ;;
    esac
done
[ -x "$PY" ] || { echo "no Python at $PY (run ./build.sh)" >&2; exit 1; }

if [ -n "$WARM_ONLY" ]; then
    CACHE=${TMPDIR:-/tmp}/goeryx-coldstart-cache
    mkdir -p "$CACHE"
else
    CACHE=$(mktemp -d "${TMPDIR:-/tmp}/goeryx-coldstart.XXXXXX")
    trap 'rm -rf "$CACHE"' EXIT
fi
# Run outside the source tree, so that `import eryx` is the installed package.
cd "${TMPDIR:-/tmp}"

ISSUE='import time; t=time.perf_counter(); import eryx; eryx.Sandbox().execute("print(1)"); print(time.perf_counter()-t)'
SPLIT='
import time
t0 = time.perf_counter()
import eryx
t1 = time.perf_counter()
import eryx._eryx
t2 = time.perf_counter()
from eryx import _runtime
_runtime.runtime()
t3 = time.perf_counter()
r = eryx.Sandbox().execute("print(1)")
t4 = time.perf_counter()
assert r.stdout.strip() == "1", r
print(*("%.1f" % ((b - a) * 1e3) for a, b in ((t0, t1), (t1, t2), (t2, t3), (t3, t4), (t0, t4))))
'

run() { GOERYX_CACHE_DIR=$CACHE "$PY" -c "$1"; }

echo "python: $PY"
echo "engine: $("$PY" -c 'import eryx._eryx as m; print(m.__file__)')"
echo "cache:  $CACHE"
if [ -z "$WARM_ONLY" ]; then
    start=$(date +%s.%N)
    first=$(run "$ISSUE" 2>/tmp/goeryx-coldstart-stderr.$$)
    end=$(date +%s.%N)
    printf 'empty cache:  %7.1f ms to the first result (process wall %.1f ms)\n' \
        "$(echo "$first * 1000" | bc -l)" "$(echo "($end - $start) * 1000" | bc -l)"
    sed 's/^/  stderr: /' /tmp/goeryx-coldstart-stderr.$$
    rm -f /tmp/goeryx-coldstart-stderr.$$
else
    run "$ISSUE" >/dev/null # make sure it is warm
fi

times=()
for _ in $(seq "$N"); do
    times+=("$(run "$ISSUE")")
done
printf '%s\n' "${times[@]}" | sort -g | awk -v n="$N" '
    { v[NR] = $1 * 1000 }
    END { printf "warm cache:   %7.1f ms to the first result (median of %d fresh processes; min %.1f, max %.1f)\n", v[int((NR + 1) / 2)], n, v[1], v[NR] }'

echo "warm split (ms, median of $N): import eryx | load _eryx | open runtime | Sandbox().execute | total"
for _ in $(seq "$N"); do
    run "$SPLIT"
done | sort -t' ' -k5 -g | awk '{ l[NR] = $0 } END { print "  " l[int((NR + 1) / 2)] }'
