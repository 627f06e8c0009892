"""Real third-party packages for the SandboxFactory tests (API.md §10), fetched with pip.

Pinned versions and the SHA-256 of each file: a download that does not match fails the tests.
Files are cached under ``$GOERYX_CACHE_DIR/test-wheels`` (default ``~/.cache/goeryx``) and never
committed. Only pure-Python wheels, plus MarkupSafe's sdist (MarkupSafe has no pure wheel; its
pure fallback ``_native.py`` is used, repacked by ``markupsafe_tgz``).
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile

# file name -> (requirement, sha256)
LOCK: dict[str, tuple[str, str]] = {
    "jinja2-3.1.4-py3-none-any.whl": (
        "jinja2==3.1.4", "bc5dd2abb727a5319567b7a813e6a2e7318c39f4f487cfe6c89c6f9c7d25197d"),
    "MarkupSafe-2.1.5.tar.gz": (
        "markupsafe==2.1.5", "d283d37a890ba4c1ae73ffadf8046435c76e7bc2247bbb63c00bd1a709c6544b"),
    "attrs-24.2.0-py3-none-any.whl": (
        "attrs==24.2.0", "81921eb96de3191c8258c199618104dd27ac608d9366f5e35d011eae1867ede2"),
    "tabulate-0.9.0-py3-none-any.whl": (
        "tabulate==0.9.0", "024ca478df22e9340661486f85298cff5f6dcdba14f3813e8830015b9ed1948f"),
    "pydantic-1.10.18-py3-none-any.whl": (
        "pydantic==1.10.18", "06a189b81ffc52746ec9c8c007f16e5167c8b0a696e1a726369327e3db7b2a82"),
    "typing_extensions-4.12.2-py3-none-any.whl": (
        "typing_extensions==4.12.2",
        "04e5ca0351e0f3f85c6853954072df659d0d13fac324d0072316b67d7794700d"),
    "requests-2.32.3-py3-none-any.whl": (
        "requests==2.32.3", "70761cfe03c773ceb22aa2f671b4757976145175cdfca038c02654d061d6dcc6"),
    "urllib3-2.2.3-py3-none-any.whl": (
        "urllib3==2.2.3", "ca899ca043dcb1bafa3e262d73aa25c465bfb49e0bd9dd5d59f1d0acba2f8fac"),
    "idna-3.10-py3-none-any.whl": (
        "idna==3.10", "946d195a0d259cbba61165e88e65941f16e9b36ea6ddb97f00452bae8b1287d3"),
    "certifi-2024.8.30-py3-none-any.whl": (
        "certifi==2024.8.30", "922820b53db7a7257ffbda3f597266d435245903d80737e34f8a45ff3e3230d8"),
    "charset_normalizer-3.4.0-py3-none-any.whl": (
        "charset-normalizer==3.4.0",
        "fe9f97feb71aa9896b81973a7bbada8c49501dc73e58a10fcef6663af95e5079"),
    "httpx-0.27.2-py3-none-any.whl": (
        "httpx==0.27.2", "7bb2708e112d8fdd7829cd4243970f0c223274051cb35ee80c03301ee29a3df0"),
    "httpcore-1.0.6-py3-none-any.whl": (
        "httpcore==1.0.6", "27b59625743b85577a8c0e10e55b50b5368a4f2cfe8cc7bcfa9cf00829c2682f"),
    "h11-0.14.0-py3-none-any.whl": (
        "h11==0.14.0", "e3fe4ac4b851c468cc8363d500db52c2ead036020723024a109d37346efaa761"),
    "anyio-4.6.2.post1-py3-none-any.whl": (
        "anyio==4.6.2.post1", "6d170c36fba3bdd840c73d3868c1e777e33676a69c3a72cf0a0d5d6d8009b61d"),
    "sniffio-1.3.1-py3-none-any.whl": (
        "sniffio==1.3.1", "2f6da418d1f1e0fddd844478f41680e794e6051915791a034ff65e5f100525a2"),
    "beautifulsoup4-4.12.3-py3-none-any.whl": (
        "beautifulsoup4==4.12.3",
        "b80878c9f40111313e55da8ba20bdba06d8fa3969fc68304167741bbf9e082ed"),
    "soupsieve-2.6-py3-none-any.whl": (
        "soupsieve==2.6", "e72c4ff06e4fb6e4b5a9f0f55fe6e81514581fca1515028625d0f299c602ccc9"),
    # sympy 1.13 imports ctypes unconditionally (sympy/external/gmpy.py); the guest has no
    # _ctypes (no libffi for WASI). 1.12.1 is the newest that imports without it.
    "sympy-1.12.1-py3-none-any.whl": (
        "sympy==1.12.1", "9b2cbc7f1a640289430e13d2a56f02f867a1da0190f2f99d8968c2f74da0e515"),
    "mpmath-1.3.0-py3-none-any.whl": (
        "mpmath==1.3.0", "a0b2b9fe80bbcd81a6647ff13108738cfb482d481d826cc0e02f5b35e5c88d2c"),
}


def cache_dir() -> str:
    base = os.environ.get("GOERYX_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "goeryx")
    return os.path.join(base, "test-wheels")


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(name: str) -> str:
    """The path of the locked file ``name``, downloaded with pip on first use."""
    requirement, digest = LOCK[name]
    root = cache_dir()
    path = os.path.join(root, name)
    if os.path.exists(path) and _sha256(path) == digest:
        return path
    os.makedirs(root, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        if name.endswith(".whl"):
            how = ["--only-binary=:all:", "--platform", "any", "--python-version", "3.13",
                   "--implementation", "py", "--abi", "none"]
        else:
            how = ["--no-binary=:all:"]
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", *how,
                        "--dest", tmp, requirement], check=True, timeout=600)
        got = os.path.join(tmp, name)
        if not os.path.exists(got):
            raise AssertionError(f"pip download {requirement} did not produce {name}: "
                                 f"{os.listdir(tmp)}")
        if _sha256(got) != digest:
            raise AssertionError(f"{name}: sha256 {_sha256(got)} does not match the lock")
        os.replace(got, path)
    return path


def markupsafe_tgz(dest_dir: str) -> str:
    """MarkupSafe's pure package (``src/markupsafe`` of the sdist, without the C speedups) as
    a ``.tgz`` whose top level is the package: extracted as is, it is importable."""
    out = os.path.join(dest_dir, "markupsafe.tgz")
    if os.path.exists(out):
        return out
    sdist = fetch("MarkupSafe-2.1.5.tar.gz")
    prefix = "MarkupSafe-2.1.5/src/"
    buf = io.BytesIO()
    with tarfile.open(sdist) as src, tarfile.open(fileobj=buf, mode="w:gz") as dst:
        for m in src.getmembers():
            if not m.name.startswith(prefix + "markupsafe") or m.name.endswith(".c"):
                continue
            data = src.extractfile(m).read() if m.isfile() else None
            m.name = m.name[len(prefix):]
            dst.addfile(m, io.BytesIO(data) if data is not None else None)
    with open(out, "wb") as f:
        f.write(buf.getvalue())
    return out


def wheels(*names: str) -> list[str]:
    """Paths of the locked wheels whose file names start with the given project prefixes."""
    out = []
    for prefix in names:
        matches = [n for n in LOCK if n.lower().startswith(prefix.lower() + "-")]
        assert len(matches) == 1, (prefix, matches)
        out.append(fetch(matches[0]))
    return out
