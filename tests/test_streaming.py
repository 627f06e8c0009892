"""LATER SLICE: streaming output handlers on_stdout / on_stderr (API.md §5.3, §6.1, §12).

Enable with ERYX_TEST_LATER=streaming (see conftest.py).
"""

import sys
import threading

import pytest

import eryx
from _eryxtest import run


def test_chunks_are_raw_untrimmed_and_in_order():
    out, err = [], []
    with eryx.Sandbox(on_stdout=out.append, on_stderr=err.append) as sb:
        r = sb.execute('print("hi")\nimport sys\nsys.stderr.write("e1\\n")\nprint("a\\n\\n")')
    assert out == ["hi", "\n", "a\n\n", "\n"]
    assert err == ["e1\n"]
    assert r.stdout == "hi\na"
    assert r.stderr == "e1"


def test_fd_writes_are_streamed():
    out = []
    with eryx.Sandbox(on_stdout=out.append) as sb:
        sb.execute("import os\nos.write(1, b'raw\\n')")
    assert "".join(out) == "raw\n"


def test_split_utf8_sequence_is_held_back():
    out = []
    with eryx.Sandbox(on_stdout=out.append) as sb:
        sb.execute("import os\nb = 'é'.encode()\nos.write(1, b[:1])\nos.write(1, b[1:] + b'!')")
    assert "".join(out) == "é!"
    assert all("\ufffd" not in c for c in out)


def test_handler_runs_with_gil_and_sees_every_chunk_before_return():
    out = []
    lock = threading.Lock()

    def handler(chunk):
        with lock:
            out.append(chunk)

    with eryx.Sandbox(on_stdout=handler) as sb:
        sb.execute("for i in range(200):\n    print(i)")
    assert "".join(out) == "".join(f"{i}\n" for i in range(200))


def test_handler_exception_goes_to_unraisablehook(monkeypatch):
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: seen.append(u.exc_value))

    def bad(chunk):
        raise RuntimeError("handler failed")

    with eryx.Sandbox(on_stdout=bad) as sb:
        r = sb.execute("print('still captured')")
    assert r.stdout == "still captured"
    assert seen and isinstance(seen[0], RuntimeError)


def test_traceback_is_streamed_to_on_stderr():
    err = []
    with eryx.Sandbox(on_stderr=err.append) as sb:
        with pytest.raises(eryx.ExecutionError) as ei:
            sb.execute("raise ValueError('streamed')")
    assert "".join(err).rstrip("\n") == str(ei.value)


def test_streaming_continues_past_capture_cap():
    total = [0]

    def count(chunk):
        total[0] += len(chunk)

    with eryx.Sandbox(on_stdout=count) as sb:
        r = sb.execute("import sys\nfor _ in range(17):\n    sys.stdout.write('x' * 1048576)")
    assert total[0] == 17 * 1048576
    assert r.stdout.endswith("[eryx: output truncated after 16777216 bytes]")


def test_session_streaming():
    out = []
    with eryx.Session(on_stdout=out.append) as s:
        s.execute("x = 1\nprint(x)")
        s.execute("print(x + 1)")
    assert "".join(out) == "1\n2\n"


@pytest.mark.parametrize("kwargs", [{"on_stdout": 5}, {"on_stderr": "print"}])
@pytest.mark.parametrize("cls", ["Sandbox", "Session"])
def test_handlers_must_be_callable(cls, kwargs):
    with pytest.raises(TypeError):
        getattr(eryx, cls)(**kwargs)
