"""The documentation's code runs: every ```python block of a page under docs/, and every ```bash
block whose lines are all `gflow ...` commands, in page order, in one namespace per page, in a
temporary folder. A block titled as a file (```python title="staircase.py", or any other
language) is written to that file first, for the code and commands that read it. A block right
after the line `<!-- docs-test: skip -->` is left out."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import sys
import types
from pathlib import Path

import pytest
from gflow.envs.registry import ENVIRONMENTS

from gflow.bench import BENCHMARKS
from gflow.cli import main
from gflow.objectives import OBJECTIVES
from gflow.policies.registry import POLICIES

REGISTRIES = (ENVIRONMENTS, OBJECTIVES, POLICIES)
"""What a page may add to (the architecture recipes do); restored after each page."""

DOCS = Path(__file__).resolve().parents[1] / "docs"
SKIP = "<!-- docs-test: skip -->"
FENCE = re.compile(
    r"^(?P<skip><!-- docs-test: skip -->\n)?```(?P<lang>\w*)(?P<info>[^\n]*)\n(?P<code>.*?)^```$",
    re.DOTALL | re.MULTILINE,
)


TITLE = re.compile(r'title="(?P<file>[\w.-]+)"')


def code_blocks(text: str) -> list[tuple[str, str, int, str | None]]:
    """(kind, code, line, file title or None) of each block of a page, unless marked to skip, that
    runs (kind "python", or "gflow" for bash made only of gflow commands) or is a file ("file")."""
    blocks = []
    for match in FENCE.finditer(text):
        lang, code = match["lang"], match["code"]
        line = text.count("\n", 0, match.start("code"))
        if match["skip"]:
            continue
        commands = [c for c in code.splitlines() if c.strip()]
        title = TITLE.search(match["info"])
        gflow = lang == "bash" and all(c.startswith("gflow ") for c in commands)
        kind = "python" if lang == "python" else "gflow" if gflow else "file"
        if kind != "file" or title:
            blocks.append((kind, code, line, title["file"] if title else None))
    return blocks


def page_blocks(page: Path) -> list[tuple[str, str, int, str | None]]:
    """The runnable blocks of a page file."""
    return code_blocks(page.read_text(encoding="utf-8"))


PAGES = sorted(p for p in DOCS.rglob("*.md") if page_blocks(p))


def run_gflow(commands: str, where: str) -> None:
    """Run each `gflow ...` line through the command's entry point, in this process (no start-up
    cost); fail with its error output unless it exits 0."""
    for command in commands.splitlines():
        if not command.strip():
            continue
        errors = io.StringIO()
        with contextlib.redirect_stderr(errors):
            code = main(shlex.split(command)[1:])
        if code != 0:
            pytest.fail(f"{where}: `{command}` exited {code}:\n{errors.getvalue()}")


def test_pages_have_code():
    """The tutorials are among the pages whose code runs (the test cannot pass vacuously)."""
    names = {p.relative_to(DOCS).as_posix() for p in PAGES}
    assert {"tutorials/environment.md", "tutorials/molecules.md"} <= names
    assert "tutorials/hypervolume.md" in names


def test_skip_marker_and_fences():
    """Python and gflow-only bash blocks run; other shells and marked blocks do not."""
    text = (
        "```python\nx = 1\n```\n\n```bash\ngflow --help\n```\n\n```bash\nls\n```\n\n"
        f"{SKIP}\n```python\nraise SystemExit\n```\n\n```text\ngflow hv\n```\n\n"
        '```python title="mine.py"\ny = 2\n```\n\n```text title="data.txt"\nz\n```\n'
    )
    assert code_blocks(text) == [
        ("python", "x = 1\n", 1, None),
        ("gflow", "gflow --help\n", 5, None),
        ("python", "y = 2\n", 22, "mine.py"),
        ("file", "z\n", 26, "data.txt"),
    ]


@pytest.fixture
def registries():
    """The registries as they were, put back after the test."""
    saved = [dict(registry) for registry in REGISTRIES]
    yield
    for registry, before in zip(REGISTRIES, saved, strict=True):
        registry.clear()
        registry.update(before)
    assert BENCHMARKS == BENCHMARKS_BEFORE


BENCHMARKS_BEFORE = tuple(BENCHMARKS)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(DOCS).as_posix())
def test_page_code_runs(page, tmp_path, monkeypatch, registries):
    """Each runnable block of the page, in order, in one namespace, in a temporary folder."""
    monkeypatch.chdir(tmp_path)
    module = types.ModuleType("docs_page")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    for kind, code, line, file in page_blocks(page):
        where = f"{page.relative_to(DOCS)}:{line + 1}"
        if file is not None:
            Path(file).write_text(code, encoding="utf-8")
        if kind == "gflow":
            run_gflow(code, where)
        elif kind == "python":
            exec(compile(code, where, "exec"), module.__dict__)
