"""A test of the build: the wheel in dist/, installed into a fresh venv, runs its first sandbox
from the precompiled guest it carries, with an empty goeryx cache, without compiling anything.

It asserts that no compilation happened (no notice on stderr, no compiled code or other large
file written to the cache), not how long it took (bench/firstrun.py measures that).
"""

from __future__ import annotations

import glob
import os
import platform
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LARGE = 64 << 10


def _wheel() -> str:
    """This machine's wheel (dist/ may also hold the aarch64 one of ./build.sh aarch64)."""
    wheels = glob.glob(os.path.join(ROOT, "dist", f"goeryx-*_{platform.machine()}.whl"))
    if not os.path.isdir(os.path.join(ROOT, "dist")):
        pytest.skip("no dist/: run ./build.sh first")
    assert len(wheels) == 1, f"expected one {platform.machine()} wheel in dist/, found {wheels}"
    return wheels[0]


def test_wheel_is_manylinux():
    # build.sh: auditwheel's tag from the extension's glibc symbol versions (zig links for 2.17)
    name = os.path.basename(_wheel())
    assert "manylinux" in name and "linux_x86_64" not in name.replace("manylinux", ""), name
    with zipfile.ZipFile(_wheel()) as whl:
        wheel_meta = next(n for n in whl.namelist() if n.endswith(".dist-info/WHEEL"))
        tags = [ln.split(": ", 1)[1] for ln in whl.read(wheel_meta).decode().splitlines()
                if ln.startswith("Tag: ")]
    assert tags and all("-abi3-manylinux" in t for t in tags), tags


def test_wheel_carries_precompiled_guest():
    with zipfile.ZipFile(_wheel()) as whl:
        names = whl.namelist()
    pre = [n for n in names if n.startswith("eryx/_runtime/precompiled/")]
    assert any("/startup/module-" in n for n in pre), pre
    assert any("/startup/image-" in n for n in pre), pre
    assert any("/wazero-" in n for n in pre), pre


@pytest.mark.timeout(600)
def test_first_sandbox_after_pip_install_compiles_nothing(tmp_path):
    wheel = _wheel()
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    python = str(venv / "bin" / "python")
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
         "--no-index", wheel],
        check=True, capture_output=True,
    )
    cache = tmp_path / "cache"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GOERYX_", "XDG_"))}
    env["GOERYX_CACHE_DIR"] = str(cache)
    run = subprocess.run(
        [python, "-c", "import eryx; print(eryx.Sandbox().execute('print(6*7)').stdout)"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout == "42\n"
    # The engine says "goeryx: compiling the guest runtime ..." when a compilation takes more
    # than a second, and "booting the guest interpreter" when it builds the memory image.
    assert run.stderr == "", run.stderr

    large, links = [], []
    for dirpath, _, files in os.walk(cache):
        for name in files:
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                links.append(os.path.realpath(path))
            elif os.path.getsize(path) >= LARGE:
                large.append(path)
    assert large == [], f"the first run wrote large files to the cache: {large}"
    # The compiled code is a link into the installed package.
    site = subprocess.run([python, "-c", "import eryx, os; print(os.path.dirname(eryx.__file__))"],
                          env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert len(links) == 1 and links[0].startswith(os.path.join(site, "_runtime", "precompiled")), links
