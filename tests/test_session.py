"""Session: persistence, reset/clear_state, failures, snapshots (API.md §8)."""

import copy
import pickle
import re
import threading
import time

import pytest

import eryx
from _eryxtest import STATE_LOST_SUFFIX, Timer, dedent, run, run_in_thread

TIMEOUT_MS = 300
SNAPSHOT_LIMIT = 10 * 1024 * 1024


# ---------------------------------------------------------------------------
# persistence


def test_state_persists_between_runs(session):
    session.execute("x = 1")
    session.execute("x += 41")
    assert session.execute("print(x)").stdout == "42"


def test_functions_classes_and_imports_persist(session):
    run(session, """
        import json
        def double(n):
            return n * 2
        class Counter:
            def __init__(self):
                self.n = 0
            def inc(self):
                self.n += 1
                return self.n
        c = Counter()
    """)
    session.execute("c.inc()")
    r = session.execute("print(double(21), c.inc(), json.dumps({'k': 1}), type(c).__name__)")
    assert r.stdout == '42 2 {"k": 1} Counter'


def test_module_state_persists(session):
    session.execute("import sys\nsys.session_marker = 'kept'")
    assert session.execute("import sys\nprint(sys.session_marker)").stdout == "kept"


def test_private_data_persists_between_runs(session):
    session.execute("open('/data/notes.txt', 'w').write('remember')")
    assert session.execute("print(open('/data/notes.txt').read())").stdout == "remember"


def test_execution_count(session):
    assert session.execution_count == 0
    session.execute("x = 1")
    assert session.execution_count == 1
    with pytest.raises(eryx.ExecutionError):
        session.execute("raise ValueError('counted')")
    assert session.execution_count == 2
    with pytest.raises(eryx.ExecutionError):
        session.execute("this is not python")
    assert session.execution_count == 3
    # code rejected by validation does not count
    with pytest.raises(ValueError):
        session.execute("x = 1\x00")
    with pytest.raises(ValueError):
        session.execute("x = '\ud800'")
    with pytest.raises(TypeError):
        session.execute(b"x = 1")
    assert session.execution_count == 3
    with pytest.raises(AttributeError):
        session.execution_count = 10


def test_default_limits_have_no_timeout():
    s = eryx.Session()
    try:
        assert s.execution_timeout_ms is None
        assert s.resource_limits == eryx.ResourceLimits(execution_timeout_ms=None)
        lim = s.resource_limits
        assert lim.max_memory_bytes == 134217728
        assert lim.callback_timeout_ms == 10000
        assert lim.max_callback_invocations == 1000
        assert lim.max_fuel is None
        assert s.execute("import time\ntime.sleep(0.3)\nprint('ok')").stdout == "ok"
    finally:
        s.close()


def test_execution_timeout_argument_overrides_resource_limits():
    lim = eryx.ResourceLimits(execution_timeout_ms=30000, max_memory_bytes=96 * 1024 * 1024)
    s = eryx.Session(resource_limits=lim, execution_timeout_ms=TIMEOUT_MS)
    try:
        assert s.execution_timeout_ms == TIMEOUT_MS
        assert s.resource_limits == eryx.ResourceLimits(execution_timeout_ms=TIMEOUT_MS,
                                                        max_memory_bytes=96 * 1024 * 1024)
    finally:
        s.close()
    # with resource_limits given and no override, all six fields apply
    s = eryx.Session(resource_limits=lim)
    try:
        assert s.execution_timeout_ms == 30000
        assert s.resource_limits == lim
    finally:
        s.close()


def test_execution_timeout_property_applies_to_later_runs():
    s = eryx.Session()
    try:
        s.execution_timeout_ms = TIMEOUT_MS
        assert s.execution_timeout_ms == TIMEOUT_MS
        assert s.resource_limits.execution_timeout_ms == TIMEOUT_MS
        with Timer() as t, pytest.raises(eryx.TimeoutError) as ei:
            s.execute("while True:\n    pass")
        assert str(ei.value) == f"execution timed out after {TIMEOUT_MS} ms"
        assert t.elapsed < TIMEOUT_MS / 1000 + 1.5
        s.execution_timeout_ms = None
        assert s.execution_timeout_ms is None
        assert s.execute("import time\ntime.sleep(0.4)\nprint('ok')").stdout == "ok"
    finally:
        s.close()


