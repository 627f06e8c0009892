"""A cache directory that cannot be written is not announced as caching anything (issue 18,
item 11): the notices say "cached for later processes" only when that is true."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.timeout(600)
def test_no_cached_notice_when_the_cache_cannot_be_written(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    env = dict(os.environ, GOERYX_CACHE_DIR=str(blocker / "cache"))  # cannot be created
    # The fuel module is compiled on first use (never shipped precompiled): its notice is
    # printed whatever the wheel carries.
    proc = subprocess.run(
        [sys.executable, "-c",
         "import eryx\n"
         "sb = eryx.Sandbox(resource_limits=eryx.ResourceLimits(max_fuel=10**9))\n"
         "print(sb.execute('print(6 * 7)').stdout)"],
        capture_output=True, text=True, timeout=600, env=env, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "42"
    assert "compiling the fuel-metering guest runtime" in proc.stderr  # the notice is there
    assert "cached" not in proc.stderr, proc.stderr
