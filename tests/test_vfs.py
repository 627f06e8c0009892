"""VfsStorage host API and sharing (API.md §9, §8.5, §6.3, §2.1 VFS bytes)."""

import copy
import errno
import pathlib
import pickle
import threading

import pytest

import eryx
from _eryxtest import make_sandbox, run

DEFAULT_MAX = 67108864


# ---------------------------------------------------------------------------
# host API


def test_creation_defaults_and_repr():
    store = eryx.VfsStorage()
    assert store.max_bytes == DEFAULT_MAX
    assert store.used_bytes == 0
    assert store.list() == []
    assert store.list("/") == []
    assert repr(store) == "VfsStorage(files=0, used_bytes=0, max_bytes=67108864)"
    small = eryx.VfsStorage(max_bytes=1000)
    assert small.max_bytes == 1000
    assert repr(small) == "VfsStorage(files=0, used_bytes=0, max_bytes=1000)"


def test_write_and_read(store):
    assert store.write_file("hello.txt", b"hello world") is None
    assert store.read_file("hello.txt") == b"hello world"
    assert type(store.read_file("hello.txt")) is bytes
    store.write_file("hello.txt", bytearray(b"replaced"))
    assert store.read_file("hello.txt") == b"replaced"
    store.write_file("mv.bin", memoryview(b"\x00\x01\x02"))
    assert store.read_file("mv.bin") == b"\x00\x01\x02"
    store.write_file("empty", b"")
    assert store.read_file("empty") == b""


def test_write_requires_bytes_like(store):
    with pytest.raises(TypeError):
        store.write_file("a.txt", "text is not bytes")
    with pytest.raises(TypeError):
        store.write_file("a.txt", None)
    with pytest.raises(FileNotFoundError):
        store.read_file("a.txt")


def test_parents_created_and_listing(store):
    store.write_file("a/b/c.txt", b"x")
    store.write_file("a/z.txt", b"yy")
    store.write_file("a/m/n.txt", b"zzz")
    store.write_file("top.txt", b"")
    assert store.list() == ["a/", "top.txt"]
    assert store.list("a") == ["b/", "m/", "z.txt"]
    assert store.list("/a/b") == ["c.txt"]
    assert store.list(pathlib.PurePosixPath("a") / "m") == ["n.txt"]


def test_listing_is_sorted(store):
    for name in ["zeta", "Alpha", "beta", "_under", "10", "2"]:
        store.write_file(name, b"1")
    assert store.list() == sorted(["zeta", "Alpha", "beta", "_under", "10", "2"])


def test_read_errors(store):
    store.write_file("dir/file.txt", b"x")
    with pytest.raises(FileNotFoundError):
        store.read_file("missing.txt")
    with pytest.raises(FileNotFoundError):
        store.read_file("nodir/file.txt")
    with pytest.raises(IsADirectoryError):
        store.read_file("dir")


def test_list_errors(store):
    store.write_file("file.txt", b"x")
    with pytest.raises(FileNotFoundError):
        store.list("missing")
    with pytest.raises(NotADirectoryError):
        store.list("file.txt")


def test_remove(store):
    store.write_file("d/inner.txt", b"1234")
    store.write_file("f.txt", b"12")
    with pytest.raises(OSError) as ei:
        store.remove("d")
    assert ei.value.errno == errno.ENOTEMPTY
    assert store.remove("d/inner.txt") is None
    assert store.list("d") == []
    store.remove("d")
    store.remove("f.txt")
    assert store.list() == []
    assert store.used_bytes == 0
    with pytest.raises(FileNotFoundError):
        store.remove("f.txt")
    with pytest.raises(FileNotFoundError):
        store.remove("nothing/here")


def test_used_bytes_and_repr_track_contents(store):
    store.write_file("a.bin", b"x" * 100)
    assert store.used_bytes == 100
    store.write_file("sub/b.bin", b"y" * 24)
    assert store.used_bytes == 124
    store.write_file("a.bin", b"x" * 50)
    assert store.used_bytes == 74
    assert repr(store) == "VfsStorage(files=2, used_bytes=74, max_bytes=67108864)"
    store.remove("a.bin")
    assert store.used_bytes == 24


def test_size_properties_are_read_only(store):
    with pytest.raises(AttributeError):
        store.used_bytes = 5
    with pytest.raises(AttributeError):
        store.max_bytes = 5


