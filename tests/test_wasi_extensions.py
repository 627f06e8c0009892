"""Native extension modules in the guest (API.md §10): the WASI wheels that ./build.sh
cross-compiles into dist/wasi/ (runtime/wheels/: markupsafe, msgpack, PyYAML, each with its C
extension as a WebAssembly side module) loaded by a SandboxFactory, and foreign native modules
refused with the contract's messages.
"""

from __future__ import annotations

import glob
import os
import zipfile

import pytest

import eryx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TAG = "cp313-cp313-wasi_0_0_0_wasm32"


def _wheel(dist: str) -> str:
    found = glob.glob(os.path.join(ROOT, "dist", "wasi", f"{dist}-*-{TAG}.whl"))
    assert found, f"no {dist} wheel in dist/wasi: run ./build.sh"
    return found[0]


@pytest.fixture(scope="module")
def wheels():
    return [_wheel("markupsafe"), _wheel("msgpack"), _wheel("pyyaml")]


@pytest.fixture(scope="module")
def factory(wheels):
    with eryx.SandboxFactory(packages=wheels, imports=["markupsafe", "msgpack", "yaml"]) as f:
        yield f


def test_wheels_are_tagged_for_the_guest(wheels):
    for w in wheels:
        with zipfile.ZipFile(w) as zf:
            sos = [n for n in zf.namelist() if n.endswith(".so")]
            assert sos and all(n.endswith(".cpython-313-wasm32-wasi.so") for n in sos), sos
            wheel_meta = next(n for n in zf.namelist() if n.endswith(".dist-info/WHEEL"))
            assert f"Tag: {TAG}" in zf.read(wheel_meta).decode()


def test_markupsafe_speedups(factory):
    with factory.create_sandbox() as sb:
        r = sb.execute(
            "import markupsafe, markupsafe._speedups as s\n"
            "print(markupsafe._escape_inner is s._escape_inner)\n"
            "print(markupsafe.escape('<a href=\"x\">Tom & \\'Jerry\\'</a>'))\n"
            "print(markupsafe.Markup('<b>%s</b>') % '<i>')\n"
            "print(len(markupsafe.escape('<' * 100000)))")
        assert r.stdout == ("True\n&lt;a href=&#34;x&#34;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;\n"
                            "<b>&lt;i&gt;</b>\n400000")


def test_msgpack_cmsgpack_round_trips(factory):
    with factory.create_sandbox() as sb:
        r = sb.execute(
            "import msgpack, datetime\n"
            "print(msgpack.Packer.__module__, msgpack.Unpacker.__module__)\n"
            "d = {'a': [1, -2**63, 2**64 - 1, 2.5, b'\\x00\\xff', None, True], 'b': {'c': '\\u00e9' * 1000},"
            " 't': datetime.datetime(2024, 1, 2, tzinfo=datetime.timezone.utc)}\n"
            "b = msgpack.packb(d, datetime=True)\n"
            "print(msgpack.unpackb(b, timestamp=3) == d, len(b))\n"
            "u = msgpack.Unpacker(timestamp=3)\n"
            "for i in range(0, len(b), 7): u.feed(b[i:i+7])\n"
            "print(next(u) == msgpack.unpackb(b, timestamp=3))\n"
            "try:\n    msgpack.unpackb(b'\\xc1')\nexcept Exception as e:\n    print(type(e).__name__)")
        assert r.stdout.splitlines()[0] == "msgpack._cmsgpack msgpack._cmsgpack"
        assert r.stdout.splitlines()[1].startswith("True ")
        assert r.stdout.splitlines()[2:] == ["True", "FormatError"]


def test_yaml_c_loader_and_dumper(factory):
    with factory.create_sandbox() as sb:
        r = sb.execute(
            "import yaml\n"
            "import yaml._yaml\nprint(yaml.__with_libyaml__, yaml.cyaml.CParser.__module__)\n"
            "doc = {'name': 'x', 'list': [1, 2.5, None, True], 'nested': {'k': 'v\\u00e9'}}\n"
            "s = yaml.dump(doc, Dumper=yaml.CDumper, allow_unicode=True, sort_keys=True)\n"
            "print(yaml.load(s, Loader=yaml.CLoader) == doc)\n"
            "print(yaml.load('a: [1, 2]\\nb: {c: d}', Loader=yaml.CSafeLoader))\n"
            "try:\n    yaml.load('a: [1, 2', Loader=yaml.CLoader)\nexcept yaml.YAMLError as e:\n"
            "    print(type(e).__name__)")
        assert r.stdout == "True yaml._yaml\nTrue\n{'a': [1, 2], 'b': {'c': 'd'}}\nParserError"


def test_extension_imported_in_a_sandbox_not_pre_imported(wheels):
    # loaded by the sandbox's own import (not captured in the image)
    with eryx.SandboxFactory(packages=wheels) as f, f.create_sandbox() as sb:
        r = sb.execute("import sys; print('markupsafe' in sys.modules)\n"
                       "import markupsafe, markupsafe._speedups\nprint(markupsafe.escape('<>'))")
        assert r.stdout == "False\n&lt;&gt;"


