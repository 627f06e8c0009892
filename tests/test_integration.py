"""Integration: several objects together, edge cases, realistic workflows."""

import json
import struct
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

import eryx
from _eryxtest import TRUNCATION_MARKER, dedent, run

CAP = 16 * 1024 * 1024


# ---------------------------------------------------------------------------
# multiple sandboxes


def test_multiple_sandboxes_are_independent():
    boxes = [eryx.Sandbox() for _ in range(3)]
    try:
        for i, sb in enumerate(boxes):
            r = sb.execute(f"value = {i}\nprint(value * 100)\nresult = value")
            assert r.stdout == str(i * 100)
            assert r.result == i
        for sb in boxes:
            with pytest.raises(eryx.ExecutionError):
                sb.execute("print(value)")
    finally:
        for sb in boxes:
            sb.close()


def test_many_sandboxes_created_and_used_sequentially():
    for i in range(20):
        with eryx.Sandbox() as sb:
            assert sb.execute(f"print({i} ** 2)").stdout == str(i * i)


def test_parallel_sandboxes_in_threads():
    def work(i):
        with eryx.Sandbox() as sb:
            r = sb.execute(dedent(f"""
                import hashlib
                h = hashlib.sha256(b"{i}").hexdigest()
                print(h)
                result = {{"i": {i}, "h": h}}
            """))
            return r.stdout, r.result

    import hashlib
    with ThreadPoolExecutor(max_workers=4) as pool:
        out = list(pool.map(work, range(8)))
    for i, (stdout, result) in enumerate(out):
        h = hashlib.sha256(str(i).encode()).hexdigest()
        assert stdout == h
        assert result == {"i": i, "h": h}


def test_sandbox_and_session_exchange_data_through_shared_store():
    store = eryx.VfsStorage()
    producer = eryx.Session(vfs=store)
    consumer = eryx.Sandbox(vfs=store)
    try:
        run(producer, """
            import json
            records = [{"id": i, "sq": i * i} for i in range(10)]
            with open('/data/records.json', 'w') as f:
                json.dump(records, f)
        """)
        r = run(consumer, """
            import json
            with open('/data/records.json') as f:
                records = json.load(f)
            result = sum(r["sq"] for r in records)
        """)
        assert r.result == sum(i * i for i in range(10))
        assert json.loads(store.read_file("records.json"))[3] == {"id": 3, "sq": 9}
    finally:
        producer.close()
        consumer.close()


# ---------------------------------------------------------------------------
# edge cases


def test_huge_stdout_is_capped_with_marker(sandbox):
    r = run(sandbox, """
        import sys
        chunk = 'x' * (1024 * 1024)
        for _ in range(17):
            sys.stdout.write(chunk)
    """)
    out = r.stdout
    assert out.endswith(TRUNCATION_MARKER)
    body = out[: -len(TRUNCATION_MARKER)]
    assert body.rstrip("\n") == "x" * len(body.rstrip("\n"))
    assert CAP - 1024 * 1024 <= len(body.encode()) <= CAP + 1


def test_huge_stderr_is_capped_with_marker(sandbox):
    r = sandbox.execute("import sys\nsys.stderr.write('e' * (17 * 1024 * 1024))\nprint('ok')")
    assert r.stderr.endswith(TRUNCATION_MARKER)
    assert len(r.stderr.encode()) <= CAP + len(TRUNCATION_MARKER) + 1
    assert r.stdout == "ok"


def test_huge_error_text_is_capped(sandbox):
    with pytest.raises(eryx.ExecutionError) as ei:
        sandbox.execute("import sys\nsys.stderr.write('e' * (17 * 1024 * 1024))\n"
                        "raise ValueError('late')")
    msg = str(ei.value)
    assert msg.endswith(TRUNCATION_MARKER)
    assert len(msg.encode()) <= CAP + len(TRUNCATION_MARKER) + 1
    assert ei.value.exc_type == "ValueError"