def test_host_write_beyond_cap_raises_enospc_and_keeps_old_content():
    store = eryx.VfsStorage(max_bytes=100)
    store.write_file("a", b"a" * 60)
    store.write_file("b", b"b" * 40)  # exactly at the cap
    assert store.used_bytes == 100
    with pytest.raises(OSError) as ei:
        store.write_file("c", b"c")
    assert ei.value.errno == errno.ENOSPC
    with pytest.raises(OSError) as ei:
        store.write_file("a", b"A" * 61)
    assert ei.value.errno == errno.ENOSPC
    assert store.read_file("a") == b"a" * 60
    assert store.used_bytes == 100
    with pytest.raises(FileNotFoundError):
        store.read_file("c")
    store.write_file("a", b"A" * 10)  # shrinking is fine
    assert store.used_bytes == 50


def test_paths(store):
    store.write_file("/lead.txt", b"1")
    assert store.read_file("lead.txt") == b"1"
    store.write_file(pathlib.PurePosixPath("p/q.txt"), b"2")
    assert store.read_file("/p/q.txt") == b"2"
    assert store.read_file(pathlib.Path("p") / "q.txt") == b"2"


@pytest.mark.parametrize("bad", ["../escape.txt", "a/../../b", "a/..", "nul\x00.txt", ""])
def test_invalid_paths_raise_value_error(store, bad):
    with pytest.raises(ValueError):
        store.write_file(bad, b"x")
    with pytest.raises(ValueError):
        store.read_file(bad)
    assert store.used_bytes == 0


@pytest.mark.parametrize("bad", ["../x", "a\x00"])
def test_invalid_paths_in_list_and_remove(store, bad):
    with pytest.raises(ValueError):
        store.list(bad)
    with pytest.raises(ValueError):
        store.remove(bad)


@pytest.mark.parametrize("bad", [5, None, b"a.txt"])
def test_path_type(store, bad):
    with pytest.raises(TypeError):
        store.read_file(bad)


@pytest.mark.parametrize("kwargs,exc", [({"max_bytes": -1}, ValueError),
                                        ({"max_bytes": True}, TypeError),
                                        ({"max_bytes": 1.5}, TypeError),
                                        ({"max_bytes": "10"}, TypeError),
                                        ({"size": 10}, TypeError)])
def test_constructor_validation(kwargs, exc):
    with pytest.raises(exc) as ei:
        eryx.VfsStorage(**kwargs)
    if "max_bytes" in kwargs:
        assert "max_bytes" in str(ei.value)


def test_constructor_is_keyword_only():
    with pytest.raises(TypeError):
        eryx.VfsStorage(1000)


@pytest.mark.parametrize("op", [copy.copy, copy.deepcopy, pickle.dumps])
def test_vfs_cannot_be_copied_or_pickled(store, op):
    with pytest.raises(TypeError):
        op(store)


def test_thread_safe_host_writes(store):
    def writer(i):
        for j in range(50):
            store.write_file(f"t{i}/f{j}.bin", bytes([i]) * 10)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.used_bytes == 4 * 50 * 10
    assert store.list() == ["t0/", "t1/", "t2/", "t3/"]
    for i in range(4):
        assert len(store.list(f"t{i}")) == 50


# ---------------------------------------------------------------------------
# sharing with guests (§8.5)


def test_session_writes_are_visible_to_host_and_back(store):
    s = eryx.Session(vfs=store)
    try:
        assert s.vfs is store
        assert s.vfs_mount_path == "/data"
        s.execute("import os\nos.makedirs('/data/out', exist_ok=True)\n"
                  "open('/data/out/r.txt', 'w').write('from guest')")
        assert store.read_file("out/r.txt") == b"from guest"
        assert store.list() == ["out/"]
        store.write_file("in/q.txt", b"from host")
        r = s.execute("print(open('/data/in/q.txt').read())\nimport os\n"
                      "print(sorted(os.listdir('/data')))")
        assert r.stdout == "from host\n['in', 'out']"
    finally:
        s.close()