def test_constructor_execution_timeout():
    s = eryx.Session(execution_timeout_ms=TIMEOUT_MS)
    try:
        assert s.execution_timeout_ms == TIMEOUT_MS
        with pytest.raises(eryx.TimeoutError):
            s.execute("import time\ntime.sleep(5)")
    finally:
        s.close()


# ---------------------------------------------------------------------------
# reset / clear_state


def test_reset(session):
    session.execute("x = 1\nimport sys\nsys.reset_marker = 1")
    session.execute("open('/data/kept.txt', 'w').write('file survives')")
    assert session.execution_count == 2
    assert session.reset() is None
    assert session.execution_count == 0
    r = session.execute(dedent("""
        import sys
        print('x' in globals(), hasattr(sys, 'reset_marker'), __name__)
        print(open('/data/kept.txt').read())
    """))
    assert r.stdout == "False False __main__\nfile survives"
    assert session.execution_count == 1


def test_clear_state(session):
    session.execute("x = 1\ndef f():\n    pass\nimport sys\nsys.clear_marker = 'module state kept'")
    session.execute("open('/data/kept.txt', 'w').write('file survives')")
    assert session.clear_state() is None
    assert session.execution_count == 2
    r = session.execute(dedent("""
        import sys
        print('x' in globals(), 'f' in globals(), sys.clear_marker, __name__)
        print(open('/data/kept.txt').read())
        print(sorted(k for k in globals()
                     if not (k.startswith('__') and k.endswith('__'))
                     and k not in ('sys', 'invoke', 'list_callbacks', 'eryx_guest')))
    """))
    assert r.stdout == "False False module state kept __main__\nfile survives\n[]"
    assert session.execution_count == 3


def test_reset_and_clear_state_keep_result_variable():
    s = eryx.Session(result_variable="answer")
    try:
        s.reset()
        assert s.execute("answer = 1").result == 1
        s.clear_state()
        assert s.execute("answer = 2").result == 2
        assert s.execute("result = 3").result is None
    finally:
        s.close()


def test_reset_keeps_limits():
    s = eryx.Session(execution_timeout_ms=TIMEOUT_MS)
    try:
        s.reset()
        s.clear_state()
        assert s.execution_timeout_ms == TIMEOUT_MS
        with pytest.raises(eryx.TimeoutError):
            s.execute("while True:\n    pass")
    finally:
        s.close()


# ---------------------------------------------------------------------------
# result variable in a session


def test_result_variable_is_deleted_after_each_run(session):
    r = session.execute("result = 5")
    assert r.result == 5
    assert r.result_json == "5"
    with pytest.raises(eryx.ExecutionError) as ei:
        session.execute("print(result)")
    assert ei.value.exc_type == "NameError"
    # also deleted after a failed run
    with pytest.raises(eryx.ExecutionError):
        session.execute("result = 6\nraise ValueError()")
    r = session.execute("print('result' in globals())")
    assert r.stdout == "False"


def test_result_falsy_in_session(session):
    assert session.execute("result = 0").result_json == "0"
    assert session.execute("result = None").result_json == "null"
    assert session.execute("x = 1").result_json is None


# ---------------------------------------------------------------------------
# after failures (§8.3)


def test_state_kept_after_ordinary_exception(session):
    session.execute("a = 1")
    with pytest.raises(eryx.ExecutionError) as ei:
        session.execute("b = 2\nraise RuntimeError('oops')")
    assert ei.value.state_lost is False
    assert str(ei.value).endswith("RuntimeError: oops")
    assert not str(ei.value).endswith(STATE_LOST_SUFFIX)
    r = session.execute("print(a, b)")
    assert r.stdout == "1 2"
    assert r.stderr == ""


def test_state_kept_after_cooperative_timeout():
    s = eryx.Session(execution_timeout_ms=TIMEOUT_MS)
    try:
        s.execute("a = 1")
        with pytest.raises(eryx.TimeoutError) as ei:
            s.execute("b = 2\nwhile True:\n    pass")
        assert ei.value.state_lost is False
        assert str(ei.value) == f"execution timed out after {TIMEOUT_MS} ms"
        assert s.execution_count == 2
        assert s.execute("print(a, b)").stdout == "1 2"
        assert s.execution_count == 3
    finally:
        s.close()


