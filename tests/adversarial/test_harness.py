"""The harness itself must notice what it exists to notice: a hang, a memory blow-up, a crash."""

import pytest

from _harness import run_case


def test_reports_last_json_line():
    out = run_case("print('noise'); report(answer=42)", wall_s=30)
    assert out.check() == {"answer": 42}


def test_hang_is_killed_at_the_wall_bound():
    out = run_case("import time; time.sleep(60)", wall_s=1.5)
    assert out.killed == "wall"
    assert out.elapsed_s < 10
    with pytest.raises(AssertionError, match="wall bound"):
        out.check()


def test_memory_blowup_is_killed_at_the_rss_bound():
    out = run_case("x = bytearray(1 << 30); x[::4096] = b'1' * len(x[::4096]); import time; time.sleep(30)",
                   wall_s=30, max_rss_mib=256)
    assert out.killed == "rss"


def test_abort_fails_the_case():
    out = run_case("import os; os.abort()", wall_s=30)
    assert out.returncode != 0
    with pytest.raises(AssertionError, match="exited with"):
        out.check()
