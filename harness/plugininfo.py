"""What `bench plugins` shows about a plugin class: its options, and class attributes read without importing it.

* :func:`static_attributes` reads ``name`` / ``version`` / ``description`` of a lazy
  ``"module:Class"`` target from its source (``ast``), so listing plugins never imports torch.
* :func:`options` describes every option of a plugin's pydantic ``Config``: type, default and a
  one-line description, taken from ``Field(description=...)`` or, failing that, from an
  ``Attributes:`` section of the ``Config``'s (or the plugin class's) docstring, a
  ``* ``name``: ...`` bullet of the module docstring, or ``#:`` comments above the field.
"""
from __future__ import annotations

import ast
import importlib.util
import inspect
import json
import re
import sys
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic_core import PydanticUndefined

STATIC_ATTRS = ("name", "version", "description")


def static_attributes(target: str, *, use_imported: bool = True) -> dict[str, Any] | None:
    """``name``, ``version``, ``description`` of a lazy target, read from its source without importing it.

    Follows base classes defined in the same module or imported by ``from MODULE import Base``
    (relative or absolute; e.g. a model class whose ``version`` lives on a base in a sibling
    module). Returns only the attributes found as literals; None if the module's source or the
    class cannot be found. With ``use_imported``, a module that is already imported is asked
    directly.
    """
    mod, _, attr = target.partition(":")
    module = sys.modules.get(mod)
    if use_imported and module is not None and hasattr(module, attr):  # already imported: no need to guess
        cls = getattr(module, attr)
        return {k: getattr(cls, k) for k in STATIC_ATTRS if hasattr(cls, k)}
    return _static_class_attrs(mod, attr, depth=0)


def _module_tree(mod: str) -> ast.Module | None:
    """The parsed source of module ``mod``, found without importing it (only its parent packages)."""
    try:
        spec = importlib.util.find_spec(mod)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    try:
        return ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None


def _static_class_attrs(mod: str, attr: str, depth: int) -> dict[str, Any] | None:
    tree = _module_tree(mod)
    if tree is None:
        return None
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    imported: dict[str, tuple[str, str]] = {}  # local name -> (module, name) for `from X import Name`
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = mod.split(".")
                base_pkg = ".".join(parts[: len(parts) - node.level]) if node.level <= len(parts) else ""
                source = f"{base_pkg}.{node.module}" if node.module else base_pkg
            else:
                source = node.module or ""
            for alias in node.names:
                imported[alias.asname or alias.name] = (source, alias.name)
    if attr not in classes:
        return None

    def attrs(name: str, level: int) -> dict[str, Any]:
        node, out = classes[name], {}
        for base in node.bases:
            if not isinstance(base, ast.Name) or level >= 10:
                continue
            if base.id in classes:
                out.update(attrs(base.id, level + 1))
            elif base.id in imported and depth < 5:
                source, real = imported[base.id]
                inherited = _static_class_attrs(source, real, depth + 1) if source else None
                out.update(inherited or {})
        for stmt in node.body:
            if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
                tgt, value = stmt.targets[0], stmt.value
            elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
                tgt, value = stmt.target, stmt.value
            else:
                continue
            if isinstance(tgt, ast.Name) and tgt.id in STATIC_ATTRS:
                try:
                    out[tgt.id] = ast.literal_eval(value)
                except ValueError:
                    out.pop(tgt.id, None)  # not a literal: unknown without importing
        return out

    return attrs(attr, 0)


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class Option:
    """One option of a plugin's ``Config``."""

    name: str
    type: str  # e.g. "float (>= 0, <= 40)", "'dense' | 'paper'", "Path | null"
    default: str  # as JSON (what -o NAME.KEY=VALUE takes), or "required"
    description: str  # one line; "" if the plugin documents none

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "type": self.type, "default": self.default, "description": self.description}


def options(cls: type, model: str = "Config") -> list[Option]:
    """Every option of ``cls.Config`` (or of another nested model, e.g. a corruption's ``Params``)
    with its type, default and one-line description."""
    config = getattr(cls, model)
    found = _documented(cls)
    out = []
    for name, field in config.model_fields.items():
        desc = field.description or found.get(name, "")
        out.append(Option(name, _type_text(field.annotation, field.metadata), _default_text(field), _one_line(desc)))
    return out


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("``", "`")).strip()


