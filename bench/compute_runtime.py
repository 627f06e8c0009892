"""Compare bench/compute.py under (a) the native CPython 3.13.5 built by runtime/build.sh and
(b) the runtime's python.wasm under wasmtime (PyPI package, pinned below), driven through the
reactor exports exactly as the engine drives it (_initialize, eryx_init, eryx_boot, eryx_call),
with dummy _eryx imports. Prints per-part times and guest/native ratios (JSON with --json).

    python3 bench/compute_runtime.py [--runtime DIR] [--native PREFIX] [--repeat N] [--json]

Without --runtime/--native it asks runtime/build.sh (cached: instant when built). wasmtime is
installed into a venv under $CACHE/bench-venv (made with the native CPython) on first use.
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
CACHE = os.environ.get("GOERYX_CACHE_DIR") or os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "goeryx")
WASMTIME_VERSION = "50.0.1"
# sha256 of the wheels pip may pick for this pin (one per platform tag used here)
WASMTIME_HASHES = [
    "cc14c3a17654e0394e0225b11813532ef0cd7bd1e222a0c5494cdedaabeddac4",  # manylinux1_x86_64
]
STDLIB_DIR = "/usr/local/lib/python3.13"

# The guest driver used for the benchmark: the request is compute.py's source + "\0" + repeat.
DRIVER = r"""
import json
def _handle(req):
    src, _, repeat = req.partition(b"\0")
    ns = {"__name__": "compute"}
    exec(compile(src.decode(), "compute.py", "exec"), ns)
    return json.dumps(ns["run"](int(repeat))).encode()
_host.set_handler(_handle)
"""


def build_sh(*args):
    out = subprocess.run(["bash", os.path.join(REPO, "runtime", "build.sh"), *args],
                         check=True, stdout=subprocess.PIPE, text=True).stdout
    return out.strip().splitlines()[-1]


def venv_python(native):
    venv = os.path.join(CACHE, "bench-venv")
    py = os.path.join(venv, "bin", "python")
    stamp = os.path.join(venv, f".wasmtime-{WASMTIME_VERSION}")
    if not os.path.exists(stamp):
        subprocess.run([os.path.join(native, "bin", "python3.13"), "-m", "venv", "--clear", venv], check=True)
        req = os.path.join(venv, "requirements.txt")
        with open(req, "w") as f:
            f.write(f"wasmtime=={WASMTIME_VERSION} " + " ".join(f"--hash=sha256:{h}" for h in WASMTIME_HASHES) + "\n")
        subprocess.run([py, "-m", "pip", "install", "-q", "--no-cache-dir", "--disable-pip-version-check",
                        "--require-hashes", "--only-binary=:all:", "-r", req], check=True)
        open(stamp, "w").close()
    return py


def stdlib_tree(runtime):
    """wasmtime's WASI needs a host directory: unpack stdlib.zip once (keyed by its hash)."""
    data = open(os.path.join(runtime, "stdlib.zip"), "rb").read()
    d = os.path.join(CACHE, "bench-stdlib", hashlib.sha256(data).hexdigest()[:16])
    if not os.path.isdir(d):
        tmp = d + ".tmp"
        with zipfile.ZipFile(os.path.join(runtime, "stdlib.zip")) as z:
            z.extractall(tmp)
        os.rename(tmp, d)
    return d


def run_native(native, repeat):
    out = subprocess.run([os.path.join(native, "bin", "python3.13"), os.path.join(HERE, "compute.py"),
                          "--repeat", str(repeat)], check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out)


def run_wasmtime(runtime, repeat):
    """Runs in the bench venv (wasmtime importable)."""
    import wasmtime

    engine = wasmtime.Engine()
    t0 = time.perf_counter()
    module = wasmtime.Module.from_file(engine, os.path.join(runtime, "python.wasm"))
    t_compile = time.perf_counter() - t0
    store = wasmtime.Store(engine)
    wasi = wasmtime.WasiConfig()
    wasi.inherit_stdout()
    wasi.inherit_stderr()
    wasi.preopen_dir(stdlib_tree(runtime), STDLIB_DIR)
    store.set_wasi(wasi)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    i32 = wasmtime.ValType.i32()
    linker.define_func("_eryx", "host_call", wasmtime.FuncType([i32, i32, i32], [i32]), lambda op, p, n: -2)
    linker.define_func("_eryx", "host_take", wasmtime.FuncType([i32, i32], [i32]), lambda p, n: -4)
    linker.define_func("_eryx", "tick", wasmtime.FuncType([], []), lambda: None)
    inst = linker.instantiate(store, module)
    ex = inst.exports(store)
    mem = ex["memory"]

    def put(b):
        p = ex["eryx_alloc"](store, len(b))
        mem.write(store, b, p)
        return p

    t0 = time.perf_counter()
    ex["_initialize"](store)
    if ex["eryx_init"](store) != 0:
        raise SystemExit("eryx_init failed")
    t_init = time.perf_counter() - t0
    src = DRIVER.encode()
    if ex["eryx_boot"](store, put(src), len(src)) != 0:
        raise SystemExit("eryx_boot failed")
    req = open(os.path.join(HERE, "compute.py"), "rb").read() + b"\0" + str(repeat).encode()
    r = ex["eryx_call"](store, put(req), len(req))
    if r == -1:
        raise SystemExit("eryx_call failed")
    r &= (1 << 64) - 1
    out = bytes(mem.read(store, r >> 32, (r >> 32) + (r & 0xFFFFFFFF)))
    res = json.loads(out)
    res["_compile_s"] = round(t_compile, 3)
    res["_init_s"] = round(t_init, 4)
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runtime")
    ap.add_argument("--native")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--wasmtime-child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.wasmtime_child:
        print(json.dumps(run_wasmtime(a.runtime, a.repeat)))
        return
    runtime = a.runtime or os.environ.get("GOERYX_RUNTIME_DIR") or build_sh()
    native = a.native or build_sh("--native")
    nat = run_native(native, a.repeat)
    py = venv_python(native)
    out = subprocess.run([py, os.path.abspath(__file__), "--wasmtime-child", "--runtime", runtime,
                          "--repeat", str(a.repeat)], check=True, stdout=subprocess.PIPE, text=True).stdout
    wt = json.loads(out.strip().splitlines()[-1])
    manifest = json.load(open(os.path.join(runtime, "manifest.json")))
    report = {"runtime": runtime, "recipe": manifest["recipe"], "build": {
                  k: manifest["build"].get(k) for k in ("cflags", "lto", "wasm_opt", "pymalloc")},
              "native": nat, "wasmtime": wt,
              "ratio_wasmtime": {k: round(wt[k] / nat[k], 2) for k in nat if nat[k]}}
    if a.json:
        print(json.dumps(report, indent=2))
        return
    print(f"runtime {runtime}\nbuild {report['build']}")
    print(f"wasmtime {WASMTIME_VERSION}: compile {wt['_compile_s']}s, _initialize+eryx_init {wt['_init_s']}s; "
          f"best of {a.repeat}")
    print(f"{'part':10s} {'native s':>9s} {'wasmtime s':>11s} {'ratio':>6s}")
    for k in nat:
        print(f"{k:10s} {nat[k]:9.3f} {wt[k]:11.3f} {wt[k] / nat[k]:6.2f}x")


if __name__ == "__main__":
    main()
