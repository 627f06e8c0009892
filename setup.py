"""Builds the goeryx wheel: the eryx package, its guest runtime and the extension module
eryx._eryx (cbridge/, a cgo c-shared library built by setuptools-golang).

Static metadata is in pyproject.toml; this file holds what setuptools cannot read from it.
The guest runtime must be in python/eryx/_runtime/ first (./build.sh puts it there).
"""

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py
from setuptools.errors import FileError

RUNTIME_MANIFEST = os.path.join("python", "eryx", "_runtime", "manifest.json")
BRIDGE_PACKAGE = "./cbridge"


class BuildPy(build_py):
    """Refuses to build a wheel without the guest runtime."""

    def run(self):
        if not os.path.isfile(RUNTIME_MANIFEST):
            raise FileError(
                f"{RUNTIME_MANIFEST} is missing: the wheel ships the guest runtime "
                "(manifest.json, python.wasm, stdlib.zip). Build it and copy it there first "
                "(./build.sh does both)."
            )
        super().run()


# The kinds of files `go list` reports that `go build` reads (relative to the package dir).
GO_FILE_LISTS = (
    "GoFiles", "CgoFiles", "CFiles", "CXXFiles", "MFiles", "HFiles", "FFiles", "SFiles",
    "SwigFiles", "SwigCXXFiles", "SysoFiles", "EmbedFiles",
)


def _json_stream(text):
    """The objects of a stream of concatenated JSON values (`go list -json`)."""
    decoder = json.JSONDecoder()
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos == len(text):
            return
        obj, pos = decoder.raw_decode(text, pos)
        yield obj


def go(*args):
    """Runs the go command and returns its stdout (its stderr goes to ours)."""
    try:
        return subprocess.run(["go", *args], check=True, stdout=subprocess.PIPE, text=True).stdout
    except FileNotFoundError:
        raise FileError("building goeryx needs Go >= 1.26 on PATH (https://go.dev/dl/)") from None


def go_sources(package):
    """The files `go build` needs for package and the packages of this module it imports:
    go.mod, go.sum and each package's source and embedded files (no tests, no testdata)."""
    out = go("list", "-deps", "-json", package)
    root = os.getcwd()
    files = {"go.mod", "go.sum"}
    for pkg in _json_stream(out):
        if not (pkg.get("Module") or {}).get("Main"):
            continue
        rel = os.path.relpath(pkg["Dir"], root)
        for key in GO_FILE_LISTS:
            files.update(os.path.join(rel, name) for name in pkg.get(key, []))
    return sorted(files)


# Run in a child Python by BuildExt.precompile: opens the runtime with the freshly built
# extension and an empty cache, which the engine fills with what a first run would build.
PRECOMPILE_SCRIPT = """
import importlib.machinery, importlib.util, sys
ext, runtime_dir, cache = sys.argv[1:4]
loader = importlib.machinery.ExtensionFileLoader("eryx._eryx", ext)
spec = importlib.util.spec_from_file_location("eryx._eryx", ext, loader=loader)
mod = importlib.util.module_from_spec(spec)
loader.exec_module(mod)
mod.open_runtime(runtime_dir, cache)
"""


