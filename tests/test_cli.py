"""LATER SLICE: command line (API.md §11).

Enable with ERYX_TEST_LATER=cli (see conftest.py).
"""

import subprocess
import sys

import pytest

import eryx


def cli(*args, stdin=None, timeout=60):
    return subprocess.run([sys.executable, "-m", "eryx", *args], input=stdin,
                          capture_output=True, text=True, timeout=timeout)


def test_main_is_importable():
    from eryx.__main__ import main
    assert callable(main)
    assert main(["-c", "pass"]) == 0
    assert main(["-c", "raise ValueError"]) == 1


@pytest.mark.parametrize("argv, code", [(["--version"], 0), (["--help"], 0),
                                        (["-c"], 2), (["--timeout", "0", "-c", "pass"], 2),
                                        (["serve", "--timeout", "x"], 2), (["serve", "-h"], 0)])
def test_main_raises_system_exit_as_argparse_does(argv, code, capsys):
    """Embedders call main(argv): --version, --help and usage errors raise SystemExit."""
    from eryx.__main__ import main
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == code


def test_version():
    p = cli("--version")
    assert p.returncode == 0
    assert p.stdout.strip() == f"eryx {eryx.__version__} (guest Python {eryx.GUEST_PYTHON_VERSION})"


def test_dash_c():
    p = cli("-c", "print('hi')\nimport sys\nprint('err', file=sys.stderr)")
    assert p.returncode == 0
    assert p.stdout == "hi\n"
    assert p.stderr == "err\n"


def test_script_file_and_stdin(tmp_path):
    script = tmp_path / "s.py"
    script.write_text("print('from file ✓')", encoding="utf-8")
    p = cli(str(script))
    assert (p.returncode, p.stdout) == (0, "from file ✓\n")
    p = cli("-", stdin="print('from stdin')")
    assert (p.returncode, p.stdout) == (0, "from stdin\n")
    p = cli(stdin="print('piped')")
    assert (p.returncode, p.stdout) == (0, "piped\n")


def test_failures_and_exit_codes(tmp_path):
    p = cli("-c", "raise ValueError('x')")
    assert p.returncode == 1
    assert p.stderr.rstrip("\n").endswith("ValueError: x")
    p = cli("--timeout", "300", "-c", "while True: pass")
    assert p.returncode == 1
    # the guest's own stderr is streamed first; the CLI's line comes last
    assert p.stderr.strip().split("\n")[-1] == "eryx: timeout: execution timed out after 300 ms"
    missing = tmp_path / "missing.py"
    p = cli(str(missing))
    assert p.returncode == 1
    assert p.stderr.strip() == f"eryx: {missing}: No such file or directory"


def test_usage_errors(tmp_path):
    script = tmp_path / "s.py"
    script.write_text("pass")
    assert cli("-c", "pass", str(script)).returncode == 2
    p = cli("-v", "nonsense", "-c", "pass")
    assert p.returncode == 2
    assert "invalid volume format 'nonsense', expected SRC:DST[:ro|:rw]" in p.stderr


def test_blank_stdin_prints_help():
    p = cli(stdin="")
    assert p.returncode == 0
    assert "usage" in p.stdout.lower()


def test_memory_flag():
    p = cli("--max-memory", str(64 * 1024 * 1024), "-c", "x = bytearray(200 * 1024 * 1024)")
    assert p.returncode == 1
    assert p.stderr.strip().split("\n")[-1] == (
        "eryx: resource limit: memory limit exceeded: the guest needed more than "
        "max_memory_bytes=67108864")


def test_volume_flag(tmp_path):
    (tmp_path / "in.txt").write_text("volume text")
    p = cli("-v", f"{tmp_path}:/mnt/v:ro", "-c", "print(open('/mnt/v/in.txt').read())")
    assert (p.returncode, p.stdout) == (0, "volume text\n")


@pytest.mark.timeout(60)
def test_piped_stdin_runs_once():
    """Piped input (not a TTY) runs once instead of starting the REPL."""
    p = cli(stdin="x = 1\nprint(x + 1)\n")
    assert p.stdout == "2\n"