def test_store_shared_between_sessions_and_sandboxes(store):
    s1 = eryx.Session(vfs=store)
    s2 = eryx.Session(vfs=store)
    sb = eryx.Sandbox(vfs=store)
    try:
        s1.execute("open('/data/shared.txt', 'w').write('one')")
        s2.execute("open('/data/shared.txt', 'a').write(' two')")
        sb.execute("open('/data/shared.txt', 'a').write(' three')")
        # a Sandbox using vfs= sees the store on every run, not a fresh /data
        r = sb.execute("print(open('/data/shared.txt').read())")
        assert r.stdout == "one two three"
        assert s1.execute("print(open('/data/shared.txt').read())").stdout == "one two three"
        assert store.read_file("shared.txt") == b"one two three"
    finally:
        s1.close()
        s2.close()
        sb.close()


def test_store_outlives_sessions_and_survives_reset(store):
    s = eryx.Session(vfs=store)
    s.execute("open('/data/persist.txt', 'w').write('still here')")
    s.reset()
    assert s.execute("print(open('/data/persist.txt').read())").stdout == "still here"
    s.clear_state()
    assert s.execute("print(open('/data/persist.txt').read())").stdout == "still here"
    s.close()
    assert store.read_file("persist.txt") == b"still here"
    s2 = eryx.Session(vfs=store)
    try:
        assert s2.execute("print(open('/data/persist.txt').read())").stdout == "still here"
    finally:
        s2.close()


def test_custom_mount_path(store):
    s = eryx.Session(vfs=store, vfs_mount_path="/mnt/shared")
    try:
        assert s.vfs_mount_path == "/mnt/shared"
        r = run(s, """
            import os
            with open('/mnt/shared/x.txt', 'w') as f:
                f.write('custom')
            print(os.path.exists('/data'))
        """)
        assert r.stdout == "False"
        assert store.read_file("x.txt") == b"custom"
    finally:
        s.close()


@pytest.mark.parametrize("path", ["data", "relative/path", "/"])
def test_invalid_mount_path(store, path):
    with pytest.raises(ValueError):
        eryx.Session(vfs=store, vfs_mount_path=path)


def test_mount_path_requires_vfs():
    with pytest.raises(ValueError):
        eryx.Session(vfs_mount_path="/data")


def test_vfs_argument_type():
    with pytest.raises(TypeError):
        eryx.Session(vfs="/data")
    with pytest.raises(TypeError):
        eryx.Sandbox(vfs={})


def test_guest_write_beyond_store_cap_gets_enospc():
    store = eryx.VfsStorage(max_bytes=1000)
    s = eryx.Session(vfs=store)
    try:
        r = run(s, """
            import errno
            with open('/data/ok.bin', 'wb') as f:
                f.write(b'x' * 600)
            try:
                with open('/data/big.bin', 'wb') as f:
                    f.write(b'y' * 600)
                print('written')
            except OSError as e:
                print(e.errno == errno.ENOSPC)
        """)
        assert r.stdout == "True"
        assert store.read_file("ok.bin") == b"x" * 600
        assert store.used_bytes <= 1000
        with pytest.raises(OSError) as ei:
            store.write_file("host.bin", b"z" * 500)
        assert ei.value.errno == errno.ENOSPC
    finally:
        s.close()


def test_private_data_capped_by_max_vfs_bytes():
    sb = make_sandbox(max_vfs_bytes=1000)
    try:
        r = run(sb, """
            import errno
            with open('/data/a.bin', 'wb') as f:
                f.write(b'x' * 500)
            try:
                with open('/data/b.bin', 'wb') as f:
                    f.write(b'y' * 1000)
                print('written')
            except OSError as e:
                print(e.errno == errno.ENOSPC)
        """)
        assert r.stdout == "True"
    finally:
        sb.close()


def test_max_vfs_bytes_zero_refuses_every_write():
    sb = make_sandbox(max_vfs_bytes=0)
    try:
        r = run(sb, """
            import errno
            try:
                with open('/data/a.bin', 'wb') as f:
                    f.write(b'x')
                print('written')
            except OSError as e:
                print(e.errno == errno.ENOSPC)
        """)
        assert r.stdout == "True"
    finally:
        sb.close()


def test_default_private_cap_is_64_mib(sandbox):
    r = run(sandbox, """
        import errno
        chunk = b'x' * (1024 * 1024)
        written = 0
        try:
            with open('/data/fill.bin', 'wb') as f:
                for _ in range(70):
                    f.write(chunk)
                    f.flush()
                    written += 1
            print('no error')
        except OSError as e:
            print(e.errno == errno.ENOSPC, written)
    """)
    assert r.stdout == "True 64"