def test_system_exit_keeps_state(session):
    session.execute("a = 1")
    with pytest.raises(eryx.ExecutionError) as ei:
        session.execute("import sys\nsys.exit(3)")
    assert ei.value.exc_type == "SystemExit"
    assert ei.value.state_lost is False
    r = session.execute("b = 2\nimport sys\nsys.exit(0)")
    assert r.stderr == ""
    assert session.execute("print(a, b)").stdout == "1 2"


def test_guest_termination_resets_session(session):
    session.execute("a = 1")
    session.execute("open('/data/before.txt', 'w').write('kept')")
    with pytest.raises(eryx.ExecutionError) as ei:
        session.execute("import os\nos._exit(7)")
    exc = ei.value
    assert exc.exc_type is None
    assert exc.state_lost is True
    assert str(exc).startswith("guest interpreter terminated unexpectedly: ")
    assert str(exc).endswith(STATE_LOST_SUFFIX)
    assert session.execution_count == 0
    r = session.execute("print('a' in globals())\nprint(open('/data/before.txt').read())")
    assert r.stdout == "False\nkept"
    assert session.execution_count == 1


# ---------------------------------------------------------------------------
# snapshots (§8.4)


def test_snapshot_restore_into_fresh_session():
    src = eryx.Session()
    dst = eryx.Session()
    try:
        run(src, """
            x = 42
            name = "sandbox"
            nothing = None
            data = {"k": [1, 2.5, "s"], "t": (1, 2)}
            def scale(n):
                return n * x
            square = lambda v: v * v
            class Point:
                def __init__(self, a, b):
                    self.a, self.b = a, b
                def total(self):
                    return self.a + self.b
            p = Point(3, 4)
        """)
        snap = src.snapshot_state()
        assert isinstance(snap, bytes)
        assert len(snap) > 0
        assert src.last_snapshot_skipped == []
        assert dst.restore_state(snap) is None
        r = run(dst, """
            print(x, name, nothing is None, 'nothing' in globals())
            print(data)
            print(scale(2), square(5), p.total(), type(p).__name__, isinstance(p, Point))
        """)
        assert r.stdout == ("42 sandbox True True\n"
                            "{'k': [1, 2.5, 's'], 't': (1, 2)}\n"
                            "84 25 7 Point True")
    finally:
        src.close()
        dst.close()


def test_restored_functions_are_rebound_to_the_new_globals():
    src = eryx.Session()
    dst = eryx.Session()
    try:
        src.execute("factor = 2\ndef apply(n):\n    return n * factor")
        dst.restore_state(src.snapshot_state())
        dst.execute("factor = 10")
        assert dst.execute("print(apply(3))").stdout == "30"
        # the source session is unaffected
        assert src.execute("print(apply(3))").stdout == "6"
    finally:
        src.close()
        dst.close()


def test_restore_merges_and_keeps_count_and_vfs(session):
    other = eryx.Session()
    try:
        other.execute("x = 42\nshared = 'from snapshot'")
        snap = other.snapshot_state()
    finally:
        other.close()
    session.execute("x = 0\nkeep = 'mine'")
    session.execute("open('/data/f.txt', 'w').write('vfs')")
    count = session.execution_count
    session.restore_state(snap)
    assert session.execution_count == count
    r = session.execute("print(x, keep, shared, open('/data/f.txt').read())")
    assert r.stdout == "42 mine from snapshot vfs"


def test_restore_accepts_bytes_like(session):
    src = eryx.Session()
    try:
        src.execute("v = [1, 2, 3]")
        snap = src.snapshot_state()
    finally:
        src.close()
    session.restore_state(bytearray(snap))
    assert session.execute("print(v)").stdout == "[1, 2, 3]"
    session.execute("v = None")
    session.restore_state(memoryview(snap))
    assert session.execute("print(v)").stdout == "[1, 2, 3]"


def test_restore_into_same_session_after_clear(session):
    session.execute("counter = 5")
    snap = session.snapshot_state()
    session.execute("counter = 99")
    session.restore_state(snap)
    assert session.execute("print(counter)").stdout == "5"
    session.clear_state()
    session.restore_state(snap)
    assert session.execute("print(counter)").stdout == "5"


