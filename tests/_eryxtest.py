"""Helpers shared by the test modules (imported as ``from _eryxtest import ...``)."""

from __future__ import annotations

import textwrap
import threading
import time

import eryx



def dedent(code: str) -> str:
    return textwrap.dedent(code).strip("\n") + "\n"


def run(target, code: str):
    """Executes dedented ``code`` on a Sandbox or Session."""
    return target.execute(dedent(code))


TRUNCATION_MARKER = "[eryx: output truncated after 16777216 bytes]"
STATE_LOST_SUFFIX = "; the session's interpreter was reset and its state was lost"
MAX_INT64 = 2**63 - 1
MAX_UINT32 = 2**32 - 1

DEFAULT_LIMITS_REPR = (
    "ResourceLimits(execution_timeout_ms=30000, callback_timeout_ms=10000, "
    "max_memory_bytes=134217728, max_callback_invocations=1000, max_fuel=None, "
    "max_vfs_bytes=None)"
)

DEFAULT_BLOCKED_HOSTS = [
    "localhost", "*.localhost", "127.*", "10.*",
    "172.16.*", "172.17.*", "172.18.*", "172.19.*", "172.20.*", "172.21.*",
    "172.22.*", "172.23.*", "172.24.*", "172.25.*", "172.26.*", "172.27.*",
    "172.28.*", "172.29.*", "172.30.*", "172.31.*",
    "192.168.*", "169.254.*", "[::1]",
]


class Timer:
    def __enter__(self):
        self.start = time.monotonic()
        self.elapsed = None
        return self

    def __exit__(self, *exc):
        self.elapsed = time.monotonic() - self.start
        return False


def run_in_thread(fn, *args, **kwargs):
    """Starts fn in a daemon thread; returns (thread, box) where box gets
    'result' or 'error' once fn returns."""
    box: dict = {}

    def target():
        try:
            box["result"] = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t, box


def wait_for_file(store, path: str, timeout: float = 10.0) -> bytes:
    """Polls a VfsStorage until ``path`` exists; returns its contents."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return store.read_file(path)
        except FileNotFoundError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)




def make_sandbox(**limit_kwargs):
    return eryx.Sandbox(resource_limits=eryx.ResourceLimits(**limit_kwargs))
