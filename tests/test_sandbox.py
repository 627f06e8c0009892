"""Sandbox: execution, output, errors, isolation, results (API.md §4, §5, §6.1-6.2, §6.6)."""

import copy
import json
import os
import pickle
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import eryx
from _eryxtest import DEFAULT_LIMITS_REPR, Timer, dedent, run, run_in_thread

# ---------------------------------------------------------------------------
# basic execution and output capture


def test_hello_world(sandbox):
    r = sandbox.execute('print("Hello from sandbox!")')
    assert isinstance(r, eryx.ExecuteResult)
    assert r.stdout == "Hello from sandbox!"
    assert r.stderr == ""
    assert str(r) == "Hello from sandbox!"


def test_multiline_output(sandbox):
    r = run(sandbox, """
        for i in range(3):
            print("line", i)
    """)
    assert r.stdout == "line 0\nline 1\nline 2"


def test_stderr_capture(sandbox):
    r = run(sandbox, """
        import sys
        print("to err", file=sys.stderr)
        sys.stderr.write("more\\n")
        print("to out")
    """)
    assert r.stderr == "to err\nmore"
    assert r.stdout == "to out"


@pytest.mark.parametrize("code,expected", [
    ('print("a\\n\\n")', "a"),
    ('import sys; sys.stdout.write("x\\r\\n")', "x\r"),
    ('import sys; sys.stdout.write("  x  \\n\\n\\n")', "  x  "),
    ('import sys; sys.stdout.write("\\n\\nx")', "\n\nx"),
    ('import sys; sys.stdout.write("\\n\\n\\n")', ""),
    ('import sys; sys.stdout.write("a\\n \\n")', "a\n "),
    ('import sys; sys.stdout.write("tab\\t")', "tab\t"),
    ('print()', ""),
])
def test_stdout_trimming_rules(sandbox, code, expected):
    assert sandbox.execute(code).stdout == expected


def test_stderr_trimming_rules(sandbox):
    r = sandbox.execute('import sys; sys.stderr.write("\\n e \\r\\n\\n")')
    assert r.stderr == "\n e \r"


def test_fd_level_writes_are_captured_in_order(sandbox, capfd):
    r = run(sandbox, """
        import os
        print("a")
        os.write(1, b"b\\n")
        print("c")
        os.write(2, b"fd2\\n")
    """)
    assert r.stdout == "a\nb\nc"
    assert r.stderr == "fd2"
    # guest output never reaches the host process's own stdout/stderr
    out, err = capfd.readouterr()
    assert out == ""
    assert err == ""


def test_invalid_utf8_replaced(sandbox):
    r = sandbox.execute('import os; os.write(1, b"ok\\xff\\xfe!\\n")')
    assert r.stdout == "ok\ufffd\ufffd!"


def test_unicode_output(sandbox):
    text = "héllo 世界 🎉 ∑ ñ"
    r = sandbox.execute(f"print({text!r})\nimport sys; print({text!r}, file=sys.stderr)")
    assert r.stdout == text
    assert r.stderr == text


def test_streams_are_utf8_text_streams(sandbox):
    r = run(sandbox, """
        import sys
        print(sys.stdout.isatty(), sys.stderr.isatty())
        print(sys.stdout.encoding.lower().replace("-", ""))
        sys.stdout.buffer.write("é\\n".encode())
        sys.stdout.flush()
    """)
    assert r.stdout == "False False\nutf8\né"


@pytest.mark.parametrize("code", ["", "\n\n", "# just a comment\n", "   \n", "pass"])
def test_empty_code(sandbox, code):
    r = sandbox.execute(code)
    assert r.stdout == ""
    assert r.stderr == ""
    assert r.result is None
    assert r.result_json is None
    assert r.result_error is None


# ---------------------------------------------------------------------------
# isolation


def test_each_run_gets_a_fresh_interpreter(sandbox):
    sandbox.execute("x = 42\nimport sys\nsys.eryx_marker = 1\nsys.modules['fake_mod'] = sys")
    with pytest.raises(eryx.ExecutionError) as ei:
        sandbox.execute("print(x)")
    assert ei.value.exc_type == "NameError"
    r = sandbox.execute(
        "import sys\nprint(hasattr(sys, 'eryx_marker'), 'fake_mod' in sys.modules)")
    assert r.stdout == "False False"


