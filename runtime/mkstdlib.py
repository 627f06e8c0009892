"""Build the runtime's stdlib.zip (see docs/ABI.md, "The runtime artifact").

Run with the native CPython of the same version as the guest (same bytecode magic):

    python3.13 mkstdlib.py --lib SRC/Lib --sysconfig BUILD/build/lib.wasi-wasm32-3.13 \
        --wheel tzdata.whl --wheel dill.whl --license LICENSE.txt --out stdlib.zip [--with-source]

Entries are relative to the guest stdlib directory. By default the archive is bytecode-only:
each module is a sourceless `name.pyc` where `name.py` would be (see runtime/README.md for the
measurement behind that choice); with --with-source the sources go in as well, with the bytecode
in `__pycache__/name.cpython-313.pyc` as unchecked hash-based pycs. The output is reproducible:
sorted entries, fixed timestamps and permissions.
"""

import argparse
import importlib._bootstrap_external as bootstrap_external
import importlib.util
import io
import os
import sys
import zipfile

# Directories (at any depth) of the stdlib that the sandbox never needs.
SKIP_DIRS = {
    "test", "tests", "idlelib", "tkinter", "turtledemo", "ensurepip", "venv", "pydoc_data",
    "lib2to3", "site-packages", "__pycache__", "__phello__",
}
# Top-level stdlib modules left out (GUI / interactive only).
SKIP_FILES = {"turtle.py", "__hello__.py"}
FIXED_DATE = (1980, 1, 1, 0, 0, 0)

# Patches to vendored packages, applied to the wheel's text (each must match exactly once, so a
# version bump forces a review). dill 0.4.1 opens os.devnull ('rb', 'r+b', 'wb') and calls
# tempfile.gettempdir() at import time; the sandbox has neither /dev/null nor a writable
# temporary directory, which made `import dill` fail. The patched code only changes what happens
# when those fail.
PATCHES = {
    "dill/_dill.py": [(
        """    open = kwargs.pop("open", __builtin__.open)
    f = open(os.devnull, *args, **kwargs)
""",
        """    open = kwargs.pop("open", __builtin__.open)
    try:
        f = open(os.devnull, *args, **kwargs)
    except OSError:  # goeryx: no /dev/null in the sandbox; same answer without a file
        import io, _pyio
        io = _pyio if getattr(open, "__module__", None) == "_pyio" else io
        mode, buffering = args[0], kwargs.get("buffering", -1)
        if buffering == 0:
            return io.FileIO
        if "b" not in mode:
            return io.TextIOWrapper
        if "+" in mode:
            return io.BufferedRandom
        return io.BufferedReader if "r" in mode else io.BufferedWriter
""")],
    "dill/session.py": [(
        """TEMPDIR = pathlib.PurePath(tempfile.gettempdir())
""",
        """try:
    TEMPDIR = pathlib.PurePath(tempfile.gettempdir())
except OSError:  # goeryx: no writable temporary directory in the sandbox
    TEMPDIR = pathlib.PurePath("/tmp")
""")],
}


def patch(arc, data):
    for old, new in PATCHES.get(arc, ()):
        text = data.decode("utf-8")
        if text.count(old) != 1:
            raise SystemExit(f"patch for {arc} does not apply (upstream changed?)")
        data = text.replace(old, new).encode("utf-8")
    return data


class Builder:
    def __init__(self, out, with_source, compresslevel):
        self.zip = zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=compresslevel)
        self.with_source = with_source
        self.names = set()
        self.modules = 0

    def write(self, arc, data):
        if arc in self.names:
            raise SystemExit(f"duplicate entry {arc}")
        self.names.add(arc)
        info = zipfile.ZipInfo(arc, FIXED_DATE)
        info.external_attr = 0o644 << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        self.zip.writestr(info, data)

    def add_module(self, arc, src):
        # arc: "json/__init__.py"
        code = compile(src, arc, "exec", dont_inherit=True, optimize=0)
        if self.with_source:
            data = bootstrap_external._code_to_hash_pyc(
                code, importlib.util.source_hash(src), checked=False)
            head, tail = os.path.split(arc)
            cache = f"{tail[:-3]}.{sys.implementation.cache_tag}.pyc"
            self.write(arc, src)
            self.write("/".join(p for p in (head, "__pycache__", cache) if p), data)
        else:
            # sourceless: validated by nothing, loaded by SourcelessFileLoader
            data = bootstrap_external._code_to_timestamp_pyc(code, 0, 0)
            self.write(arc + "c", data)
        self.modules += 1

    def add_file(self, arc, data):
        if arc.endswith(".py"):
            self.add_module(arc, data)
        else:
            self.write(arc, data)

    def close(self):
        self.zip.close()


def stdlib_files(lib):
    for root, dirs, files in os.walk(lib):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        rel_root = os.path.relpath(root, lib)
        for f in sorted(files):
            if not f.endswith(".py"):
                continue
            if rel_root == "." and f in SKIP_FILES:
                continue
            path = os.path.join(root, f)
            yield os.path.normpath(os.path.join(rel_root, f)).replace(os.sep, "/"), path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", required=True)
    ap.add_argument("--sysconfig", required=True, help="directory with _sysconfigdata_*.py")
    ap.add_argument("--wheel", action="append", default=[])
    ap.add_argument("--license", help="file stored as LICENSE.txt")
    ap.add_argument("--out", required=True)
    ap.add_argument("--with-source", action="store_true")
    ap.add_argument("--compresslevel", type=int, default=9)
    ap.add_argument("--sysconfig-replace", action="append", default=[], metavar="OLD=NEW",
                    help="rewrite build paths in _sysconfigdata (no build-machine path in the guest)")
    a = ap.parse_args()

    entries = {}
    for arc, path in stdlib_files(a.lib):
        entries[arc] = ("file", path)
    for f in sorted(os.listdir(a.sysconfig)):
        if f.startswith("_sysconfigdata_") and f.endswith(".py"):
            text = open(os.path.join(a.sysconfig, f), encoding="utf-8").read()
            for r in a.sysconfig_replace:
                old, _, new = r.partition("=")
                text = text.replace(old, new)
            entries[f] = ("data", text.encode("utf-8"))
    for whl in a.wheel:
        with zipfile.ZipFile(whl) as w:
            for name in sorted(w.namelist()):
                if name.endswith("/") or name.endswith(".dist-info/RECORD"):
                    continue
                if name in entries:
                    raise SystemExit(f"{whl}: {name} clashes with the stdlib")
                entries[name] = ("data", patch(name, w.read(name)))
    if a.license:
        entries["LICENSE.txt"] = ("file", a.license)

    b = Builder(a.out, a.with_source, a.compresslevel)
    for arc in sorted(entries):
        kind, v = entries[arc]
        data = open(v, "rb").read() if kind == "file" else v
        b.add_file(arc, data)
    b.close()
    missing = [arc for arc in PATCHES if arc not in entries]
    if missing:
        raise SystemExit(f"patched files missing from the inputs: {missing}")
    print(f"{a.out}: {b.modules} modules, {len(b.names)} entries, "
          f"{os.path.getsize(a.out)} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
