"""LATER SLICE: volumes (API.md §6.4, §6.6, §12).

Enable with ERYX_TEST_LATER=volumes (see conftest.py).
"""

import os

import pytest

import eryx
from _eryxtest import run


@pytest.fixture
def host_dir(tmp_path):
    d = tmp_path / "vol"
    (d / "sub").mkdir(parents=True)
    (d / "hello.txt").write_text("hello volume")
    (d / "sub" / "deep.txt").write_text("deep")
    (tmp_path / "outside.txt").write_text("outside")
    return d


def test_read_only_directory_volume(host_dir):
    with eryx.Sandbox(volumes=[(str(host_dir), "/mnt/in", True)]) as sb:
        r = run(sb, """
            import os
            print(open('/mnt/in/hello.txt').read(), sorted(os.listdir('/mnt/in')))
            print(open('/mnt/in/sub/deep.txt').read())
            for op in (lambda: open('/mnt/in/new.txt', 'w'),
                       lambda: os.remove('/mnt/in/hello.txt'),
                       lambda: os.mkdir('/mnt/in/d'),
                       lambda: open('/mnt/in/hello.txt', 'a')):
                try:
                    op()
                    print('changed')
                except PermissionError:
                    print('PermissionError')
        """)
    assert r.stdout.split("\n") == ["hello volume ['hello.txt', 'sub']", "deep"] + \
        ["PermissionError"] * 4
    assert sorted(os.listdir(host_dir)) == ["hello.txt", "sub"]


def test_read_write_volume_reaches_host_immediately(host_dir):
    with eryx.Session(volumes=[(host_dir, "/mnt/rw", False)]) as s:
        s.execute("open('/mnt/rw/out.txt', 'w').write('written by guest')")
        assert (host_dir / "out.txt").read_text() == "written by guest"
        (host_dir / "from_host.txt").write_text("host side")
        assert s.execute("print(open('/mnt/rw/from_host.txt').read())").stdout == "host side"


def test_rw_volume_not_counted_in_max_vfs_bytes(host_dir):
    lim = eryx.ResourceLimits(max_vfs_bytes=10)
    with eryx.Sandbox(volumes=[(str(host_dir), "/mnt/rw", False)], resource_limits=lim) as sb:
        sb.execute("open('/mnt/rw/big.bin', 'wb').write(b'x' * 10000)")
    assert (host_dir / "big.bin").stat().st_size == 10000


def test_single_file_volume(host_dir):
    with eryx.Sandbox(volumes=[(str(host_dir / "hello.txt"), "/etc/renamed.cfg", True)]) as sb:
        r = run(sb, """
            import os
            print(open('/etc/renamed.cfg').read())
            try:
                open('/etc/sub/deep.txt').read()
                print('sibling visible')
            except OSError:
                print('siblings hidden')
        """)
    assert r.stdout == "hello volume\nsiblings hidden"


def test_escapes_are_refused(host_dir, tmp_path):
    os.symlink(tmp_path / "outside.txt", host_dir / "link.txt")
    with eryx.Sandbox(volumes=[(str(host_dir), "/mnt/v", False)]) as sb:
        r = run(sb, """
            out = []
            for p in ('/mnt/v/../outside.txt', '/mnt/v/link.txt'):
                try:
                    out.append(open(p).read())
                except OSError:
                    out.append('refused')
            print(out)
        """)
    assert r.stdout == "['refused', 'refused']"


def test_missing_host_path(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(eryx.InitializationError) as ei:
        eryx.Sandbox(volumes=[(str(missing), "/mnt/x", True)])
    assert str(ei.value) == f"volume host path does not exist: {missing}"


def test_host_path_vanishing_after_construction(tmp_path):
    d = tmp_path / "gone"
    d.mkdir()
    sb = eryx.Sandbox(volumes=[(str(d), "/mnt/g", True)])
    try:
        d.rmdir()
        with pytest.raises(eryx.InitializationError):
            sb.execute("pass")
    finally:
        sb.close()


def test_repr_counts_volumes(host_dir):
    with eryx.Sandbox(volumes=[(str(host_dir), "/mnt/a", True)]) as sb:
        assert repr(sb).endswith("volumes=1)")


@pytest.mark.parametrize("volumes,exc", [
    ("notalist", TypeError),
    ([("a", "/mnt/x")], TypeError),
    ([("HOST", "relative", True)], ValueError),
    ([("HOST", "/", True)], ValueError),
    ([("HOST", "/data", True)], ValueError),
    ([("HOST", "/data/sub", True)], ValueError),
    ([("HOST", "/site-packages", True)], ValueError),
    ([("HOST", "/mnt/a", True), ("HOST", "/mnt/a/b", True)], ValueError),
    ([("HOST", "/mnt/a", "yes")], TypeError),
    ([("HOST\x00", "/mnt/a", True)], ValueError),
])
def test_volume_validation(host_dir, volumes, exc):
    if isinstance(volumes, list):
        volumes = [(item[0].replace("HOST", str(host_dir)),) + tuple(item[1:])
                   for item in volumes]
    with pytest.raises(exc):
        eryx.Sandbox(volumes=volumes)


@pytest.mark.parametrize("guest_path", [
    "/usr/local/lib/python3.13", "/usr/local/lib/python3.13/site", "/usr/local/lib",
    "/usr/local", "/usr/local/bin", "/usr",
])
@pytest.mark.parametrize("cls", [eryx.Sandbox, eryx.Session])
def test_volume_cannot_overlay_the_python_installation(host_dir, guest_path, cls):
    """A volume at, above or below the guest prefix would shadow the stdlib."""
    with pytest.raises(ValueError, match="volume guest_path '.*' overlaps the guest's Python "
                                         "installation under '/usr/local'"):
        cls(volumes=[(str(host_dir), guest_path, True)])