def test_each_run_gets_a_fresh_private_data(sandbox):
    r = sandbox.execute("open('/data/f.txt', 'w').write('hi')\nprint(open('/data/f.txt').read())")
    assert r.stdout == "hi"
    r = sandbox.execute("import os\nprint(os.path.exists('/data/f.txt'), os.listdir('/data'))")
    assert r.stdout == "False []"


def test_sandboxes_do_not_share_state():
    a, b = eryx.Sandbox(), eryx.Sandbox()
    try:
        a.execute("import builtins; builtins.shared_marker = 1")
        r = b.execute("import builtins; print(hasattr(builtins, 'shared_marker'))")
        assert r.stdout == "False"
    finally:
        a.close()
        b.close()


def test_exception_does_not_reappear_in_next_run(sandbox):
    with pytest.raises(eryx.ExecutionError):
        sandbox.execute("raise KeyError('gone')")
    r = sandbox.execute("import sys\nprint(sys.exc_info())")
    assert r.stdout == "(None, None, None)"
    assert r.stderr == ""


# ---------------------------------------------------------------------------
# failures


def test_uncaught_exception_raises_execution_error(sandbox):
    with pytest.raises(eryx.ExecutionError) as ei:
        sandbox.execute('raise ValueError("boom")')
    exc = ei.value
    assert isinstance(exc, eryx.EryxError)
    assert exc.exc_type == "ValueError"
    msg = str(exc)
    assert msg.startswith("Traceback (most recent call last):\n")
    assert msg.endswith("ValueError: boom")
    assert 'File "<user>", line 1, in <module>' in msg
    assert exc.args == (msg,)
    assert exc.state_lost is False


def test_traceback_has_user_frames_only_with_user_line_numbers(sandbox):
    code = dedent("""
        def inner(n):
            if n > 0:
                raise RuntimeError(f"bad {n}")

        def outer():
            inner(3)

        outer()
    """)
    with pytest.raises(eryx.ExecutionError) as ei:
        sandbox.execute(code)
    msg = str(ei.value)
    files = re.findall(r'^  File "([^"]*)", line (\d+), in (\S+)$', msg, re.M)
    assert files == [("<user>", "8", "<module>"), ("<user>", "6", "outer"),
                     ("<user>", "3", "inner")]
    # source lines of the user's code are shown
    assert '    raise RuntimeError(f"bad {n}")' in msg
    assert "    outer()" in msg
    assert msg.endswith("RuntimeError: bad 3")
    assert ei.value.exc_type == "RuntimeError"


def test_execution_error_includes_earlier_stderr_and_stdout(sandbox):
    with pytest.raises(eryx.ExecutionError) as ei:
        run(sandbox, """
            import sys
            print("out line\\n")
            sys.stderr.write("warning: something\\n")
            raise KeyError("k")
        """)
    exc = ei.value
    assert str(exc).startswith("warning: something\nTraceback (most recent call last):\n")
    assert str(exc).endswith("KeyError: 'k'")
    assert exc.stdout == "out line"
    assert exc.exc_type == "KeyError"


def test_exc_type_outside_builtins_is_qualified(sandbox):
    with pytest.raises(eryx.ExecutionError) as ei:
        sandbox.execute("import json\njson.loads('{')")
    assert ei.value.exc_type == "json.decoder.JSONDecodeError"
    with pytest.raises(eryx.ExecutionError) as ei:
        sandbox.execute("class MyError(Exception):\n    pass\nraise MyError('custom')")
    assert ei.value.exc_type == "__main__.MyError"
    assert str(ei.value).endswith("MyError: custom")


def test_syntax_error(sandbox):
    with pytest.raises(eryx.ExecutionError) as ei:
        sandbox.execute("x = 1\ndef broken(:\n    pass\n")
    exc = ei.value
    assert exc.exc_type == "SyntaxError"
    msg = str(exc)
    assert 'File "<user>", line 2' in msg
    assert "SyntaxError" in msg
    assert "def broken(:" in msg
    # it is compiled before it runs: nothing printed
    assert exc.stdout == ""


def test_syntax_error_prevents_any_execution(sandbox):
    with pytest.raises(eryx.ExecutionError) as ei:
        sandbox.execute("print('should not run')\nx = = 1\n")
    assert ei.value.stdout == ""
    assert ei.value.exc_type == "SyntaxError"


@pytest.mark.parametrize("exit_stmt", ["sys.exit()", "sys.exit(0)", "sys.exit(None)",
                                       "raise SystemExit"])