def test_snapshot_skips_unserialisable_values_in_namespace_order(session):
    assert session.last_snapshot_skipped == []
    run(session, """
        import json
        keep = 1
        gen = (i for i in range(3))
        fh = open('/data/open.txt', 'w')
        also_keep = 'yes'
    """)
    snap = session.snapshot_state()
    assert session.last_snapshot_skipped == ["json", "gen", "fh"]
    skipped = session.last_snapshot_skipped
    skipped.append("mutated")
    assert session.last_snapshot_skipped == ["json", "gen", "fh"]

    fresh = eryx.Session()
    try:
        fresh.restore_state(snap)
        r = fresh.execute("print(keep, also_keep, 'gen' in globals(), 'json' in globals())")
        assert r.stdout == "1 yes False False"
    finally:
        fresh.close()

    session.execute("del json, gen, fh")
    session.snapshot_state()
    assert session.last_snapshot_skipped == []


def test_snapshot_excludes_result_variable_and_dunders(session):
    session.execute("result = 5\nvalue = 1")
    snap = session.snapshot_state()
    fresh = eryx.Session()
    try:
        fresh.restore_state(snap)
        r = fresh.execute("print(__name__, 'result' in globals(), value)")
        assert r.stdout == "__main__ False 1"
    finally:
        fresh.close()


@pytest.mark.parametrize("data", [b"", b"garbage", b"\x00" * 64, b"PK\x03\x04not a snapshot"])
def test_restore_invalid_data(session, data):
    session.execute("kept = 1")
    with pytest.raises(eryx.ExecutionError) as ei:
        session.restore_state(data)
    assert str(ei.value).startswith("invalid snapshot data: ")
    assert session.execute("print(kept)").stdout == "1"


