"""The user docs and the example plugin package, found in an installed copy or a source checkout.

``docs/*.md`` and ``examples/`` ship inside the installed package as ``ser_bench/_docs`` and
``ser_bench/_examples`` (pyproject.toml maps them), so ``bench docs`` works without the source
tree; in a source checkout they are read from the repository itself.
"""
from __future__ import annotations

from pathlib import Path

from .errors import ConfigError

_HERE = Path(__file__).resolve().parent
EXAMPLE = "ser-bench-example"
#: Short names for the topics (a topic is also reachable by its file name without .md).
ALIASES = {"plugin": "writing-a-plugin", "plugins": "writing-a-plugin"}
_SKIP = {"__pycache__", "build", "dist", ".pytest_cache"}


def docs_dir() -> Path:
    """The folder holding the Markdown docs."""
    for d in (_HERE / "_docs", _HERE.parent / "docs"):
        if d.is_dir() and any(d.glob("*.md")):
            return d
    raise ConfigError(f"the ser-bench docs are missing from this installation ({_HERE}); reinstall ser-bench")


def example_dir() -> Path:
    """The example third-party plugin package (a complete pip-installable project)."""
    for d in (_HERE / "_examples" / EXAMPLE, _HERE.parent / "examples" / EXAMPLE):
        if (d / "pyproject.toml").is_file():
            return d
    raise ConfigError(f"the example plugin package is missing from this installation ({_HERE}); reinstall ser-bench")


def topics() -> dict[str, str]:
    """``topic -> first heading`` for every doc, plus ``example``."""
    out = {p.stem: _title(p) for p in sorted(docs_dir().glob("*.md"))}
    out["example"] = f"the example plugin package {EXAMPLE} (every file; copy it with `cp -r $(bench docs --path example) DIR`)"
    return out


def _title(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
    return path.stem


def locate(topic: str) -> Path:
    """The file (a doc) or folder (``example``) of ``topic``."""
    if topic == "example":
        return example_dir()
    name = ALIASES.get(topic, topic)
    path = docs_dir() / f"{name}.md"
    if not path.is_file():
        raise ConfigError(f"no docs topic {topic!r}; topics: {', '.join(topics())} (`bench docs` lists them)")
    return path


def example_files() -> list[Path]:
    """The example package's files, relative to its folder, in a reading order (README first)."""
    root = example_dir()
    files = [p.relative_to(root) for p in root.rglob("*")
             if p.is_file() and not _SKIP & set(p.relative_to(root).parts)
             and not any(part.endswith(".egg-info") for part in p.parts) and p.suffix != ".pyc"]
    order = {"README.md": 0, "pyproject.toml": 1}
    return sorted(files, key=lambda p: (order.get(p.as_posix(), 2), p.as_posix()))


def render(topic: str) -> str:
    """The text ``bench docs TOPIC`` prints: a doc, or every file of the example package."""
    path = locate(topic)
    if path.is_file():
        return path.read_text(encoding="utf-8")
    parts = [f"# {EXAMPLE}: a complete plugin package, at {path}\n"
             f"# Copy it to start your own: cp -r {path} ser-bench-mypkg\n"]
    for rel in example_files():
        parts.append(f"\n==> {rel.as_posix()} <==\n{(path / rel).read_text(encoding='utf-8')}")
    return "".join(parts)
