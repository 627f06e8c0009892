"""A test of the build: the aarch64 wheel (./build.sh aarch64, cross-built on this machine) is a
manylinux wheel, installs for aarch64, and runs a sandbox under qemu-user with an aarch64
CPython, from the compiled guest it carries (nothing compiled at first use).

The wheel is built here when dist/ has none (several minutes the first time: Go's arm64 build
cache, wazero's compile under emulation). Skipped only on a machine without qemu-user.
"""

from __future__ import annotations

import glob
import os
import shlex
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.skipif(
    shutil.which("qemu-aarch64") is None,
    reason="qemu-aarch64 is not installed (Debian package qemu-user): cannot run an aarch64 wheel",
)


def _build(*args: str, timeout: int) -> str:
    p = subprocess.run(["bash", os.path.join(ROOT, "build.sh"), *args], cwd=ROOT,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout)
    assert p.returncode == 0, p.stderr[-4000:]
    return p.stdout


@pytest.fixture(scope="module")
def wheel() -> str:
    wheels = glob.glob(os.path.join(ROOT, "dist", "goeryx-*_aarch64.whl"))
    if not wheels:
        _build("aarch64", timeout=3000)
        wheels = glob.glob(os.path.join(ROOT, "dist", "goeryx-*_aarch64.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.mark.timeout(3600)
def test_aarch64_wheel_is_manylinux(wheel):
    assert "-cp311-abi3-manylinux" in os.path.basename(wheel), wheel
    out = subprocess.run([os.path.join(os.path.dirname(sys.executable), "auditwheel"), "show", wheel],
                         capture_output=True, text=True, check=True).stdout
    assert 'manylinux_2_17_aarch64' in " ".join(out.split()), out


@pytest.mark.timeout(3600)
def test_aarch64_wheel_runs_a_sandbox_under_qemu(wheel, tmp_path):
    site = tmp_path / "site"
    # pip installs it as for an aarch64 machine (the tag must be one pip accepts there).
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
         "--no-index", "--target", str(site), "--platform", "manylinux2014_aarch64",
         "--only-binary=:all:", wheel],
        check=True, capture_output=True,
    )
    ext = glob.glob(str(site / "eryx" / "_eryx*.so"))
    assert ext, os.listdir(site / "eryx")
    with open(ext[0], "rb") as f:
        header = f.read(20)
    assert header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == 183  # EM_AARCH64
    python = shlex.split(_build("python-aarch64", timeout=600).strip().splitlines()[-1])
    cache = tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": str(site), "GOERYX_CACHE_DIR": str(cache)}
    p = subprocess.run(
        [*python, "-c",
         "import platform, eryx; print(platform.machine()); print(eryx.Sandbox().execute('print(6*7)').stdout)"],
        capture_output=True, text=True, env=env, timeout=1200, cwd=tmp_path,
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["aarch64", "42"], (p.stdout, p.stderr)
    # The wheel's compiled guest was used: wazero's cache entry is a link to it, and nothing
    # large was written. (Not the absence of the stderr notice: loading 26 MB of code under
    # emulation can take longer than the second after which the engine announces a compile.)
    entries = glob.glob(str(cache / "wazero-*" / "wazero-*-arm64-linux" / "*"))
    assert len(entries) == 1 and os.path.islink(entries[0]), (entries, p.stderr)
    assert os.path.realpath(entries[0]).startswith(str(site / "eryx" / "_runtime" / "precompiled")), entries
    large = [os.path.join(d, f) for d, _, fs in os.walk(cache) for f in fs
             if not os.path.islink(os.path.join(d, f)) and os.path.getsize(os.path.join(d, f)) > 64 << 10]
    assert not large, large