def test_sparse_seek_beyond_cap_fails_without_allocating(sandbox):
    r = run(sandbox, """
        import errno
        try:
            with open('/data/sparse.bin', 'wb') as f:
                f.seek(2 ** 40)
                f.write(b'x')
            print('no error')
        except OSError as e:
            print(e.errno == errno.ENOSPC)
    """)
    assert r.stdout == "True"
    assert r.peak_memory_bytes < 128 * 1024 * 1024


def test_session_private_data_is_not_host_reachable_and_survives_reset(session):
    assert session.vfs is None
    session.execute("open('/data/p.txt', 'w').write('private')")
    session.reset()
    assert session.execute("print(open('/data/p.txt').read())").stdout == "private"


def test_session_private_data_is_per_session():
    a, b = eryx.Session(), eryx.Session()
    try:
        a.execute("open('/data/only_a.txt', 'w').write('a')")
        r = b.execute("import os\nprint(os.path.exists('/data/only_a.txt'))")
        assert r.stdout == "False"
    finally:
        a.close()
        b.close()


def test_guest_file_operations(store):
    sb = eryx.Sandbox(vfs=store)
    try:
        r = run(sb, """
            import os, pathlib
            os.makedirs('/data/d1/d2')
            p = pathlib.Path('/data/d1/d2/file.txt')
            p.write_text('hello')
            with open(p, 'r+') as f:
                f.seek(0, 2)
                f.write(' world')
                f.seek(0)
                print(f.read())
            with open(p, 'a') as f:
                f.truncate(5)
            print(os.stat(p).st_size, sorted(os.listdir('/data/d1')))
            os.rename(p, '/data/d1/renamed.txt')
            print(sorted(e.name for e in os.scandir('/data/d1')))
            os.rmdir('/data/d1/d2')
            with open('/data/d1/bin.dat', 'xb') as f:
                f.write(bytes(range(256)))
            try:
                os.symlink('/data/d1/renamed.txt', '/data/link')
                print('linked')
            except OSError:
                print('no links')
        """)
        assert r.stdout == "hello world\n5 ['d2']\n['d2', 'renamed.txt']\nno links"
        assert store.list("d1") == ["bin.dat", "renamed.txt"]
        assert store.read_file("d1/renamed.txt") == b"hello"
        assert store.read_file("d1/bin.dat") == bytes(range(256))
    finally:
        sb.close()


def test_guest_cannot_escape_the_mount(store):
    s = eryx.Session(vfs=store, vfs_mount_path="/mnt/box")
    try:
        r = run(s, """
            results = []
            for p in ['/mnt/box/../../etc/passwd', '/mnt/box/../outside.txt']:
                try:
                    open(p, 'w').write('x')
                    results.append('wrote')
                except OSError:
                    results.append('refused')
            print(results)
        """)
        assert r.stdout == "['refused', 'refused']"
        assert store.list() == []
    finally:
        s.close()


def test_vfs_cap_cannot_be_turned_off():
    sb = eryx.Sandbox(resource_limits=eryx.ResourceLimits.unlimited())
    try:
        r = run(sb, """
            import errno
            chunk = b'x' * (1024 * 1024)
            written = 0
            try:
                with open('/data/fill.bin', 'wb') as f:
                    for _ in range(70):
                        f.write(chunk)
                        f.flush()
                        written += 1
                print('no error')
            except OSError as e:
                print(e.errno == errno.ENOSPC, written)
        """)
        assert r.stdout == "True 64"
    finally:
        sb.close()


def test_unclosed_files_are_flushed_when_collected(store):
    s = eryx.Session(vfs=store)
    try:
        s.execute("f = open('/data/unclosed.txt', 'w')\nf.write('pending data')")
        s.execute("del f\nimport gc\ngc.collect()")
        assert store.read_file("unclosed.txt") == b"pending data"
    finally:
        s.close()


def test_guest_sees_enotempty_and_missing_errors(sandbox):
    r = run(sandbox, """
        import errno, os
        os.makedirs('/data/d/e')
        out = []
        try:
            os.rmdir('/data/d')
        except OSError as e:
            out.append(e.errno == errno.ENOTEMPTY)
        try:
            os.remove('/data/missing')
        except FileNotFoundError:
            out.append(True)
        print(out)
    """)
    assert r.stdout == "[True, True]"