def test_system_exit_zero_is_success_and_result_captured(sandbox, exit_stmt):
    r = sandbox.execute(f"import sys\nprint('before')\nresult = 5\n{exit_stmt}\nprint('after')")
    assert r.stdout == "before"
    assert r.result == 5
    assert r.result_json == "5"


def test_system_exit_nonzero_is_failure(sandbox):
    with pytest.raises(eryx.ExecutionError) as ei:
        sandbox.execute("import sys\nprint('x')\nsys.exit(3)")
    assert ei.value.exc_type == "SystemExit"
    assert ei.value.stdout == "x"
    with pytest.raises(eryx.ExecutionError) as ei:
        sandbox.execute("import sys\nsys.exit('fatal message')")
    assert ei.value.exc_type == "SystemExit"
    # the sandbox keeps working
    assert sandbox.execute("print('ok')").stdout == "ok"


def test_os_exit_terminates_guest(sandbox):
    with pytest.raises(eryx.ExecutionError) as ei:
        sandbox.execute("import os\nprint('before')\nos._exit(1)")
    exc = ei.value
    assert exc.exc_type is None
    assert str(exc).startswith("guest interpreter terminated unexpectedly: ")
    assert len(str(exc)) > len("guest interpreter terminated unexpectedly: ")
    assert sandbox.execute("print('alive')").stdout == "alive"


def test_abort_terminates_guest(sandbox):
    with pytest.raises(eryx.ExecutionError) as ei:
        sandbox.execute("import os\nos.abort()")
    assert ei.value.exc_type is None
    assert str(ei.value).startswith("guest interpreter terminated unexpectedly: ")


# ---------------------------------------------------------------------------
# what the guest sees


def test_main_namespace(sandbox):
    r = run(sandbox, """
        print(__name__)
        print('__file__' in globals())
        extra = [k for k in list(globals())
                 if not (k.startswith('__') and k.endswith('__'))
                 and k not in ('invoke', 'list_callbacks', 'eryx_guest', 'extra')]
        print(extra)
    """)
    assert r.stdout == "__main__\nFalse\n[]"


def test_guest_environment_has_no_host_variables(monkeypatch):
    monkeypatch.setenv("ERYX_TEST_HOST_ONLY_VAR", "host-secret-value-1234")
    host_path = os.environ.get("PATH", "/nonexistent-host-path")
    sb = eryx.Sandbox()
    try:
        r = run(sb, f"""
            import os
            print('ERYX_TEST_HOST_ONLY_VAR' in os.environ)
            print(any('host-secret-value-1234' in v for v in os.environ.values()))
            print({host_path!r} in os.environ.values())
            print(len(os.environ) < 10)
        """)
    finally:
        sb.close()
    assert r.stdout == "False\nFalse\nFalse\nTrue"


def test_platform_is_wasi(sandbox):
    assert sandbox.execute("import sys; print(sys.platform)").stdout == "wasi"


def test_host_files_are_not_visible(sandbox, tmp_path):
    secret = tmp_path / "host_secret.txt"
    secret.write_text("top secret")
    r = run(sandbox, f"""
        import os
        for p in ['/etc/passwd', {str(secret)!r}, '/proc/self/environ']:
            try:
                open(p).read()
                print('READ', p)
            except (FileNotFoundError, PermissionError) as e:
                print(type(e).__name__)
        print(os.path.isdir('/tmp'), os.path.exists({str(tmp_path)!r}))
        top = os.listdir('/')
        print('data' in top, 'etc' in top, 'tmp' in top, 'home' in top, 'root' in top)
    """)
    lines = r.stdout.split("\n")
    assert len(lines) == 5
    assert all(line in ("FileNotFoundError", "PermissionError") for line in lines[:3])
    assert lines[3] == "False False"
    assert lines[4] == "True False False False False"


def test_subprocess_raises_oserror(sandbox):
    r = run(sandbox, """
        import subprocess
        try:
            subprocess.run(['ls', '/'])
            print('ran')
        except OSError as e:
            print('OSError', isinstance(e, OSError))
        import os
        print(hasattr(os, 'fork'))
    """)
    assert r.stdout == "OSError True\nFalse"


def test_threads_cannot_start(sandbox):
    r = run(sandbox, """
        import threading
        t = threading.Thread(target=lambda: None)
        try:
            t.start()
            print('started')
        except RuntimeError:
            print('RuntimeError')
    """)
    assert r.stdout == "RuntimeError"