def test_output_just_under_the_cap_is_not_truncated(sandbox):
    r = sandbox.execute(f"import sys\nsys.stdout.write('y' * {CAP - 10})")
    assert r.stdout == "y" * (CAP - 10)


def test_deep_recursion_is_recursion_error(sandbox):
    with pytest.raises(eryx.ExecutionError) as ei:
        sandbox.execute("def f(n):\n    return f(n + 1)\nf(0)")
    assert ei.value.exc_type == "RecursionError"
    assert "RecursionError: maximum recursion depth exceeded" in str(ei.value)
    assert sandbox.execute("print('recovered')").stdout == "recovered"


def test_moderate_recursion_works(sandbox):
    r = sandbox.execute("def f(n):\n    return 0 if n == 0 else 1 + f(n - 1)\nprint(f(500))")
    assert r.stdout == "500"


def test_unicode_round_trip(sandbox):
    text = "héllo 🌍 世界 Ω ∞ 😀 עברית"
    r = run(sandbox, f"""
        text = {text!r}
        print(text)
        import sys
        print(text[::-1], file=sys.stderr)
        result = {{"text": text, "len": len(text), "utf8": len(text.encode())}}
    """)
    assert r.stdout == text
    assert r.stderr == text[::-1]
    assert r.result == {"text": text, "len": len(text), "utf8": len(text.encode())}
    assert r.result_json == json.dumps(r.result)  # ensure_ascii=True, default separators
    assert r.result_json.isascii()


def test_unicode_in_exception_message(sandbox):
    with pytest.raises(eryx.ExecutionError) as ei:
        sandbox.execute("raise ValueError('ошибка 💥')")
    assert str(ei.value).endswith("ValueError: ошибка 💥")


def test_very_long_code(sandbox):
    lines = [f"v{i} = {i}" for i in range(20000)]
    lines.append("print(sum(globals()[f'v{i}'] for i in range(20000)))")
    r = sandbox.execute("\n".join(lines))
    assert r.stdout == str(sum(range(20000)))


def test_long_string_literal_in_code(sandbox):
    payload = "z" * (2 * 1024 * 1024)
    r = sandbox.execute(f"s = '{payload}'\nprint(len(s))\nresult = s[:5]")
    assert r.stdout == str(len(payload))
    assert r.result == "zzzzz"


def test_result_too_large(sandbox):
    r = sandbox.execute("result = 'a' * (10 * 1024 * 1024)")
    assert r.result is None
    assert r.result_json is None
    assert r.result_error == "result is too large: 10485762 bytes of JSON (limit 10485760)"


def test_result_just_under_the_limit(sandbox):
    r = sandbox.execute("result = 'a' * (10 * 1024 * 1024 - 2)")
    assert r.result_error is None
    assert len(r.result_json) == 10 * 1024 * 1024
    assert r.result == "a" * (10 * 1024 * 1024 - 2)


def test_many_failures_do_not_break_a_sandbox(sandbox):
    for i in range(15):
        with pytest.raises(eryx.ExecutionError):
            sandbox.execute(f"raise RuntimeError({i})")
        assert sandbox.execute(f"print({i})").stdout == str(i)


# ---------------------------------------------------------------------------
# workflows


def _tzif_paris() -> bytes:
    """A minimal TZif v2 file for Europe/Paris: no transitions, POSIX TZ footer.

    The guest has no tzdata, so the test supplies the zone file itself.
    """
    counts = struct.pack(">6l", 0, 0, 0, 0, 1, 4)
    header = b"TZif2" + b"\0" * 15 + counts
    data = struct.pack(">lBB", 3600, 0, 0) + b"CET\0"
    return header + data + header + data + b"\nCET-1CEST,M3.5.0,M10.5.0/3\n"