def test_restore_truncated_snapshot(session):
    src = eryx.Session()
    try:
        src.execute("payload = list(range(1000))\ntext = 'x' * 1000")
        snap = src.snapshot_state()
    finally:
        src.close()
    for cut in (len(snap) // 2, len(snap) - 1, 8):
        with pytest.raises(eryx.ExecutionError) as ei:
            session.restore_state(snap[:cut])
        assert str(ei.value).startswith("invalid snapshot data: ")


def test_restore_failure_inside_guest(session):
    src = eryx.Session()
    try:
        run(src, """
            class Bomb:
                def __init__(self):
                    self.armed = True
                def __setstate__(self, state):
                    raise ValueError("cannot restore me")
            bomb = Bomb()
        """)
        snap = src.snapshot_state()
    finally:
        src.close()
    with pytest.raises(eryx.ExecutionError) as ei:
        session.restore_state(snap)
    assert str(ei.value) == "failed to restore snapshot: ValueError: cannot restore me"


@pytest.mark.parametrize("bad", ["text", None, 123, ["list"]])
def test_restore_requires_bytes_like(session, bad):
    with pytest.raises(TypeError):
        session.restore_state(bad)


def test_snapshot_size_limit(session):
    session.execute("big = 'a' * (11 * 1024 * 1024)")
    with pytest.raises(eryx.ResourceLimitError) as ei:
        session.snapshot_state()
    exc = ei.value
    assert exc.limit == "snapshot"
    m = re.fullmatch(r"snapshot is (\d+) bytes, above the 10485760-byte limit", str(exc))
    assert m, str(exc)
    assert int(m.group(1)) > SNAPSHOT_LIMIT
    # the session is still usable
    assert session.execute("print(len(big))").stdout == str(11 * 1024 * 1024)


def test_restore_input_size_limit(session):
    with pytest.raises(eryx.ResourceLimitError) as ei:
        session.restore_state(b"\x00" * (SNAPSHOT_LIMIT + 1))
    assert ei.value.limit == "snapshot"
    assert str(ei.value) == "snapshot is 10485761 bytes, above the 10485760-byte limit"


def test_snapshot_of_empty_session(session):
    snap = session.snapshot_state()
    assert isinstance(snap, bytes)
    assert session.last_snapshot_skipped == []
    fresh = eryx.Session()
    try:
        fresh.execute("x = 1")
        fresh.restore_state(snap)
        assert fresh.execute("print(x)").stdout == "1"
    finally:
        fresh.close()


# ---------------------------------------------------------------------------
# object behaviour


def test_repr():
    s = eryx.Session()
    try:
        assert repr(s) == "Session(execution_count=0)"
        s.execute("pass")
        s.execute("pass")
        assert repr(s) == "Session(execution_count=2)"
    finally:
        s.close()
    store = eryx.VfsStorage()
    s = eryx.Session(vfs=store)
    try:
        assert repr(s) == "Session(execution_count=0, vfs_mount_path='/data')"
    finally:
        s.close()
    s = eryx.Session(vfs=store, vfs_mount_path="/mnt/shared")
    try:
        assert repr(s) == "Session(execution_count=0, vfs_mount_path='/mnt/shared')"
    finally:
        s.close()


def test_repr_does_not_block_while_running():
    s = eryx.Session()
    try:
        t, box = run_in_thread(s.execute, "import time\ntime.sleep(1)")
        time.sleep(0.2)
        with Timer() as timer:
            text = repr(s)
        assert timer.elapsed < 0.5
        assert text == "Session(execution_count=1)"
        t.join(10)
        assert "error" not in box
    finally:
        s.close()


def test_vfs_properties_without_vfs(session):
    assert session.vfs is None
    assert session.vfs_mount_path is None


def test_close_semantics():
    s = eryx.Session()
    s.execute("x = 1")
    assert s.closed is False
    s.close()
    assert s.closed is True
    s.close()
    with pytest.raises(ValueError) as ei:
        s.execute("print(x)")
    assert str(ei.value) == "Session is closed"
    with pytest.raises(AttributeError):
        s.closed = False


def test_context_manager():
    with eryx.Session() as s:
        assert isinstance(s, eryx.Session)
        s.execute("x = 1")
        assert s.execute("print(x)").stdout == "1"
    assert s.closed is True
    with pytest.raises(KeyError):
        with eryx.Session() as s2:
            raise KeyError("not suppressed")
    assert s2.closed is True


@pytest.mark.parametrize("op", [copy.copy, copy.deepcopy, pickle.dumps])
def test_session_cannot_be_copied_or_pickled(session, op):
    with pytest.raises(TypeError):
        op(session)


@pytest.mark.parametrize("kwargs", [{"secrets": {}}, {"scrub_stdout": True},
                                    {"scrub_stderr": False}, {"scrub_result": True},
                                    {"scrub_files": True}, {"mcp": object()}])
def test_sandbox_only_arguments_rejected(kwargs):
    with pytest.raises(TypeError):
        eryx.Session(**kwargs)


def test_operations_from_several_threads_queue(session):
    session.execute("n = 0")

    def bump():
        for _ in range(10):
            session.execute("n += 1")

    threads = [threading.Thread(target=bump) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert session.execute("print(n)").stdout == "30"
    assert session.execution_count == 32


def test_duration_excludes_queue_time(session):
    t, box = run_in_thread(session.execute, "import time\ntime.sleep(0.6)")
    time.sleep(0.15)
    r = session.execute("x = 1")
    t.join(10)
    assert "error" not in box
    assert box["result"].duration_ms >= 590
    assert r.duration_ms < 400


def test_close_during_run_raises_cancelled_error():
    s = eryx.Session()
    t, box = run_in_thread(s.execute, "import time\ntime.sleep(20)")
    time.sleep(0.3)
    with Timer() as timer:
        s.close()
        t.join(5)
    assert not t.is_alive()
    assert timer.elapsed < 5
    assert isinstance(box.get("error"), eryx.CancelledError), box
    assert str(box["error"]) == "Session was closed during execution"


def test_pending_tasks_are_cancelled_when_a_run_ends(session):
    run(session, """
        import asyncio
        log = []
        async def background():
            try:
                await asyncio.sleep(0.2)
                log.append('ran')
            except asyncio.CancelledError:
                log.append('cancelled')
                raise
        task = asyncio.ensure_future(background())
        await asyncio.sleep(0)
    """)
    time.sleep(0.3)
    r = session.execute("import asyncio\nawait asyncio.sleep(0.3)\nprint('ran' in log, task.done())")
    assert r.stdout == "False True"


def test_random_is_reseeded_for_each_new_interpreter():
    code = "import random\nprint(random.getrandbits(64))"
    a, b = eryx.Session(), eryx.Session()
    try:
        va, vb = a.execute(code).stdout, b.execute(code).stdout
        a.reset()
        va2 = a.execute(code).stdout
    finally:
        a.close()
        b.close()
    assert len({va, vb, va2}) == 3