@pytest.mark.parametrize("module", ["_eryx", "_eryx_async", "ctypes"])
def test_private_and_forbidden_modules_cannot_be_imported(sandbox, module):
    r = sandbox.execute(
        f"try:\n    import {module}\n    print('imported')\nexcept ImportError:\n    print('no')")
    assert r.stdout == "no"


def test_input_raises_eof(sandbox):
    r = sandbox.execute("try:\n    input('prompt? ')\nexcept EOFError:\n    print('EOF')")
    # the prompt may be written to stdout first, as CPython does
    assert r.stdout in ("EOF", "prompt? EOF")


def test_input_uncaught_is_execution_error(sandbox):
    with pytest.raises(eryx.ExecutionError) as ei:
        sandbox.execute("input()")
    assert ei.value.exc_type == "EOFError"


def test_random_differs_between_sandboxes_and_runs():
    code = "import random; print(random.getrandbits(64))"
    a, b = eryx.Sandbox(), eryx.Sandbox()
    try:
        values = [a.execute(code).stdout, b.execute(code).stdout, a.execute(code).stdout,
                  b.execute(code).stdout]
    finally:
        a.close()
        b.close()
    assert len(set(values)) == 4, values


def test_urandom_and_secrets_work(sandbox):
    r = run(sandbox, """
        import os, secrets, random
        a, b = os.urandom(16), os.urandom(16)
        print(len(a), a != b, len(secrets.token_hex(8)), 0 <= random.SystemRandom().random() < 1)
    """)
    assert r.stdout == "16 True 16 True"


def test_clock_is_host_clock_and_utc(sandbox):
    before = time.time()
    r = sandbox.execute("import time; print(repr(time.time())); print(time.timezone)")
    after = time.time()
    guest_now, tz = r.stdout.split("\n")
    assert before - 2 <= float(guest_now) <= after + 2
    assert tz == "0"


def test_time_sleep_blocks(sandbox):
    r = sandbox.execute(
        "import time\nt=time.monotonic()\ntime.sleep(0.2)\nprint(time.monotonic()-t >= 0.19)")
    assert r.stdout == "True"
    assert r.duration_ms >= 190


def test_top_level_await(sandbox):
    r = run(sandbox, """
        import asyncio, time
        async def work(i):
            await asyncio.sleep(0.1)
            return i * 2
        t = time.monotonic()
        out = await asyncio.gather(work(1), work(2), work(3))
        elapsed = time.monotonic() - t
        print(out, 0.09 <= elapsed < 0.29)
        result = out
    """)
    assert r.stdout == "[2, 4, 6] True"
    assert r.result == [2, 4, 6]


def test_asyncio_run_without_top_level_await(sandbox):
    r = run(sandbox, """
        import asyncio
        async def main():
            await asyncio.sleep(0.01)
            return 'done'
        print(asyncio.run(main()))
    """)
    assert r.stdout == "done"


# ---------------------------------------------------------------------------
# result capture (§4.1)


def test_result_capture_exact_json(sandbox):
    r = sandbox.execute('result = {"a": 1, "b": [2, 3]}')
    assert r.result_json == '{"a": 1, "b": [2, 3]}'
    assert r.result == {"a": 1, "b": [2, 3]}
    assert r.result_error is None


def test_result_is_a_new_object_on_each_access(sandbox):
    r = sandbox.execute('result = {"a": [1]}')
    first = r.result
    first["a"].append(2)
    assert r.result == {"a": [1]}
    assert r.result is not r.result


@pytest.mark.parametrize("expr,json_text", [
    ("0", "0"), ("''", '""'), ("[]", "[]"), ("{}", "{}"), ("False", "false"),
    ("0.0", "0.0"), ("None", "null"), ("(1, 2)", "[1, 2]"), ("'é'", '"\\u00e9"'),
    ("{1: 'x'}", '{"1": "x"}'), ("1.5e300", "1.5e+300"), ("2**70", "1180591620717411303424"),
])
def test_result_values_including_falsy(sandbox, expr, json_text):
    r = sandbox.execute(f"result = {expr}")
    assert r.result_json == json_text
    assert r.result == json.loads(json_text)
    assert r.result_error is None


