"""LATER SLICE: SandboxFactory (API.md §10).

Enable with ERYX_TEST_LATER=factory (see conftest.py).
"""

import copy
import os
import pickle
import zipfile

import pytest

import eryx


def _make_pkg_dir(root, name="mypkg", body="VALUE = 41\n"):
    pkg = root / name
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(body)
    return pkg


def _make_wheel(root, name="wheelpkg", tag="py3-none-any"):
    path = root / f"{name}-1.0-{tag}.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{name}/__init__.py", "def hello():\n    return 'from wheel'\n")
        zf.writestr(f"{name}-1.0.dist-info/METADATA",
                    f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
        zf.writestr(f"{name}-1.0.dist-info/WHEEL",
                    f"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: {tag}\n")
        zf.writestr(f"{name}-1.0.dist-info/RECORD", "")
    return path


@pytest.fixture(scope="module")
def plain_factory():
    f = eryx.SandboxFactory()
    yield f
    f.close()


def test_default_factory_creates_sandboxes(plain_factory):
    with plain_factory.create_sandbox() as sb:
        assert isinstance(sb, eryx.Sandbox)
        assert sb.execute("print(1 + 1)").stdout == "2"
    assert plain_factory.size_bytes == len(plain_factory.to_bytes())
    assert repr(plain_factory) == f"SandboxFactory(size_bytes={plain_factory.size_bytes}, imports=[])"


def test_packages_and_imports(tmp_path):
    pkg = _make_pkg_dir(tmp_path / "src")
    whl = _make_wheel(tmp_path)
    before = sorted(p.name for p in (tmp_path / "src").iterdir())
    with eryx.SandboxFactory(packages=[str(pkg), whl], imports=["mypkg"]) as f:
        assert repr(f).endswith("imports=['mypkg'])")
        with f.create_sandbox(resource_limits=eryx.ResourceLimits(execution_timeout_ms=5000)) as sb:
            r = sb.execute("import sys\nprint('mypkg' in sys.modules, 'mypkg' in globals())\n"
                           "import mypkg, wheelpkg\nprint(mypkg.VALUE + 1, wheelpkg.hello())\n"
                           "print('/site-packages' in sys.path)")
            assert r.stdout == "True False\n42 from wheel\nTrue"
            with pytest.raises(eryx.ExecutionError):
                sb.execute("open('/site-packages/evil.py', 'w')")
    # caller-owned directories are never written
    assert sorted(p.name for p in (tmp_path / "src").iterdir()) == before
    assert sorted(os.listdir(pkg)) == ["__init__.py"]


def test_sandboxes_from_one_factory_do_not_share_state(plain_factory):
    a, b = plain_factory.create_sandbox(), plain_factory.create_sandbox()
    try:
        a.execute("import builtins\nbuiltins.leak = 1")
        assert b.execute("import builtins\nprint(hasattr(builtins, 'leak'))").stdout == "False"
        code = "import random\nprint(random.getrandbits(64))"
        assert a.execute(code).stdout != b.execute(code).stdout
    finally:
        a.close()
        b.close()


def test_save_load_and_from_bytes(tmp_path, plain_factory):
    path = tmp_path / "f.eryx"
    plain_factory.save(path)
    assert path.read_bytes() == plain_factory.to_bytes()
    for f in (eryx.SandboxFactory.load(path), eryx.SandboxFactory.load(str(path)),
              eryx.SandboxFactory.from_bytes(path.read_bytes())):
        with f, f.create_sandbox() as sb:
            assert sb.execute("print('loaded')").stdout == "loaded"


def test_load_validates_header_immediately(tmp_path):
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"definitely not a factory")
    with pytest.raises(eryx.InitializationError) as ei:
        eryx.SandboxFactory.load(bad)
    assert str(ei.value) == f"{bad} is not a goeryx factory file"
    with pytest.raises(eryx.InitializationError):
        eryx.SandboxFactory.from_bytes(b"junk")
    with pytest.raises(TypeError):
        eryx.SandboxFactory.from_bytes("text")
    missing = tmp_path / "missing.bin"
    with pytest.raises(eryx.InitializationError) as ei:
        eryx.SandboxFactory.load(missing)
    assert str(ei.value).startswith(f"failed to load factory from {missing}: ")


def test_package_errors(tmp_path):
    missing = tmp_path / "nope.whl"
    with pytest.raises(eryx.InitializationError) as ei:
        eryx.SandboxFactory(packages=[str(missing)])
    assert str(ei.value) == f"package not found: {missing}"
    odd = tmp_path / "pkg.rar"
    odd.write_bytes(b"x")
    with pytest.raises(eryx.InitializationError) as ei:
        eryx.SandboxFactory(packages=[str(odd)])
    assert str(ei.value) == (f"cannot detect package format for {odd}: "
                             "expected .whl, .tar.gz, .tgz or a directory")
    plat = _make_wheel(tmp_path, name="platpkg", tag="cp313-cp313-manylinux_2_17_x86_64")
    with pytest.raises(eryx.InitializationError) as ei:
        eryx.SandboxFactory(packages=[str(plat)])
    assert str(ei.value) == (f"{plat}: wheel is built for 'cp313-cp313-manylinux_2_17_x86_64', "
                             "not for pure Python or WASI")


def test_unsafe_archive_member(tmp_path):
    path = tmp_path / "evil-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("../escape.py", "x = 1\n")
    with pytest.raises(eryx.InitializationError) as ei:
        eryx.SandboxFactory(packages=[str(path)])
    assert str(ei.value) == f"{path}: unsafe archive member '../escape.py'"


def test_pre_import_failure(tmp_path):
    pkg = _make_pkg_dir(tmp_path, name="broken", body="raise ValueError('bad import')\n")
    with pytest.raises(eryx.InitializationError) as ei:
        eryx.SandboxFactory(packages=[str(pkg)], imports=["broken"])
    assert str(ei.value) == "pre-import of 'broken' failed: ValueError: bad import"


@pytest.mark.parametrize("imports", [["not a module"], ["a..b"], "json"])
def test_imports_validation(imports):
    with pytest.raises((ValueError, TypeError)):
        eryx.SandboxFactory(imports=imports)


def test_factory_close_and_copy(plain_factory):
    for op in (copy.copy, copy.deepcopy, pickle.dumps):
        with pytest.raises(TypeError):
            op(plain_factory)
    f = eryx.SandboxFactory()
    sb = f.create_sandbox()
    f.close()
    f.close()
    assert f.closed is True
    assert sb.execute("print('still works')").stdout == "still works"
    sb.close()