def test_complex_workflow_sqlite_json_zoneinfo():
    store = eryx.VfsStorage()
    store.write_file("zoneinfo/Europe/Paris", _tzif_paris())
    sb = eryx.Sandbox(vfs=store)
    try:
        r = run(sb, """
            import json, sqlite3, zoneinfo
            from datetime import datetime, timezone

            try:
                zoneinfo.ZoneInfo("Europe/Paris")
                builtin_tz = "found"
            except zoneinfo.ZoneInfoNotFoundError:
                builtin_tz = "missing"
            zoneinfo.reset_tzpath(["/data/zoneinfo"])
            paris = zoneinfo.ZoneInfo("Europe/Paris")

            con = sqlite3.connect("/data/app.db")
            con.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, name TEXT, ts TEXT)")
            rows = [(f"event-{i}", datetime(2024, 1 + i, 15, 12, tzinfo=timezone.utc).isoformat())
                    for i in range(6)]
            con.executemany("INSERT INTO events (name, ts) VALUES (?, ?)", rows)
            con.commit()

            # a rolled-back transaction leaves no trace
            con.execute("INSERT INTO events (name, ts) VALUES ('ghost', 'never')")
            con.rollback()
            count = con.execute("SELECT COUNT(*) FROM events").fetchone()[0]
            con.close()

            con = sqlite3.connect("/data/app.db")
            local = []
            for name, ts in con.execute("SELECT name, ts FROM events ORDER BY id"):
                dt = datetime.fromisoformat(ts).astimezone(paris)
                local.append({"name": name, "local": dt.strftime("%H:%M %Z")})
            con.close()

            with open("/data/report.json", "w") as f:
                json.dump(local, f)
            print(builtin_tz, count)
            result = local
        """)
        assert r.stdout == "found 6"  # the runtime ships tzdata (guest runtime issue)
        expected = [{"name": f"event-{i}", "local": t} for i, t in enumerate(
            ["13:00 CET", "13:00 CET", "13:00 CET", "14:00 CEST", "14:00 CEST", "14:00 CEST"])]
        assert r.result == expected
        assert json.loads(store.read_file("report.json")) == expected
        assert store.read_file("app.db")[:16] == b"SQLite format 3\x00"
        # a later run of the same sandbox sees the database in the shared store
        r2 = sb.execute("import sqlite3\ncon = sqlite3.connect('/data/app.db')\n"
                        "print(con.execute('SELECT COUNT(*) FROM events').fetchone()[0])")
        assert r2.stdout == "6"
    finally:
        sb.close()


def test_sqlite_in_private_data(sandbox):
    r = run(sandbox, """
        import sqlite3
        con = sqlite3.connect('/data/t.db')
        with con:
            con.execute('CREATE TABLE t (x INTEGER)')
            con.executemany('INSERT INTO t VALUES (?)', [(i,) for i in range(100)])
        try:
            with con:
                con.execute('INSERT INTO t VALUES (1000)')
                raise RuntimeError('abort transaction')
        except RuntimeError:
            pass
        print(con.execute('SELECT COUNT(*), SUM(x) FROM t').fetchone())
        con.close()
    """)
    assert r.stdout == "(100, 4950)"


def test_session_workflow_with_snapshot_handoff():
    a = eryx.Session()
    b = eryx.Session()
    try:
        run(a, """
            import dataclasses
            inventory = {}
            def add(item, qty):
                inventory[item] = inventory.get(item, 0) + qty
                return inventory[item]
        """)
        a.execute("add('apple', 3)")
        a.execute("add('pear', 2)")
        assert a.execute("result = add('apple', 4)").result == 7
        snap = a.snapshot_state()
        assert a.last_snapshot_skipped == ["dataclasses"]
        b.restore_state(snap)
        r = b.execute("add('kiwi', 1)\nresult = dict(sorted(inventory.items()))")
        assert r.result == {"apple": 7, "kiwi": 1, "pear": 2}
        # the original session is unaffected
        assert a.execute("result = sorted(inventory)").result == ["apple", "pear"]
    finally:
        a.close()
        b.close()