def test_no_result_variable(sandbox):
    r = sandbox.execute("x = 1")
    assert r.result is None
    assert r.result_json is None
    assert r.result_error is None


def test_only_module_level_result_counts(sandbox):
    r = sandbox.execute("def f():\n    result = 5\n    return result\ny = f()")
    assert r.result_json is None
    assert r.result_error is None


@pytest.mark.parametrize("expr,error", [
    ("{1, 2}", "result is not JSON-serializable: set (TypeError)"),
    ("float('nan')", "result is not JSON-serializable: float (ValueError)"),
    ("float('inf')", "result is not JSON-serializable: float (ValueError)"),
    ("b'bytes'", "result is not JSON-serializable: bytes (TypeError)"),
    ("object()", "result is not JSON-serializable: object (TypeError)"),
])
def test_non_serializable_result(sandbox, expr, error):
    r = sandbox.execute(f"print('still ran')\nresult = {expr}")
    assert r.stdout == "still ran"
    assert r.result is None
    assert r.result_json is None
    assert r.result_error == error


def test_non_serializable_dict_keys(sandbox):
    r = sandbox.execute("result = {(1, 2): 3}")
    assert r.result is None and r.result_json is None
    assert r.result_error.startswith("result is not JSON-serializable: ")
    assert r.result_error.endswith(" (TypeError)")


def test_custom_result_variable():
    sb = eryx.Sandbox(result_variable="output")
    try:
        r = sb.execute("result = 1\noutput = {'k': [True, None]}")
        assert r.result_json == '{"k": [true, null]}'
        assert r.result == {"k": [True, None]}
        r = sb.execute("result = 1")
        assert r.result_json is None
    finally:
        sb.close()


def test_result_captured_with_top_level_await(sandbox):
    r = sandbox.execute("import asyncio\nawait asyncio.sleep(0)\nresult = 'awaited'")
    assert r.result == "awaited"


def test_result_not_captured_on_failure(sandbox):
    with pytest.raises(eryx.ExecutionError) as ei:
        sandbox.execute("result = 1\nraise ValueError('x')")
    assert ei.value.exc_type == "ValueError"


# ---------------------------------------------------------------------------
# ExecuteResult


def test_execute_result_stats(sandbox):
    r = sandbox.execute("x = sum(range(1000))")
    assert isinstance(r.duration_ms, float)
    assert r.duration_ms > 0
    assert isinstance(r.peak_memory_bytes, int)
    assert r.peak_memory_bytes > 0
    assert r.callback_invocations == 0
    assert r.fuel_consumed is None


def test_peak_memory_reflects_allocation(sandbox):
    small = sandbox.execute("x = 1").peak_memory_bytes
    big = sandbox.execute("x = bytearray(48 * 1024 * 1024)").peak_memory_bytes
    assert big >= small + 40 * 1024 * 1024


def test_execute_result_repr_exact(sandbox):
    r = sandbox.execute('print("hi")\nresult = {"a": 1}')
    assert repr(r) == (
        f"ExecuteResult(stdout='hi', stderr='', duration_ms={r.duration_ms:.2f}, "
        f"callback_invocations=0, peak_memory_bytes={r.peak_memory_bytes}, "
        "fuel_consumed=None, result_json='{\"a\": 1}', result_error=None)"
    )


def test_execute_result_repr_truncates_long_fields_by_characters(sandbox):
    r = sandbox.execute("print('é' * 60)\nimport sys\nprint('e' * 50, file=sys.stderr)\n"
                        "result = 'x' * 60")
    expected = (
        f"ExecuteResult(stdout={'é' * 50!r}..., stderr={'e' * 50!r}, "
        f"duration_ms={r.duration_ms:.2f}, callback_invocations=0, "
        f"peak_memory_bytes={r.peak_memory_bytes}, fuel_consumed=None, "
        f"result_json={chr(34) + 'x' * 49!r}..., result_error=None)"
    )
    assert repr(r) == expected


def test_execute_result_repr_with_result_error(sandbox):
    r = sandbox.execute("result = {1}")
    assert repr(r).endswith(
        "result_json=None, result_error='result is not JSON-serializable: set (TypeError)')")


@pytest.mark.parametrize("attr", ["stdout", "stderr", "duration_ms", "callback_invocations",
                                  "peak_memory_bytes", "fuel_consumed", "result",
                                  "result_json", "result_error", "brand_new_attr"])