def _default_text(field: Any) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):
        return str(value)


_CONSTRAINTS = (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="), ("min_length", "min length"),
                ("max_length", "max length"))


def _type_text(annotation: Any, metadata: list[Any]) -> str:
    text = _annotation_text(annotation)
    bounds = []
    for m in metadata:
        for attr, sym in _CONSTRAINTS:
            v = getattr(m, attr, None)
            if v is not None:
                bounds.append(f"{sym} {v:g}" if isinstance(v, float) else f"{sym} {v}")
    return f"{text} ({', '.join(bounds)})" if bounds else text


def _annotation_text(t: Any) -> str:
    origin, args = typing.get_origin(t), typing.get_args(t)
    if t is type(None):
        return "null"
    if origin is typing.Literal:
        return " | ".join(json.dumps(a) for a in args)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " | ".join(_annotation_text(a) for a in args)
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        inner = ", ".join("..." if a is Ellipsis else _annotation_text(a) for a in args)
        return f"{name}[{inner}]" if args else name
    return getattr(t, "__name__", str(t).replace("typing.", ""))


# --------------------------------------------------------------------------- descriptions from docstrings

_SECTION = re.compile(r"^(\s*)(Attributes|Options|Args|Parameters)\b[^\n]*:\s*$")
_ENTRY = re.compile(r"^(\s*)([A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)*)\s*(?:\([^)]*\))?:\s+(.*)$")
_BULLET = re.compile(r"^\s*[*-]\s+((?:``\w+``(?:\s*,\s*)?)+)\s*(?:\([^)]*\))?:\s+(.*)$")


def _documented(cls: type) -> dict[str, str]:
    """Option descriptions written in docstrings and comments (the fallback for Field(description=))."""
    found: dict[str, str] = {}
    sources: list[str] = []
    for klass in cls.Config.__mro__:
        if klass.__module__.startswith(("pydantic", "builtins")):
            continue
        sources.append(inspect.getdoc(klass) or "")
    for klass in cls.__mro__:
        if klass.__module__.startswith("builtins"):
            continue
        sources.append(inspect.getdoc(klass) or "")
        mod = sys.modules.get(klass.__module__)
        sources.append(inspect.getdoc(mod) or "" if mod else "")
    for text in sources:
        for name, desc in _parse_docstring(text).items():
            found.setdefault(name, desc)
    for name, desc in _comments(cls.Config).items():
        found.setdefault(name, desc)
    return found


def _parse_docstring(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        bullet = _BULLET.match(lines[i])
        if bullet:
            names = re.findall(r"``(\w+)``", bullet.group(1))
            desc = [bullet.group(2)]
            i += 1
            while i < len(lines) and lines[i].startswith("  ") and not _BULLET.match(lines[i]):
                desc.append(lines[i].strip())
                i += 1
            for n in names:
                out.setdefault(n, " ".join(desc))
            continue
        section = _SECTION.match(lines[i])
        i += 1
        if not section:
            continue
        base = None
        current: list[str] = []
        names: list[str] = []
        while i < len(lines):
            line = lines[i]
            if not line.strip():
                i += 1
                continue
            indent = len(line) - len(line.lstrip())
            if indent <= len(section.group(1)):
                break
            entry = _ENTRY.match(line)
            if entry and (base is None or indent == base):
                for n in names:
                    out.setdefault(n, " ".join(current))
                base = indent
                names = [n.strip() for n in entry.group(2).split(",")]
                current = [entry.group(3)]
            elif base is not None and indent > base:
                current.append(line.strip())
            else:
                break
            i += 1
        for n in names:
            out.setdefault(n, " ".join(current))
    return out


def _comments(config: type) -> dict[str, str]:
    """``#: text`` comment lines directly above ``name: type = ...`` in the Config's source."""
    out: dict[str, str] = {}
    for klass in config.__mro__:
        try:
            lines = inspect.getsource(klass).splitlines()
        except (OSError, TypeError):
            continue
        pending: list[str] = []
        for line in lines:
            s = line.strip()
            if s.startswith("#:"):
                pending.append(s[2:].strip())
                continue
            m = re.match(r"^([A-Za-z_]\w*)\s*:", s)
            if m and pending:
                out.setdefault(m.group(1), " ".join(pending))
            pending = []
    return out
