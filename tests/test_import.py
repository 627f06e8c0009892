"""`import eryx` is cheap (issue 13): it imports no other module, loads no extension, opens no
runtime; the public names load on first access and are the same objects as in their modules."""

from __future__ import annotations

import subprocess
import sys

import pytest

import eryx


def _fresh(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_import_eryx_imports_nothing_else():
    out = _fresh(
        "import sys\n"
        "before = set(sys.modules)\n"
        "import eryx\n"
        "print(sorted(set(sys.modules) - before))\n"
    )
    assert out == "['eryx']"


def test_first_use_of_a_name_loads_its_module_only():
    out = _fresh(
        "import sys\n"
        "import eryx\n"
        "eryx.ResourceLimits\n"
        "print('eryx._limits' in sys.modules, 'eryx._eryx' in sys.modules, "
        "'eryx._sandbox' in sys.modules)\n"
    )
    assert out == "True False False"


@pytest.mark.parametrize("name", [n for n in eryx.__all__ if n not in ("__version__", "GUEST_PYTHON_VERSION")])
def test_lazy_names_are_the_module_objects(name):
    import importlib

    value = getattr(eryx, name)
    module = importlib.import_module("eryx." + eryx._LAZY[name])
    assert getattr(module, name) is value
    assert name in dir(eryx)


def test_unknown_attribute_raises_attribute_error():
    with pytest.raises(AttributeError, match="no_such_name"):
        eryx.no_such_name  # noqa: B018