def test_execute_result_is_immutable(sandbox, attr):
    r = sandbox.execute("print('x')\nresult = 1")
    with pytest.raises(AttributeError):
        setattr(r, attr, "changed")
    assert r.stdout == "x"
    assert r.result == 1


def test_execute_result_compares_by_identity(sandbox):
    a = sandbox.execute("print(1)")
    b = sandbox.execute("print(1)")
    assert a == a
    assert a != b


@pytest.mark.parametrize("op", [copy.copy, copy.deepcopy, lambda r: pickle.loads(pickle.dumps(r)),
                                lambda r: pickle.loads(pickle.dumps(r, protocol=0))])
def test_execute_result_copies_and_pickles_with_every_field(op):
    # API.md §1.1: results cross process boundaries; a copy is a new object (identity compare).
    sb = eryx.Sandbox(resource_limits=eryx.ResourceLimits(max_fuel=2**63 - 1))
    r = sb.execute("import sys\nprint('out')\nprint('err', file=sys.stderr)\nresult = {'a': [1]}")
    c = op(r)
    assert type(c) is eryx.ExecuteResult and c is not r and c != r
    for name in ("stdout", "stderr", "duration_ms", "callback_invocations", "peak_memory_bytes",
                 "fuel_consumed", "result_json", "result_error", "result"):
        assert getattr(c, name) == getattr(r, name), name
    assert c.fuel_consumed > 0 and c.stdout == "out" and c.stderr == "err"


# ---------------------------------------------------------------------------
# Sandbox object


def test_default_repr():
    sb = eryx.Sandbox()
    try:
        assert repr(sb) == (
            f"Sandbox(resource_limits={DEFAULT_LIMITS_REPR}, network=None, callbacks=0, "
            "secrets=[], volumes=0)"
        )
        sb.close()
        assert repr(sb).endswith(", closed=True)")
        assert repr(sb) == (
            f"Sandbox(resource_limits={DEFAULT_LIMITS_REPR}, network=None, callbacks=0, "
            "secrets=[], volumes=0, closed=True)"
        )
    finally:
        sb.close()


def test_repr_shows_network():
    sb = eryx.Sandbox(network=eryx.NetConfig.permissive(),
                      resource_limits=eryx.ResourceLimits(execution_timeout_ms=5))
    try:
        assert repr(sb) == (
            "Sandbox(resource_limits=ResourceLimits(execution_timeout_ms=5, "
            "callback_timeout_ms=10000, max_memory_bytes=134217728, "
            "max_callback_invocations=1000, max_fuel=None, max_vfs_bytes=None), "
            "network=NetConfig(max_connections=100, connect_timeout_ms=30000, "
            "io_timeout_ms=60000, allowed_hosts=[], blocked_hosts=[]), callbacks=0, "
            "secrets=[], volumes=0)"
        )
    finally:
        sb.close()


def test_close_semantics():
    sb = eryx.Sandbox()
    assert sb.closed is False
    assert sb.execute("print(1)").stdout == "1"
    assert sb.close() is None
    assert sb.closed is True
    sb.close()  # idempotent
    assert sb.closed is True
    with pytest.raises(ValueError) as ei:
        sb.execute("print(1)")
    assert str(ei.value) == "Sandbox is closed"
    with pytest.raises(AttributeError):
        sb.closed = False


def test_context_manager():
    with eryx.Sandbox() as sb:
        assert isinstance(sb, eryx.Sandbox)
        assert sb.execute("print('inside')").stdout == "inside"
    assert sb.closed is True
    with pytest.raises(ValueError, match="^Sandbox is closed$"):
        sb.execute("pass")


def test_context_manager_does_not_suppress_exceptions():
    with pytest.raises(KeyError):
        with eryx.Sandbox() as sb:
            raise KeyError("propagates")
    assert sb.closed is True
    with pytest.raises(eryx.ExecutionError):
        with eryx.Sandbox() as sb2:
            sb2.execute("1/0")
    assert sb2.closed is True


@pytest.mark.parametrize("op", [copy.copy, copy.deepcopy, pickle.dumps])
def test_sandbox_cannot_be_copied_or_pickled(sandbox, op):
    with pytest.raises(TypeError):
        op(sandbox)


def test_concurrent_execute_from_threads(sandbox):
    def work(i):
        r = sandbox.execute(
            f"import time\nx = {i}\ntime.sleep(0.05)\nprint(x * 10)\nresult = x")
        return r.stdout, r.result

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(work, range(12)))
    assert results == [(str(i * 10), i) for i in range(12)]


