"""Everyday Python in the sandbox (issue 18): stdin, the last expression's value, the CLI's
script arguments and names, the REPL's echo, execute_async concurrency."""

from __future__ import annotations

import asyncio
import os
import pty
import select
import subprocess
import sys
import time

import pytest

import eryx

# ---- stdin ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [eryx.Sandbox, eryx.Session])
def test_stdin_feeds_input(kind):
    box = kind()
    r = box.execute("a = input('? ')\nb = input()\nprint(int(a) + int(b))", stdin="40\n2\n")
    assert r.stdout == "? 42"


def test_stdin_bytes_and_text_apis():
    sb = eryx.Sandbox()
    code = "import sys\nprint(repr(sys.stdin.read()), sys.stdin.buffer is not None)"
    assert sb.execute(code, stdin=b"caf\xc3\xa9\n").stdout == "'café\\n' True"
    assert sb.execute("import sys\nprint(sum(1 for _ in sys.stdin))", stdin="a\nb\nc").stdout == "3"


def test_stdin_is_per_run_in_a_session():
    s = eryx.Session()
    assert s.execute("print(input())", stdin="first\nleftover\n").stdout == "first"
    with pytest.raises(eryx.ExecutionError) as ei:
        s.execute("input()")
    assert ei.value.exc_type == "EOFError"


def test_stdin_keeps_traceback_line_numbers():
    with pytest.raises(eryx.ExecutionError) as ei:
        eryx.Sandbox().execute("x = input()\n\nraise ValueError(x)", stdin="boom")
    assert 'File "<user>", line 3, in <module>' in str(ei.value)
    assert str(ei.value).endswith("ValueError: boom")


def test_stdin_validation():
    sb = eryx.Sandbox()
    with pytest.raises(TypeError, match="stdin must be str, bytes or None, not int"):
        sb.execute("pass", stdin=1)
    with pytest.raises(ValueError, match="stdin is not valid Unicode"):
        sb.execute("pass", stdin="\ud800")


def test_stdin_with_execute_async():
    async def main():
        return await eryx.Session().execute_async("print(input()[::-1])", stdin="abc")

    assert asyncio.run(main()).stdout == "cba"


# ---- the last expression ----------------------------------------------------------------------


def test_last_expression_is_the_result():
    s = eryx.Session()
    s.execute("x = 40")
    r = s.execute("x + 2")
    assert (r.result, r.result_json) == (42, "42")
    assert s.execute("{'a': [x]}").result == {"a": [40]}
    assert s.execute("await __import__('asyncio').sleep(0, result='late')").result == "late"


def test_last_expression_rules():
    sb = eryx.Sandbox()
    assert sb.execute("print('hi')").result_json is None  # None: nothing, as in a notebook
    assert sb.execute("result = 1\n2").result == 1  # an explicit result wins
    assert sb.execute("x = 5").result_json is None  # not an expression
    assert sb.execute("if True:\n    7").result_json is None  # not at the top level
    r = sb.execute("{1, 2}")
    assert r.result_json is None
    assert r.result_error == "result is not JSON-serializable: set (TypeError)"
    r = sb.execute("False")
    assert r.result_json == "false"  # membership, not truth


def test_last_expression_value_does_not_stay_in_the_namespace():
    s = eryx.Session()
    s.execute("41 + 1")
    assert s.execute("print(sorted(k for k in globals() if 'eryx' in k))").stdout == "[]"


def test_last_expression_error_positions():
    with pytest.raises(eryx.ExecutionError) as ei:
        eryx.Sandbox().execute("x = 1\n\n(x +\n  undefined)")
    text = str(ei.value)
    assert 'File "<user>", line 4, in <module>' in text  # where the name is, as CPython says
    assert text.endswith("NameError: name 'undefined' is not defined")


# ---- execute_async concurrency ----------------------------------------------------------------


def test_execute_async_is_not_capped_by_a_small_thread_pool():
    sb = eryx.Sandbox()

    async def main():
        start = time.monotonic()
        results = await asyncio.gather(
            *(sb.execute_async("import time\ntime.sleep(0.5)\nprint('ok')") for _ in range(20))
        )
        return time.monotonic() - start, results

    elapsed, results = asyncio.run(main())
    assert [r.stdout for r in results] == ["ok"] * 20
    assert elapsed < 4.0  # 20 sleeps of 0.5 s run at once (6 at a time took 2 s before)


# ---- CLI --------------------------------------------------------------------------------------


def cli(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "eryx", *args], input=stdin,
                          capture_output=True, text=True, timeout=120)


