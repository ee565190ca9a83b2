"""MkDocs hook: the API reference, one page per public module of gflow, generated at build time
from the source tree (so it never lists a module that is gone nor misses a new one).

The top-level envs/ folder installs as `gflow.envs` (a setuptools package-dir mapping), which
mkdocstrings' static reader cannot follow (nor links: it resolves them): at startup the hook
copies the Python sources into build/docs-tree with envs/ inside gflow/, where mkdocs.yml points
the Python handler.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
TREE = ROOT / "build" / "docs-tree"
SOURCES = ((ROOT / "gflow", "gflow"), (ROOT / "envs", "gflow.envs"))
"""(folder, the package it installs as)."""


def public_modules() -> dict[str, Path]:
    """Module name -> source file of every public module (no part of its name starts with _)."""
    found: dict[str, Path] = {}
    for folder, package in SOURCES:
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            if any(part.startswith("_") for part in parts):
                continue
            found[".".join((package, *parts))] = path
    return dict(sorted(found.items()))


def summary(path: Path) -> str:
    """The first sentence-line of a module's docstring (empty without one)."""
    docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    return " ".join(docstring.split("\n\n")[0].split())


def copy_sources() -> None:
    """Make TREE/gflow a copy of gflow/ with envs/ inside it (Python files only); each file is
    replaced atomically, so that concurrent builds read whole files."""
    wanted = set()
    for folder, package in SOURCES:
        for path in folder.rglob("*.py"):
            copy = TREE.joinpath(*package.split("."), path.relative_to(folder))
            wanted.add(copy)
            copy.parent.mkdir(parents=True, exist_ok=True)
            temporary = copy.with_name(f".{copy.name}.{os.getpid()}")
            temporary.write_bytes(path.read_bytes())
            os.replace(temporary, copy)
    for stale in set(TREE.rglob("*.py")) - wanted:
        stale.unlink()


def index_page(modules: dict[str, Path]) -> str:
    """The API reference's front page: every module with its one-line summary."""
    lines = [
        "# API reference",
        "",
        "Generated from the docstrings. `gflow.envs` is the top-level `envs/` folder of the",
        "repository, installed under gflow's namespace.",
        "",
        "| module | what it holds |",
        "| --- | --- |",
    ]
    for name, path in modules.items():
        text = summary(path).replace("|", "\\|")
        lines.append(f"| [`{name}`]({name}.md) | {text} |")
    return "\n".join(lines) + "\n"


def on_startup(command: str, dirty: bool) -> None:
    """Copy the sources before mkdocstrings' handler computes its search paths."""
    copy_sources()


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add api/index.md and one api/<module>.md page per public module."""
    modules = public_modules()
    files.append(File.generated(config, "api/index.md", content=index_page(modules)))
    for name in modules:
        page = f"# `{name}`\n\n::: {name}\n    options:\n      show_root_heading: false\n"
        files.append(File.generated(config, f"api/{name}.md", content=page))
    return files

