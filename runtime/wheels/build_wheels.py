"""Cross-compile Python extension sdists into WASI wheels for the goeryx guest.

Run by `runtime/build.sh --wheels DIR` with the build's native CPython 3.13. Each extension
module becomes a WebAssembly side module (clang -fPIC -shared for wasm32-wasip1, the
tool-conventions DynamicLinking ABI) that the guest's dlopen hands to goeryx/internal/dylink.
Its imports are resolved against python.wasm's exports at load time: this script checks them
here, so that a symbol the guest does not provide fails the build, not a user's import.

The recipes below replace each package's setup.py (which would compile for the build machine):
they name the sources, include directories and macros of setup.py's Extension(s), and the
Python packages to copy. Wheels are reproducible: sorted members, fixed timestamps.
"""

import argparse
import base64
import csv
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile

TAG = "cp313-cp313-wasi_0_0_0_wasm32"
EXT_SUFFIX = ".cpython-313-wasm32-wasi.so"
CFLAGS = ["-O2", "-fPIC", "-DNDEBUG", "-fwrapv"]
# -nodefaultlibs: libc, libpython and compiler-rt come from python.wasm at load time;
# __wasm_call_ctors is exported so that the loader runs the module's constructors.
LDFLAGS = ["-shared", "-nostartfiles", "-nodefaultlibs", "-Wl,--no-entry", "-Wl,--allow-undefined",
           "-Wl,--export-if-defined=__wasm_call_ctors", "-Wl,--strip-debug"]

LIBYAML_SOURCES = ["api.c", "dumper.c", "emitter.c", "loader.c", "parser.c", "reader.c",
                   "scanner.c", "writer.c"]

RECIPES = {
    "markupsafe": {
        "sdist": "markupsafe", "root": "markupsafe-3.0.2", "pkgdir": "src", "packages": ["markupsafe"],
        "exts": {"markupsafe._speedups": {"sources": ["src/markupsafe/_speedups.c"]}},
        "licenses": ["LICENSE.txt"],
    },
    "msgpack": {
        "sdist": "msgpack", "root": "msgpack-1.1.0", "pkgdir": ".", "packages": ["msgpack"],
        "exts": {"msgpack._cmsgpack": {"sources": ["msgpack/_cmsgpack.c"], "include": ["."],
                                       "define": ["__LITTLE_ENDIAN__=1"]}},
        "licenses": ["COPYING"],
    },
    "pyyaml": {
        "sdist": "PyYAML", "root": "pyyaml-6.0.2", "pkgdir": "lib", "packages": ["yaml", "_yaml"],
        "cython": ["yaml/_yaml.pyx"],
        "exts": {"yaml._yaml": {
            "sources": ["yaml/_yaml.c"] + ["@libyaml/src/" + s for s in LIBYAML_SOURCES],
            "include": ["yaml", "@libyaml/include"],
            # libyaml's config.h, as its CMake build writes it; static: no dllimport dance
            "define": ["YAML_DECLARE_STATIC", "YAML_VERSION_MAJOR=0", "YAML_VERSION_MINOR=2",
                       "YAML_VERSION_PATCH=5", 'YAML_VERSION_STRING="0.2.5"'],
        }},
        "licenses": ["LICENSE", "@libyaml/License"],
    },
}


def log(msg):
    print(f"[wheels] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- wasm reading
def _uleb(b, i):
    r = s = 0
    while True:
        x = b[i]
        i += 1
        r |= (x & 0x7F) << s
        s += 7
        if x < 0x80:
            return r, i


def _name(b, i):
    n, i = _uleb(b, i)
    return b[i:i + n].decode(), i + n


def wasm_imports_exports(data):
    """(imports [(module, field, kind)], exports {name: kind}) of a wasm module."""
    assert data[:8] == b"\0asm\1\0\0\0", "not a wasm module"
    i, imports, exports = 8, [], {}
    while i < len(data):
        sid = data[i]
        size, j = _uleb(data, i + 1)
        end = j + size
        if sid == 2:
            n, j = _uleb(data, j)
            for _ in range(n):
                m, j = _name(data, j)
                f, j = _name(data, j)
                kind = data[j]
                j += 1
                if kind == 0:
                    _, j = _uleb(data, j)
                elif kind == 1:
                    j += 1
                    fl, j = _uleb(data, j)
                    _, j = _uleb(data, j)
                    if fl & 1:
                        _, j = _uleb(data, j)
                elif kind == 2:
                    fl, j = _uleb(data, j)
                    _, j = _uleb(data, j)
                    if fl & 1:
                        _, j = _uleb(data, j)
                elif kind == 3:
                    j += 2
                imports.append((m, f, kind))
        elif sid == 7:
            n, j = _uleb(data, j)
            for _ in range(n):
                f, j = _name(data, j)
                kind = data[j]
                j += 1
                _, j = _uleb(data, j)
                exports[f] = kind
        i = end
    return imports, exports


def check_side_module(path, main_exports):
    """Every import of the side module at path is one python.wasm provides (or its own)."""
    data = open(path, "rb").read()
    if data[8:9] != b"\0" or b"dylink.0" not in data[8:32]:
        raise SystemExit(f"{path}: not a side module (no dylink.0 section)")
    imports, own = wasm_imports_exports(data)
    missing = []
    for m, f, kind in imports:
        if m == "env" and f in ("memory", "__indirect_function_table", "__memory_base", "__table_base"):
            continue
        if m in ("GOT.mem", "GOT.func") and f in own:
            continue
        if m in ("env", "GOT.mem", "GOT.func") and f in main_exports:
            continue
        missing.append(f"{m}.{f}")
    if missing:
        raise SystemExit(f"{path}: python.wasm does not provide {', '.join(sorted(missing))}")


# ---------------------------------------------------------------------------- building
def run(cmd, cwd=None, env=None):
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"command failed: {' '.join(cmd)}\n{r.stdout[-4000:]}{r.stderr[-4000:]}")


