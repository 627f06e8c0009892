"""The guest environment a Python user expects (issue 18 item 8; API.md §5.5): a private
writable scratch directory as cwd, TMPDIR and HOME; a user name; exit(), quit() and help();
CPU-time clocks; hashlib.pbkdf2_hmac; clear errors for threads."""

from __future__ import annotations

import hashlib

import pytest

import eryx
from _eryxtest import run


def test_scratch_directory_is_cwd_tmpdir_and_home(sandbox):
    r = run(sandbox, """
        import os, tempfile, pathlib
        print(os.getcwd(), os.environ['TMPDIR'], os.environ['HOME'], tempfile.gettempdir())
        with tempfile.NamedTemporaryFile('w', delete=False) as f:
            f.write('tmp')
        open('here.txt', 'w').write('cwd')
        print(sorted(os.listdir('.')) == sorted([os.path.basename(f.name), 'here.txt']))
        print(pathlib.Path('~/x').expanduser())
    """)
    assert r.stdout.splitlines() == ["/scratch /scratch /scratch /scratch", "True", "/scratch/x"]


def test_scratch_is_private_per_sandbox_run_and_kept_for_a_session():
    sb = eryx.Sandbox()
    sb.execute("open('a.txt', 'w').write('1')")
    assert sb.execute("import os; print(os.listdir('.'))").stdout == "[]"
    s = eryx.Session()
    s.execute("open('a.txt', 'w').write('1')")
    assert s.execute("print(open('a.txt').read())").stdout == "1"
    s.reset()
    assert s.execute("import os; print(os.listdir('.'))").stdout == "[]"


def test_scratch_is_capped_like_the_vfs():
    sb = eryx.Sandbox(resource_limits=eryx.ResourceLimits(max_vfs_bytes=1 << 20))
    r = run(sb, """
        import errno
        try:
            open('big', 'wb').write(b'x' * (2 << 20))
            print('wrote')
        except OSError as e:
            print(type(e).__name__, errno.errorcode[e.errno])
    """)
    assert r.stdout == "OSError ENOSPC"


def test_scratch_yields_to_a_volume_at_its_path(tmp_path):
    (tmp_path / "mine.txt").write_text("host")
    sb = eryx.Sandbox(volumes=[(str(tmp_path), "/scratch", True)])
    r = sb.execute("import os\nprint(os.getcwd(), os.listdir('/scratch'), 'TMPDIR' in os.environ)")
    assert r.stdout == "/ ['mine.txt'] False"


def test_user_name_and_environment(sandbox):
    r = run(sandbox, """
        import getpass, os
        print(getpass.getuser(), sorted(os.environ))
    """)
    assert r.stdout == "sandbox ['HOME', 'LOGNAME', 'TMPDIR', 'USER']"


def test_exit_quit_and_help(sandbox):
    with pytest.raises(eryx.ExecutionError) as ei:
        sandbox.execute("print('bye')\nexit(3)")
    assert ei.value.exc_type == "SystemExit" and ei.value.stdout == "bye"
    assert sandbox.execute("quit()").stdout == ""  # SystemExit(None) is a success
    assert sandbox.execute("print(repr(exit))").stdout == "Use exit() to end the code"
    assert "Return the number of items in a container." in sandbox.execute("help(len)").stdout


def test_cpu_clocks_count_computing_not_waiting(sandbox):
    r = run(sandbox, """
        import time
        t0 = time.process_time()
        time.sleep(0.3)
        slept = time.process_time() - t0
        t1 = time.thread_time()
        x = sum(range(3 * 10**6))
        busy = time.thread_time() - t1
        print(t0 >= 0, slept < 0.1, busy > 0, time.process_time_ns() > 0)
    """)
    assert r.stdout == "True True True True"


def test_pbkdf2_hmac_matches_the_host(sandbox):
    want = hashlib.pbkdf2_hmac("sha256", b"password", b"salt", 1000, 40).hex()
    got = sandbox.execute("import hashlib\n"
                          "print(hashlib.pbkdf2_hmac('sha256', b'password', b'salt', 1000, 40).hex())")
    assert got.stdout == want
    default_len = sandbox.execute("import hashlib\nprint(len(hashlib.pbkdf2_hmac('sha1', b'p', b's', 2)))")
    assert default_len.stdout == "20"


def test_threads_say_why_they_fail(sandbox):
    r = run(sandbox, """
        import threading
        try:
            threading.Thread(target=print).start()
        except RuntimeError as e:
            print(e)
    """)
    assert r.stdout == "threads are not available in the sandbox"


def test_unclosed_files_are_written_when_a_sandbox_run_ends():
    store = eryx.VfsStorage()
    eryx.Sandbox(vfs=store).execute("f = open('/data/a.txt', 'w')\nf.write('hello')")
    assert store.read_file("a.txt") == b"hello"  # the interpreter is discarded, not collected


def test_unclosed_file_over_the_cap_fails_the_run_clearly():
    store = eryx.VfsStorage(max_bytes=1000)
    with pytest.raises(eryx.ExecutionError) as ei:
        eryx.Sandbox(vfs=store).execute(
            "f = open('/data/b', 'w')\nf.write('y' * 900)\n"
            "g = open('/data/c', 'w')\ng.write('z' * 900)\nprint('done')")
    assert ei.value.exc_type == "OSError"
    assert str(ei.value) == ("OSError: the buffered data of '/data/c' could not be written when "
                             "the run ended: [Errno 51] No space left on device")
    assert ei.value.stdout == "done"
