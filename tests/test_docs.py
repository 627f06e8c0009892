"""The user documentation's examples run, and the API reference covers the public API.

Every fenced ```python block in ``docs/index.md`` and ``docs/guide/*.md`` is executed in a fresh
namespace against the installed ``eryx``, in a temporary working directory. If the next block
(after blank lines only) is a ```text block, the block's stdout must equal it; ``...`` in the
expected text matches any characters (as doctest's ELLIPSIS), and trailing whitespace is
ignored. Every ```console block runs its ``$ `` lines, one after the other, with bash in one
temporary directory, the installed ``eryx`` command first on PATH and an empty stdin; each
command's output (stdout and stderr interleaved) must match the lines that follow it, the same
way.

``<!-- docs-test: skip REASON -->`` on the line before a block skips it; REASON names the
external condition it needs.

The mkdocs build itself (``mkdocs build --strict``) runs in ``./build.sh test``.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [DOCS / "index.md", *sorted((DOCS / "guide").glob("*.md"))]

_FENCE = re.compile(r"^(`{3,})\s*([\w+-]*)[^\n]*$")
_DIRECTIVE = re.compile(r"^<!--\s*docs-test:\s*(\w+)\s*(.*?)\s*-->$")


@dataclass
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    directive: tuple[str, str] | None
    expected: str | None = None

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(DOCS)}:{self.line}"


def _blocks(page: Path) -> list[Block]:
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    last_end = -1  # index of the line after the previous block's closing fence
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i].strip())
        if not m:
            i += 1
            continue
        fence, lang = m.group(1), m.group(2)
        start = i
        i += 1
        body = []
        while i < len(lines) and lines[i].strip() != fence:
            body.append(lines[i])
            i += 1
        i += 1  # the closing fence
        code = "\n".join(body) + "\n"
        # A ```text block right after a ```python block is its expected output.
        if (lang == "text" and blocks and blocks[-1].lang == "python"
                and blocks[-1].expected is None
                and all(not line.strip() for line in lines[last_end:start])):
            blocks[-1].expected = code
            last_end = i
            continue
        prev = start - 1
        while prev >= 0 and not lines[prev].strip():
            prev -= 1
        d = _DIRECTIVE.match(lines[prev].strip()) if prev >= 0 else None
        blocks.append(Block(page, start + 1, lang, code, (d.group(1), d.group(2)) if d else None))
        last_end = i
    return blocks


ALL = [b for page in PAGES for b in _blocks(page)]
PYTHON = [b for b in ALL if b.lang == "python"]
CONSOLE = [b for b in ALL if b.lang == "console"]


def _matches(expected: str, actual: str) -> bool:
    def norm(text: str) -> str:
        return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())

    pattern = ".*?".join(re.escape(part) for part in norm(expected).split("..."))
    return re.fullmatch(pattern, norm(actual), re.DOTALL) is not None


def _skip_if_marked(block: Block) -> None:
    if block.directive and block.directive[0] == "skip":
        reason = block.directive[1]
        assert reason, f"{block.id}: a skipped example must say why"
        pytest.skip(reason)


def test_examples_were_found():
    assert len(PYTHON) >= 20, [b.id for b in PYTHON]
    assert CONSOLE, "the CLI page has console examples"
    for b in ALL:
        if b.directive:
            assert b.directive[0] == "skip", f"{b.id}: unknown directive {b.directive}"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("block", PYTHON, ids=lambda b: b.id)
def test_python_example(block: Block, tmp_path, monkeypatch):
    _skip_if_marked(block)
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    namespace = {"__name__": "__main__"}
    with contextlib.redirect_stdout(out):
        exec(compile(block.code, str(block.id), "exec"), namespace)  # noqa: S102
    if block.expected is not None:
        assert _matches(block.expected, out.getvalue()), (
            f"{block.id}: expected\n{block.expected}\ngot\n{out.getvalue()}"
        )


def _console_steps(block: Block) -> list[tuple[str, str]]:
    steps: list[tuple[str, list[str]]] = []
    for line in block.code.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        elif steps:
            steps[-1][1].append(line)
    return [(cmd, "\n".join(out)) for cmd, out in steps]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("block", CONSOLE, ids=lambda b: b.id)
def test_console_example(block: Block, tmp_path):
    _skip_if_marked(block)
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["COLUMNS"] = "100"  # argparse wraps --help to the terminal width
    steps = _console_steps(block)
    assert steps, f"{block.id}: no '$ ' command"
    for cmd, expected in steps:
        proc = subprocess.run(["bash", "-c", cmd], input="", stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, cwd=tmp_path, env=env,
                              timeout=100)
        actual = proc.stdout
        assert _matches(expected, actual), f"{block.id}: $ {cmd}\nexpected\n{expected}\ngot\n{actual}"


def test_reference_covers_the_public_api():
    import eryx

    reference = (DOCS / "reference.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^::: eryx\.(\w+)\s*$", reference, re.MULTILINE))
    missing = [name for name in eryx.__all__ if hasattr(eryx, name) and name not in documented]
    assert not missing, f"docs/reference.md lacks ::: eryx.<name> for {missing}"


def test_readme_links_the_guide_not_the_internal_contract():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "API.md" not in readme
    assert "docs/index.md" in readme or "docs/guide" in readme


def test_every_public_parameter_is_documented():
    """Every public class, method and property of ``eryx.__all__`` has a docstring, and every
    parameter of a constructor or method appears in its docstring's Args section (as parsed by
    griffe, which renders the API reference)."""
    griffe = pytest.importorskip("griffe")
    import eryx

    package = griffe.load("eryx", search_paths=[str(ROOT / "python")], docstring_parser="google")
    problems: list[str] = []

    def documented_params(obj) -> set[str]:
        if obj.docstring is None:
            return set()
        names = set()
        for section in obj.docstring.parse("google"):
            if section.kind.value in ("parameters", "other parameters"):
                names.update(p.name.lstrip("*") for p in section.value)
        return names

    def check_params(label: str, function, doc_owner) -> None:
        params = [p.name for p in function.parameters
                  if p.name not in ("self", "cls") and not p.name.startswith("_")]
        missing = [p for p in params if p not in documented_params(doc_owner)]
        if missing:
            problems.append(f"{label}: parameters {missing} not in the docstring")

    for name in eryx.__all__:
        obj = package.members.get(name)
        if obj is None or not obj.is_class:
            continue
        if not obj.docstring:
            problems.append(f"{name}: no docstring")
        init = obj.all_members.get("__init__")
        init = init.final_target if init is not None and init.is_alias else init
        if init is not None and init.is_function and init.parent.path.startswith("eryx."):
            # An inherited constructor is documented by the class that defines it.
            check_params(f"{name}()", init, init.parent)
        for member_name, member in obj.all_members.items():
            if member_name.startswith("_") or member.parent.path.startswith("builtins"):
                continue
            member = member.final_target if member.is_alias else member
            if not member.docstring:
                problems.append(f"{name}.{member_name}: no docstring")
            elif member.is_function and "property" not in member.labels:
                check_params(f"{name}.{member_name}()", member, member)
    assert not problems, "\n".join(problems)