def test_execute_releases_the_gil(sandbox):
    ticks = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(time.monotonic())
            time.sleep(0.005)

    t = threading.Thread(target=ticker)
    t.start()
    try:
        start = time.monotonic()
        sandbox.execute("import time\ntime.sleep(0.4)")
        end = time.monotonic()
    finally:
        stop.set()
        t.join()
    during = [x for x in ticks if start + 0.05 < x < end - 0.05]
    assert len(during) >= 10


def test_close_during_run_cancels_it():
    sb = eryx.Sandbox(resource_limits=eryx.ResourceLimits(execution_timeout_ms=20000))
    t, box = run_in_thread(sb.execute, "while True:\n    pass")
    time.sleep(0.5)  # let the run start
    with Timer() as timer:
        sb.close()
        t.join(5)
    assert not t.is_alive()
    assert timer.elapsed < 5
    assert isinstance(box.get("error"), eryx.CancelledError), box
    assert str(box["error"]) == "Sandbox was closed during execution"
    assert sb.closed is True


def test_constructor_is_keyword_only_and_rejects_unknown_arguments():
    with pytest.raises(TypeError):
        eryx.Sandbox(eryx.ResourceLimits())
    with pytest.raises(TypeError):
        eryx.Sandbox(timeout=5)
    with pytest.raises(TypeError):
        eryx.Sandbox(mcp=object())


def test_unicode_identifiers_and_literals(sandbox):
    r = sandbox.execute("café = 'naïve'\nπ = 3.14\nprint(café, π)\nresult = café")
    assert r.stdout == "naïve 3.14"
    assert r.result == "naïve"
    assert r.result_json == '"na\\u00efve"'


def test_asyncio_run_inside_top_level_await_code_raises(sandbox):
    r = run(sandbox, """
        import asyncio
        async def inner():
            return 1
        await asyncio.sleep(0)
        coro = inner()
        try:
            asyncio.run(coro)
            print('no error')
        except RuntimeError:
            print('RuntimeError')
        finally:
            coro.close()
    """)
    assert r.stdout == "RuntimeError"


def test_asyncio_timers_use_the_host_clock(sandbox):
    r = run(sandbox, """
        import asyncio, time
        loop = asyncio.get_running_loop()
        fired = []
        loop.call_later(0.05, fired.append, 'later')
        try:
            await asyncio.wait_for(asyncio.sleep(5), timeout=0.1)
        except (asyncio.TimeoutError, TimeoutError):
            print('wait_for timed out')
        t = time.monotonic()
        await asyncio.sleep(0.15)
        print(fired, 0.14 <= time.monotonic() - t < 1.0)
    """)
    assert r.stdout == "wait_for timed out\n['later'] True"


def test_state_lost_is_false_for_sandbox_failures():
    sb = eryx.Sandbox(resource_limits=eryx.ResourceLimits(execution_timeout_ms=300))
    try:
        for code, exc_cls in (("raise ValueError()", eryx.ExecutionError),
                              ("import os\nos._exit(1)", eryx.ExecutionError),
                              ("while True:\n    pass", eryx.TimeoutError)):
            with pytest.raises(exc_cls) as ei:
                sb.execute(code)
            assert ei.value.state_lost is False, code
    finally:
        sb.close()


def test_dunder_stdout_and_stderr_are_captured(sandbox):
    r = sandbox.execute("import sys\nsys.__stdout__.write('dunder out\\n')\n"
                        "sys.__stderr__.write('dunder err\\n')")
    assert r.stdout == "dunder out"
    assert r.stderr == "dunder err"


def test_networking_is_off_without_a_netconfig(sandbox):
    # Until networking lands every connection fails with the contract's message (API.md §3.4).
    r = sandbox.execute(
        "import errno, socket\n"
        "for attempt in (lambda: socket.create_connection(('127.0.0.1', 80)),\n"
        "                lambda: socket.socket().connect(('93.184.216.34', 443))):\n"
        "    try:\n"
        "        attempt()\n"
        "    except PermissionError as e:\n"
        "        print(e.errno == errno.EACCES, e.strerror)\n"
    )
    assert r.stdout == (
        "True not permitted: networking is not enabled for this sandbox\n"
        "True not permitted: networking is not enabled for this sandbox"
    )
