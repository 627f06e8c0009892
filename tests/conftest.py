"""Shared fixtures and settings for the goeryx test suite.

The suite is black-box: it imports the installed ``eryx`` package only and
checks the contract in ``API.md`` (the normative spec).

Test dependencies: ``pytest`` and ``pytest-timeout==2.4.0`` (optional but
recommended; every test then gets a default timeout of ``DEFAULT_TIMEOUT_S``
seconds, method "thread", unless it carries its own ``@pytest.mark.timeout``).

``test_later_<topic>.py`` files specify features of the contract that are not built yet
(networking §3.3–3.4, the next issue): they are not collected until
their topic is enabled, by adding it to ``ENABLED_LATER`` below (when the feature lands, rename
the file to ``test_<topic>.py``) or through the environment variable ``ERYX_TEST_LATER`` (a
comma-separated list of topics, or ``all``), e.g. ``ERYX_TEST_LATER=network pytest tests/``.
"""

from __future__ import annotations

import os

import pytest

DEFAULT_TIMEOUT_S = 60

# Topics of test_later_<topic>.py files collected by default (none: see the module docstring).
ENABLED_LATER: set[str] = set()

_LATER_ENV = "ERYX_TEST_LATER"


def _enabled_later_topics() -> set[str] | None:
    """Returns the enabled topics, or None when every topic is enabled."""
    raw = os.environ.get(_LATER_ENV, "")
    topics = {t.strip() for t in raw.split(",") if t.strip()}
    if "all" in topics:
        return None
    return topics | ENABLED_LATER


def pytest_ignore_collect(collection_path, config):
    name = collection_path.name
    if not (name.startswith("test_later_") and name.endswith(".py")):
        return None
    topic = name[len("test_later_"):-len(".py")]
    enabled = _enabled_later_topics()
    if enabled is None or topic in enabled:
        return None
    return True


def pytest_sessionstart(session):
    """Make sure the guest runtime is compiled before any test runs: the first process on a
    machine compiles it (seconds) and says so on stderr, which tests of the CLI's exact stderr
    must not see."""
    import subprocess
    import sys

    subprocess.run([sys.executable, "-c", "import eryx; eryx.Sandbox().execute('pass')"],
                   check=True, capture_output=True, timeout=600)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "timeout(seconds): per-test timeout (pytest-timeout)")


def pytest_collection_modifyitems(config, items):
    if not config.pluginmanager.hasplugin("timeout"):
        return
    for item in items:
        if item.get_closest_marker("timeout") is None:
            # "thread": a hang inside a native call (execute holds no Python frame
            # that a signal could interrupt) must still end the run.
            item.add_marker(pytest.mark.timeout(DEFAULT_TIMEOUT_S, method="thread"))


# ---------------------------------------------------------------------------
# fixtures


@pytest.fixture
def sandbox():
    import eryx

    sb = eryx.Sandbox()
    try:
        yield sb
    finally:
        sb.close()


@pytest.fixture
def session():
    import eryx

    s = eryx.Session()
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def store():
    import eryx

    return eryx.VfsStorage()