def test_cli_script_arguments_and_name(tmp_path):
    script = tmp_path / "prog.py"
    script.write_text("import sys\nprint(sys.argv)\n\nraise SystemExit(sys.argv[2])\n")
    p = cli(str(script), "one", "--two")
    assert p.stdout.splitlines() == [repr([str(script), "one", "--two"])]
    assert p.returncode == 1
    script.write_text("x = 1\n1/0\n")
    p = cli(str(script))
    assert f'File "{script}", line 2, in <module>' in p.stderr


def test_cli_stdin_for_a_script(tmp_path):
    script = tmp_path / "echo.py"
    script.write_text("import sys\nprint(sys.stdin.read().upper(), end='')\n")
    assert cli("--stdin", "-", str(script), stdin="piped\n").stdout == "PIPED\n"
    data = tmp_path / "in.txt"
    data.write_text("from a file")
    assert cli("--stdin", str(data), str(script)).stdout == "FROM A FILE"
    assert cli(str(script), stdin="ignored").stdout == ""  # no --stdin: an empty stdin
    p = cli("--stdin", str(tmp_path / "missing"), str(script))
    assert p.returncode == 1 and "No such file or directory" in p.stderr


@pytest.mark.parametrize("size, ok", [("64M", True), ("65536K", True), ("64MiB", True),
                                      ("1g", True), ("12X", False), ("0M", False)])
def test_cli_memory_sizes(size, ok):
    p = cli("--max-memory", size, "-c", "print('ran')")
    assert (p.returncode == 0 and p.stdout == "ran\n") if ok else p.returncode == 2, p.stderr


def test_cli_help_shows_defaults():
    out = " ".join(cli("--help").stdout.split())
    assert "default: 30000" in out and "default: 128M" in out


def _read_until(fd, marker, timeout=60.0):
    data = b""
    deadline = time.monotonic() + timeout
    while marker not in data:
        left = deadline - time.monotonic()
        assert left > 0, f"{marker!r} not seen in {data!r}"
        if select.select([fd], [], [], left)[0]:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            data += chunk
    return data


def test_repl_echoes_values():
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(sys.executable, [sys.executable, "-m", "eryx"])
    try:
        _read_until(fd, b">>> ")
        os.write(fd, b"x = 6\n")
        _read_until(fd, b">>> ")
        os.write(fd, b"x * 7\n")
        assert b"42" in _read_until(fd, b">>> ")
        os.write(fd, b"'text'\n")
        assert b"'text'" in _read_until(fd, b">>> ")
        os.write(fd, b"print(None)\n")
        out = _read_until(fd, b">>> ")
        # the terminal's echo of the input, then print's output; its value is not echoed
        assert out.replace(b"print(None)", b"").count(b"None") == 1
        os.write(fd, b"exit()\n")
        os.waitpid(pid, 0)
    finally:
        try:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)


# ---- callbacks with reserved names --------------------------------------------------------------


@pytest.mark.parametrize("name", ["print", "json", "re.search", "open"])
def test_reserved_callback_name_warns_at_registration(name):
    with pytest.warns(UserWarning, match=f"callback '{name}' is not injected into the guest"):
        sb = eryx.Sandbox(callbacks=[{"name": name, "fn": lambda: "reached"}])
    assert sb.execute(f"result = await invoke({name!r})").result == "reached"


def test_ordinary_callback_names_do_not_warn(recwarn):
    eryx.Sandbox(callbacks=[{"name": "lookup", "fn": lambda: 1},
                            {"name": "tools.search", "fn": lambda: 2}])
    assert not [w for w in recwarn if issubclass(w.category, UserWarning)]


# ---- async callbacks on the caller's event loop ---------------------------------------------


def test_async_callbacks_run_on_the_callers_loop_under_execute_async():
    async def main():
        queue: asyncio.Queue[str] = asyncio.Queue()  # bound to this loop
        this_loop = asyncio.get_running_loop()

        async def publish(item: str) -> bool:
            await queue.put(item)  # an application object: works only on its own loop
            return asyncio.get_running_loop() is this_loop

        sb = eryx.Sandbox(callbacks=[{"name": "publish", "fn": publish}])
        r = await sb.execute_async("result = [await publish(item='a'), await publish(item='b')]")
        return r.result, [queue.get_nowait(), queue.get_nowait()]

    assert asyncio.run(main()) == ([True, True], ["a", "b"])


def test_async_callbacks_of_sync_execute_run_on_the_private_loop():
    import threading

    async def where() -> str:
        return threading.current_thread().name

    sb = eryx.Sandbox(callbacks=[{"name": "where", "fn": where}])
    assert sb.execute("result = await where()").result == "eryx-sandbox-callbacks"