class BuildExt(build_ext):
    """Builds the Go extension from a staging copy of only its Go sources.

    setuptools-golang (which subclasses this class) copies the whole current directory into a
    temporary GOPATH before running `go build`; running it from a directory holding just the
    Go packages the bridge needs keeps that copy small (no runtime, venv, build outputs).
    """

    def build_extensions(self):
        # Reuse the machine's module cache instead of a fresh one in the temporary GOPATH.
        if "SETUPTOOLS_GOLANG_GOPATH" not in os.environ:
            os.environ["SETUPTOOLS_GOLANG_GOPATH"] = go("env", "GOPATH").strip()
        # The output paths are relative to the source directory: fix them before leaving it.
        fullpaths = {}
        for ext in self.extensions:
            fullpaths[ext.name] = os.path.abspath(super().get_ext_fullpath(ext.name))
        self._fullpaths = fullpaths
        source = os.getcwd()
        stage = tempfile.mkdtemp(prefix="goeryx-go-")
        try:
            sources = go_sources(BRIDGE_PACKAGE)
            print(f"staging {len(sources)} Go build files in {stage}", file=sys.stderr)
            for rel in sources:
                os.makedirs(os.path.join(stage, os.path.dirname(rel)), exist_ok=True)
                shutil.copy2(os.path.join(source, rel), os.path.join(stage, rel))
            os.chdir(stage)
            try:
                super().build_extensions()
            finally:
                os.chdir(source)
        finally:
            shutil.rmtree(stage)
        # `go build -buildmode=c-shared` also writes a C header next to the library.
        for path in self._fullpaths.values():
            header = os.path.splitext(path)[0] + ".h"
            if os.path.exists(header):
                os.remove(header)
        self._fullpaths = {}

    def run(self):
        super().run()
        if os.environ.get("GOERYX_PRECOMPILE", "1") == "0":
            print("GOERYX_PRECOMPILE=0: the wheel carries no precompiled guest", file=sys.stderr)
            return
        self.precompile()

    def precompile(self):
        """Puts the precompiled start-up files into the package's _runtime/precompiled/ (see
        goeryx/precompiled.go): the instrumented module, the memory image and wazero's compiled
        code, made by opening the runtime once with this build's extension and an empty cache.
        The first sandbox after installing the wheel then loads them instead of compiling."""
        ext = self.get_ext_fullpath("eryx._eryx")
        runtime_dir = os.path.abspath(os.path.dirname(RUNTIME_MANIFEST))
        base = os.path.dirname(ext)  # .../eryx, in build_lib (or the source tree, inplace)
        out = os.path.join(base, "_runtime", "precompiled")
        shutil.rmtree(out, ignore_errors=True)
        cache = tempfile.mkdtemp(prefix="goeryx-precompile-")
        try:
            print(f"precompiling the guest runtime into {out}", file=sys.stderr)
            # A cross build (GOARCH) runs the step with a Python of the target architecture,
            # e.g. under qemu-user: GOERYX_PRECOMPILE_PYTHON is that command (build.sh aarch64).
            python = shlex.split(os.environ.get("GOERYX_PRECOMPILE_PYTHON", "")) or [sys.executable]
            subprocess.run(
                [*python, "-c", PRECOMPILE_SCRIPT, os.path.abspath(ext), runtime_dir, cache],
                check=True,
            )
            picked = []
            for kind in ("module", "image", "code"):
                names = [n for n in os.listdir(os.path.join(cache, "startup"))
                         if n.startswith(kind + "-") and n.endswith(".bin")]
                if len(names) != 1:
                    raise FileError(f"precompile: expected one {kind} file, found {names}")
                picked.append(os.path.join("startup", names[0]))
            code = []
            for dirpath, _, files in os.walk(cache):
                rel = os.path.relpath(dirpath, cache)
                if rel.split(os.sep)[0].startswith("wazero-"):
                    code += [os.path.join(rel, f) for f in files if not f.endswith(".tmp")]
            if len(code) != 1:
                raise FileError(f"precompile: expected one compiled module, found {code}")
            for rel in picked + code:
                os.makedirs(os.path.join(out, os.path.dirname(rel)), exist_ok=True)
                shutil.copyfile(os.path.join(cache, rel), os.path.join(out, rel))
        finally:
            shutil.rmtree(cache, ignore_errors=True)

    def get_ext_fullpath(self, ext_name):
        fullpaths = getattr(self, "_fullpaths", {})
        if ext_name in fullpaths:
            return fullpaths[ext_name]
        return super().get_ext_fullpath(ext_name)


# The wheel's platform: a cross build (GOARCH set to another architecture than this machine's)
# names the target's; auditwheel then makes it a manylinux tag.
WHEEL_PLATFORMS = {"amd64": "linux_x86_64", "arm64": "linux_aarch64"}
bdist_wheel_options = {"py_limited_api": "cp311"}
if os.environ.get("GOARCH"):
    if os.environ["GOARCH"] not in WHEEL_PLATFORMS:
        raise FileError(f"GOARCH={os.environ['GOARCH']}: goeryx wheels are built for {sorted(WHEEL_PLATFORMS)}")
    bdist_wheel_options["plat_name"] = WHEEL_PLATFORMS[os.environ["GOARCH"]]

setup(
    package_dir={"": "python"},
    packages=["eryx"],
    # Exactly these data files (not whatever a MANIFEST would add).
    include_package_data=False,
    package_data={"eryx": ["py.typed", "*.pyi", "_runtime/*"]},
    ext_modules=[Extension("eryx._eryx", ["cbridge/main.go"], py_limited_api=True)],
    build_golang={"root": "github.com/goeryx/goeryx"},
    cmdclass={"build_py": BuildPy, "build_ext": BuildExt},
    options={"bdist_wheel": bdist_wheel_options},
)
