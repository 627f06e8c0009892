"""The guest environment a Python user expects (issue 18 item 8; API.md §5.5): a private
writable scratch directory as cwd, TMPDIR and HOME; a user name; exit(), quit() and help();
CPU-time clocks; hashlib.pbkdf2_hmac and hashlib.scrypt; clear errors for threads and
processes."""

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


# RFC 7914 section 12 (the fourth vector, N = 2**20, needs 1 GiB: out of the default cap).
SCRYPT_VECTORS = [
    (b"", b"", 16, 1, 1, 64,
     "77d6576238657b203b19ca42c18a0497f16b4844e3074ae8dfdffa3fede21442"
     "fcd0069ded0948f8326a753a0fc81f17e8d3e0fb2e0d3628cf35e20c38d18906"),
    (b"password", b"NaCl", 1024, 8, 16, 64,
     "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b373162"
     "2eaf30d92e22a3886ff109279d9830dac727afb94a83ee6d8360cbdfa2cc0640"),
    (b"pleaseletmein", b"SodiumChloride", 16384, 8, 1, 64,
     "7023bdcb3afd7348461c06cd81fd38ebfda8fbba904f8e3ea9b543f6545da1f2"
     "d5432955613f0fcf62d49705242a9af9e61e85dc0d651e40dfcf017b45575887"),
]


def test_scrypt_rfc7914_vectors(sandbox):
    code = "import hashlib\n" + "\n".join(
        f"print(hashlib.scrypt({pw!r}, salt={salt!r}, n={n}, r={r}, p={p}, dklen={dk}).hex())"
        for pw, salt, n, r, p, dk, _ in SCRYPT_VECTORS)
    assert sandbox.execute(code).stdout.splitlines() == [v[-1] for v in SCRYPT_VECTORS]


@pytest.mark.skipif(not hasattr(hashlib, "scrypt"), reason="the host's hashlib has no scrypt (no OpenSSL)")
def test_scrypt_matches_the_host(sandbox):
    import random

    rnd = random.Random(7)
    cases = []
    for _ in range(40):
        cases.append((rnd.randbytes(rnd.randrange(0, 80)), rnd.randbytes(rnd.randrange(0, 80)),
                      2 ** rnd.randrange(1, 9), rnd.randrange(1, 5), rnd.randrange(1, 4),
                      rnd.randrange(1, 150)))
    cases.append((b"x" * 200, b"y", 2 ** 12, 8, 1, 64))  # a long password (hashed HMAC key)
    r = sandbox.execute("import hashlib, json\nprint(json.dumps([hashlib.scrypt(pw, salt=s, n=n, r=r, "
                        f"p=p, dklen=dk).hex() for pw, s, n, r, p, dk in {cases!r}]))")
    want = [hashlib.scrypt(pw, salt=s, n=n, r=r_, p=p, dklen=dk).hex() for pw, s, n, r_, p, dk in cases]
    import json

    assert json.loads(r.stdout) == want


# CPython's messages (Modules/_hashopenssl.c) and OpenSSL's limits: N < 2**(16 r), p r < 2**30,
# and at most maxmem bytes, 32 MiB by default.
SCRYPT_ERRORS = [
    ("'p', salt=b's', n=2, r=1, p=1", "TypeError: a bytes-like object is required, not 'str'"),
    ("b'p', n=2, r=1, p=1", "TypeError: salt is required"),
    ("b'p', b's', n=2, r=1, p=1", "TypeError: scrypt() takes exactly 1 positional argument (2 given)"),
    ("b'p', salt=b's', r=1, p=1", "TypeError: n is required and must be an unsigned int"),
    ("b'p', salt=b's', n=-2, r=1, p=1", "TypeError: n is required and must be an unsigned int"),
    ("b'p', salt=b's', n=2.0, r=1, p=1", "TypeError: scrypt() argument 'n' must be int, not float"),
    ("b'p', salt=b's', n=3, r=1, p=1", "ValueError: n must be a power of 2."),
    ("b'p', salt=b's', n=1, r=1, p=1", "ValueError: n must be a power of 2."),
    ("b'p', salt=b's', n=2, r=0, p=1", "ValueError: Invalid parameter combination for n, r, p, maxmem."),
    ("b'p', salt=b's', n=2, r=1, p=1, maxmem=-1",
     "ValueError: maxmem must be positive and smaller than 2147483647"),
    ("b'p', salt=b's', n=2, r=1, p=1, dklen=0",
     "ValueError: dklen must be greater than 0 and smaller than 2147483647"),
    ("b'p', salt=b's', n=2**16, r=1, p=1", "ValueError: [digital envelope routines] memory limit exceeded"),
    ("b'p', salt=b's', n=2**15, r=8, p=1", "ValueError: [digital envelope routines] memory limit exceeded"),
    ("b'p', salt=b's', n=2, r=1, p=2**30", "ValueError: [digital envelope routines] memory limit exceeded"),
]


def test_scrypt_errors_are_cpythons(sandbox):
    code = "import hashlib\n" + "".join(
        f"try:\n    hashlib.scrypt({args})\nexcept Exception as e:\n"
        "    print(type(e).__name__ + ': ' + str(e))\n" for args, _ in SCRYPT_ERRORS)
    assert sandbox.execute(code).stdout.splitlines() == [want for _, want in SCRYPT_ERRORS]


def test_scrypt_memory_is_the_guests_and_its_time_is_bounded():
    # maxmem lets it ask for 1 GiB: the guest's memory cap refuses it (MemoryError)...
    r = eryx.Sandbox().execute("import hashlib\ntry:\n    hashlib.scrypt(b'p', salt=b's', n=2**20, r=8, p=1, "
                               "maxmem=2**31 - 1)\nexcept MemoryError:\n    print('MemoryError')")
    assert r.stdout == "MemoryError"
    # ...and a long derivation (p = 64: seconds of C code) stops at the execution timeout.
    sb = eryx.Sandbox(resource_limits=eryx.ResourceLimits(execution_timeout_ms=300))
    with pytest.raises(eryx.TimeoutError):
        sb.execute("import hashlib\nhashlib.scrypt(b'p', salt=b's', n=2**14, r=8, p=64)")


def test_processes_say_why_they_fail(sandbox):
    r = run(sandbox, """
        import multiprocessing, multiprocessing.pool, concurrent.futures
        def f():
            pass
        for make in (lambda: multiprocessing.Process(target=f).start(),
                     lambda: multiprocessing.get_context('spawn').Process(target=f).start(),
                     lambda: multiprocessing.Pool(2),
                     lambda: concurrent.futures.ProcessPoolExecutor(2)):
            try:
                make()
            except (RuntimeError, NotImplementedError) as e:
                print(type(e).__name__, e)
        import multiprocessing.dummy
        for make in (lambda: multiprocessing.pool.ThreadPool(2), lambda: multiprocessing.dummy.Pool(2)):
            try:
                make()
            except RuntimeError as e:
                print(e)
    """)
    assert r.stdout.splitlines() == [
        "RuntimeError processes are not available in the sandbox",
        "RuntimeError processes are not available in the sandbox",
        "RuntimeError processes are not available in the sandbox",
        "NotImplementedError processes are not available in the sandbox",
        "threads are not available in the sandbox",
        "threads are not available in the sandbox",
    ]
    assert r.stderr == ""  # nothing ignored in a __del__


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