def test_factory_file_round_trip(factory, tmp_path):
    path = tmp_path / "ext.factory"
    factory.save(str(path))
    with eryx.SandboxFactory.load(str(path)) as g, g.create_sandbox() as sb:
        r = sb.execute("import msgpack, markupsafe, yaml\n"
                       "print(msgpack.unpackb(msgpack.packb([1, 'x'])), markupsafe.escape('&'),"
                       " yaml.dump([1], Dumper=yaml.CDumper).strip())")
        assert r.stdout == "[1, 'x'] &amp; - 1"


def test_sessions_keep_state_with_extensions(factory):
    with factory.create_session() as s:
        s.execute("import msgpack\np = msgpack.Packer()\nbuf = p.pack({'k': 1})")
        assert s.execute("print(msgpack.unpackb(buf))").stdout == "{'k': 1}"


# ---------------------------------------------------------------------------------------------
# Foreign native modules (the contract's error table)


def _member(wheel: str, suffix: str) -> bytes:
    with zipfile.ZipFile(wheel) as zf:
        return zf.read(next(n for n in zf.namelist() if n.endswith(suffix)))


def _repack(tmp_path, members: dict[str, bytes], tag: str, name: str = "natpkg") -> str:
    path = tmp_path / f"{name}-1.0-{tag}.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for m, data in members.items():
            zf.writestr(m, data)
    return str(path)


def _refused(path, member, reason):
    with pytest.raises(eryx.InitializationError) as ei:
        eryx.SandboxFactory(packages=[path])
    assert str(ei.value) == (f"{path}: native extension module '{member}' cannot be loaded by "
                             f"this guest runtime: {reason}")


def test_cp314_build_refused(tmp_path, wheels):
    so = _member(wheels[0], ".so")
    member = "natpkg/_speedups.cpython-314-wasm32-wasi.so"
    path = _repack(tmp_path, {"natpkg/__init__.py": b"", member: so}, "cp314-cp314-wasi_0_0_0_wasm32")
    _refused(path, member, "built for cp314, the guest is CPython 3.13")


def test_host_elf_refused(tmp_path):
    import _ctypes  # a real ELF shared library of the host Python
    elf = open(_ctypes.__file__, "rb").read()
    assert elf[:4] == b"\x7fELF"
    member = "natpkg/_x.so"
    path = _repack(tmp_path, {"natpkg/__init__.py": b"", member: elf}, TAG)
    _refused(path, member, "not a WebAssembly module")


def test_garbage_refused(tmp_path):
    member = "natpkg/_x.cpython-313-wasm32-wasi.so"
    path = _repack(tmp_path, {"natpkg/__init__.py": b"", member: os.urandom(4096)}, TAG)
    _refused(path, member, "not a WebAssembly module")
    # a wasm header then garbage: a dylink.0 section that does not parse
    bad = b"\x00asm\x01\x00\x00\x00\x00\x0a\x08dylink.0\x01\xff"
    path = _repack(tmp_path, {"natpkg/__init__.py": b"", member: bad}, TAG, name="natpkg2")
    _refused(path, member, "malformed WebAssembly module: malformed section: truncated")


def test_unknown_import_refused(tmp_path, wheels):
    so = _member(wheels[0], ".so")
    assert b"PyUnicode_New" in so
    so = so.replace(b"PyUnicode_New", b"PyUnicode_Nwx", 1)
    member = "natpkg/_speedups.cpython-313-wasm32-wasi.so"
    path = _repack(tmp_path, {"natpkg/__init__.py": b"", member: so}, TAG)
    _refused(path, member, "imports the function 'PyUnicode_Nwx', which this guest runtime does not provide")


def test_unknown_import_at_guest_import_time(tmp_path, wheels):
    # a module the factory never saw (written by user code): the guest's import raises
    so = _member(wheels[0], ".so").replace(b"PyUnicode_New", b"PyUnicode_Nwx", 1)
    vol = tmp_path / "vol"
    (vol / "badpkg").mkdir(parents=True)
    (vol / "badpkg" / "__init__.py").write_text("from ._speedups import escape\n")
    (vol / "badpkg" / "_speedups.cpython-313-wasm32-wasi.so").write_bytes(so)
    with eryx.Sandbox(volumes=[(str(vol), "/vol", True)]) as sb:
        r = sb.execute("import sys\nsys.path.insert(0, '/vol')\ntry:\n    import badpkg\n"
                       "except ImportError as e:\n    print(e)\nprint('still here')")
    assert r.stdout == ("/vol/badpkg/_speedups.cpython-313-wasm32-wasi.so: cannot be loaded by this "
                        "guest runtime: imports the function 'PyUnicode_Nwx', which this guest runtime "
                        "does not provide\nstill here")