def extract(tar_path, dest):
    with tarfile.open(tar_path) as tf:
        tf.extractall(dest, filter="data")


def build_package(name, recipe, args, inputs, work, main_exports):
    src = os.path.join(work, name)
    shutil.rmtree(src, ignore_errors=True)
    os.makedirs(src)
    extract(inputs[recipe["sdist"]], src)
    root = os.path.join(src, recipe["root"])
    aux = {}
    if name == "pyyaml":
        extract(inputs["libyaml"], os.path.join(src, "libyaml-src"))
        aux["libyaml"] = os.path.join(src, "libyaml-src", "libyaml-0.2.5")

    def resolve(p):
        if p.startswith("@"):
            key, _, rest = p[1:].partition("/")
            return os.path.join(aux[key], rest)
        return os.path.join(root, p)

    for pyx in recipe.get("cython", []):
        env = dict(os.environ, PYTHONPATH=args.cython)
        run([sys.executable, "-m", "cython", "-3", resolve(pyx), "-o", resolve(pyx[:-4] + ".c")], env=env)

    stage = os.path.join(src, "stage")
    for pkg in recipe["packages"]:
        shutil.copytree(os.path.join(root, recipe["pkgdir"], pkg), os.path.join(stage, pkg),
                        ignore=shutil.ignore_patterns("*.c", "*.pyx", "*.pxd", "*.h", "__pycache__"))
    includes = ["-I" + args.cpython_include, "-I" + args.pyconfig_dir]
    for ext, spec in recipe["exts"].items():
        objs = []
        flags = CFLAGS + includes + ["-I" + resolve(p) for p in spec.get("include", [])]
        flags += ["-D" + d for d in spec.get("define", [])]
        for i, s in enumerate(spec["sources"]):
            obj = os.path.join(src, f"{ext}.{i}.o")
            run([args.cc] + flags + ["-c", resolve(s), "-o", obj])
            objs.append(obj)
        out = os.path.join(stage, *ext.split(".")) + EXT_SUFFIX
        run([args.cc] + LDFLAGS + ["-o", out] + objs)
        check_side_module(out, main_exports)
        log(f"{ext}: {os.path.getsize(out)} bytes")
    return root, stage, aux


def write_wheel(name, recipe, root, stage, aux, out_dir):
    meta = open(os.path.join(root, "PKG-INFO"), encoding="utf-8").read()
    fields = dict(line.split(": ", 1) for line in meta.splitlines() if ": " in line and not line.startswith(" "))
    dist, version = fields["Name"].lower().replace("-", "_"), fields["Version"]
    info = f"{dist}-{version}.dist-info"
    files = {}
    for dirpath, _, names in os.walk(stage):
        for n in names:
            p = os.path.join(dirpath, n)
            files[os.path.relpath(p, stage).replace(os.sep, "/")] = open(p, "rb").read()
    files[f"{info}/METADATA"] = meta.encode()
    files[f"{info}/WHEEL"] = (f"Wheel-Version: 1.0\nGenerator: goeryx runtime/wheels/build_wheels.py\n"
                              f"Root-Is-Purelib: false\nTag: {TAG}\n").encode()
    for lic in recipe.get("licenses", []):
        path = os.path.join(aux[lic[1:].partition("/")[0]], lic.partition("/")[2]) if lic.startswith("@") \
            else os.path.join(root, lic)
        files[f"{info}/licenses/{os.path.basename(path)}"] = open(path, "rb").read()
    record = io.StringIO()
    w = csv.writer(record, lineterminator="\n")
    for k in sorted(files):
        digest = base64.urlsafe_b64encode(hashlib.sha256(files[k]).digest()).rstrip(b"=").decode()
        w.writerow([k, f"sha256={digest}", len(files[k])])
    w.writerow([f"{info}/RECORD", "", ""])
    files[f"{info}/RECORD"] = record.getvalue().encode()
    whl = os.path.join(out_dir, f"{dist}-{version}-{TAG}.whl")
    tmp = whl + ".tmp"
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for k in sorted(files, key=lambda k: (k.startswith(info), k)):
            zi = zipfile.ZipInfo(k, date_time=(1980, 1, 1, 0, 0, 0))
            zi.external_attr = 0o644 << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(zi, files[k])
    os.replace(tmp, whl)
    log(f"{os.path.basename(whl)}: {os.path.getsize(whl)} bytes")
    return whl


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cc", required=True, help="clang for wasm32-wasip1 (the runtime build's wrapper)")
    ap.add_argument("--cpython-include", required=True)
    ap.add_argument("--pyconfig-dir", required=True)
    ap.add_argument("--python-wasm", required=True, help="the runtime's python.wasm: the symbols it exports")
    ap.add_argument("--cython", required=True, help="directory of an unpacked Cython wheel")
    ap.add_argument("--input", action="append", default=[], help="NAME=PATH of a pinned input")
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    inputs = dict(x.split("=", 1) for x in args.input)
    _, main_exports = wasm_imports_exports(open(args.python_wasm, "rb").read())
    os.makedirs(args.out, exist_ok=True)
    for name, recipe in RECIPES.items():
        root, stage, aux = build_package(name, recipe, args, inputs, args.work, main_exports)
        write_wheel(name, recipe, root, stage, aux, args.out)


if __name__ == "__main__":
    main()