def test_stdlib_computation(sandbox):
    r = run(sandbox, """
        import decimal, fractions, re, statistics, itertools, collections, hashlib, base64, zlib
        decimal.getcontext().prec = 30
        d = decimal.Decimal(1) / decimal.Decimal(7)
        words = re.findall(r"[a-z]+", "the quick brown fox jumps over the lazy dog the end")
        common = collections.Counter(words).most_common(1)[0]
        data = zlib.compress(b"a" * 1000)
        result = {
            "dec": str(d),
            "frac": str(fractions.Fraction(3, 4) + fractions.Fraction(1, 4)),
            "mean": statistics.mean([1, 2, 3, 4]),
            "perms": len(list(itertools.permutations(range(5)))),
            "common": list(common),
            "md5": hashlib.md5(b"eryx").hexdigest(),
            "b64": base64.b64encode(b"eryx").decode(),
            "zlen": len(zlib.decompress(data)),
        }
    """)
    import hashlib
    assert r.result == {
        "dec": "0.142857142857142857142857142857",
        "frac": "1",
        "mean": 2.5,
        "perms": 120,
        "common": ["the", 3],
        "md5": hashlib.md5(b"eryx").hexdigest(),
        "b64": "ZXJ5eA==",
        "zlen": 1000,
    }


def test_concurrent_sessions_keep_separate_state():
    sessions = [eryx.Session() for _ in range(3)]
    try:
        def work(idx):
            s = sessions[idx]
            s.execute(f"total = {idx}")
            for _ in range(5):
                s.execute(f"total += {idx}")
            return s.execute("result = total").result

        with ThreadPoolExecutor(max_workers=3) as pool:
            totals = list(pool.map(work, range(3)))
        assert totals == [0, 6, 12]
        assert [s.execution_count for s in sessions] == [7, 7, 7]
    finally:
        for s in sessions:
            s.close()


def test_output_and_timeout_together():
    sb = eryx.Sandbox(resource_limits=eryx.ResourceLimits(execution_timeout_ms=400))
    try:
        with pytest.raises(eryx.TimeoutError):
            sb.execute("import time\nfor i in range(100):\n    print(i)\n    time.sleep(0.05)")
        r = sb.execute("print('next run is clean')")
        assert r.stdout == "next run is clean"
        assert r.stderr == ""
    finally:
        sb.close()


def test_thread_safety_of_close_and_execute_mix():
    sb = eryx.Sandbox()
    errors = []

    def worker():
        for _ in range(5):
            try:
                sb.execute("x = 1")
            except ValueError as exc:
                if str(exc) != "Sandbox is closed":
                    errors.append(exc)
            except eryx.CancelledError:
                pass
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    sb.close()
    for t in threads:
        t.join(30)
    assert errors == []
    assert sb.closed


@pytest.mark.parametrize("code", [
    # Python recursion with the limit lifted: frames grow until a limit stops them
    "import sys\nsys.setrecursionlimit(10 ** 6)\ndef f(n):\n    return f(n + 1) + 1\nf(0)",
    # recursion inside C code (repr of a deeply nested list)
    "import sys\nsys.setrecursionlimit(10 ** 6)\nx = []\nfor _ in range(300000):\n"
    "    x = [x]\nrepr(x)",
])
@pytest.mark.parametrize("cls", ["Sandbox", "Session"])
def test_stack_exhaustion_is_contained(cls, code):
    # a smaller memory cap keeps the run short when frames fill memory
    obj = getattr(eryx, cls)(resource_limits=eryx.ResourceLimits(
        execution_timeout_ms=None, max_memory_bytes=48 * 1024 * 1024))
    try:
        with pytest.raises(eryx.EryxError) as ei:
            obj.execute(code)
        exc = ei.value
        if isinstance(exc, eryx.ResourceLimitError):
            assert exc.limit == "max_memory_bytes"
        else:
            assert isinstance(exc, eryx.ExecutionError), repr(exc)
            assert exc.exc_type in ("RecursionError", "MemoryError", None), exc.exc_type
            if exc.exc_type is None:
                assert str(exc).startswith("guest interpreter terminated unexpectedly: ")
        assert obj.execute("print('still usable')").stdout == "still usable"
    finally:
        obj.close()
