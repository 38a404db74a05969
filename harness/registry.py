"""Name -> plugin class registry for the four plugin kinds, built from the plugin manager."""
from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from .errors import PluginError, UnknownPluginError
from .interfaces import Corruption, Dataset, Enhancer, NoiseSource, Plugin, SERModel

Kind = Literal["enhancer", "ser_model", "dataset", "noise_source", "corruption"]
KINDS: dict[str, type[Plugin]] = {
    "enhancer": Enhancer,
    "ser_model": SERModel,
    "dataset": Dataset,
    "noise_source": NoiseSource,
    "corruption": Corruption,
}
HOOKS: dict[str, str] = {
    "enhancer": "register_enhancers",
    "ser_model": "register_ser_models",
    "dataset": "register_datasets",
    "noise_source": "register_noise_sources",
    "corruption": "register_corruptions",
}
LABEL = {"enhancer": "enhancer", "ser_model": "SER model", "dataset": "dataset", "noise_source": "noise source", "corruption": "corruption"}


@dataclass
class Entry:
    """One registered plugin class (maybe not imported yet)."""

    kind: str
    name: str
    target: Any  # class or "module:Class"
    plugin: str  # the pluggy plugin (module) that registered it
    dist: str  # distribution name, "ser-bench" for built-ins
    dist_version: str
    description: str = ""  # given at registration, so listing a lazy plugin needs no import
    _cls: type[Plugin] | None = None
    _static_attrs: dict[str, Any] | None = None

    def resolve(self) -> type[Plugin]:
        """Import (if lazy) and check the class: its base class, and its ``name`` equal to the registered one."""
        if self._cls is None:
            target = self.import_target()
            mismatch = self._name_mismatch(getattr(target, "name", None), f"{target.__module__}.{target.__qualname__}")
            if mismatch:
                raise PluginError(mismatch)
            self._cls = target
        return self._cls

    def import_target(self) -> type[Plugin]:
        """Import a lazy target and check its base class (not its name; :meth:`resolve` does both)."""
        target = self._cls or self.target
        if isinstance(target, str):
            mod, _, attr = target.partition(":")
            try:
                target = getattr(importlib.import_module(mod), attr)
            except Exception as exc:
                raise PluginError(
                    f"{LABEL[self.kind]} {self.name!r} (from {self.dist} {self.dist_version}) failed "
                    f"to import {self.target!r}: {type(exc).__name__}: {exc}. Reinstall the plugin "
                    f"or exclude it with BENCH_LOAD_PLUGINS."
                ) from exc
        base = KINDS[self.kind]
        if not (isinstance(target, type) and issubclass(target, base)):
            raise PluginError(
                f"{LABEL[self.kind]} {self.name!r} registered by {self.plugin} is {target!r}, "
                f"not a subclass of ser_bench.{base.__name__}"
            )
        return target

    def _name_mismatch(self, cls_name: object, where: str) -> str | None:
        """The error for a class whose ``name`` differs from the name it is registered under."""
        if cls_name == self.name:
            return None
        return (
            f"{LABEL[self.kind]} {self.name!r} registered by {self.plugin} ({self.dist}) is {where}, whose name is "
            f"{cls_name!r}: the two must be equal (the class's name goes into cache keys and results). Register it "
            f"as {cls_name!r}, or set name = {self.name!r} in the class."
        )

    def _static(self) -> dict[str, Any]:
        """name / version / description of a lazy target, read from its source without importing it."""
        if self._cls is not None:
            return {k: getattr(self._cls, k) for k in ("name", "version", "description")}
        if not isinstance(self.target, str):
            return {k: getattr(self.target, k, None) for k in ("name", "version", "description")}
        if self._static_attrs is None:
            from .plugininfo import static_attributes

            self._static_attrs = static_attributes(self.target) or {}
        return self._static_attrs

    def describe(self) -> str:
        """The one-line description, without importing a lazy target when it can be avoided."""
        if self.description:
            return self.description
        static = self._static().get("description")
        if isinstance(static, str) and static:
            return static
        try:
            return self.resolve().description
        except PluginError as exc:
            return f"(broken: {exc})"

    def class_version(self) -> str:
        """The plugin class's ``version`` (part of cache keys), read without importing it when possible."""
        static = self._static().get("version")
        if isinstance(static, str) and static:
            return static
        try:
            return str(self.resolve().version)
        except PluginError:
            return "?"

    def problem(self) -> str | None:
        """What is wrong with this entry, as far as it can be seen without importing a lazy target."""
        if self._cls is not None or not isinstance(self.target, str):
            target = self._cls or self.target
            if not isinstance(target, type):
                return None  # resolve() explains it
            return self._name_mismatch(getattr(target, "name", None), f"{target.__module__}.{target.__qualname__}")
        name = self._static().get("name")
        return self._name_mismatch(name, self.target) if isinstance(name, str) else None


class Registry:
    """Frozen mapping (kind, name) -> Entry. Built by :func:`ser_bench.plugins.build_registry`."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, Entry]] = {k: {} for k in KINDS}
        self._frozen = False

    def add(self, entry: Entry) -> None:
        if self._frozen:
            raise PluginError("the plugin registry is frozen; register plugins through hooks")
        table = self._entries[entry.kind]
        if entry.name in table:
            other = table[entry.name]
            raise PluginError(
                f"duplicate {LABEL[entry.kind]} name {entry.name!r}: registered by {other.plugin} "
                f"({other.dist}) and by {entry.plugin} ({entry.dist}). Uninstall one, or exclude one "
                f"with BENCH_LOAD_PLUGINS."
            )
        if not entry.name or entry.name != entry.name.strip() or " " in entry.name:
            raise PluginError(f"invalid {LABEL[entry.kind]} name {entry.name!r} from {entry.plugin}")
        table[entry.name] = entry

    def freeze(self) -> None:
        self._frozen = True

    def names(self, kind: str) -> list[str]:
        return sorted(self._entries[kind])

    def entries(self, kind: str | None = None) -> Iterator[Entry]:
        for k in [kind] if kind else list(KINDS):
            yield from (self._entries[k][n] for n in sorted(self._entries[k]))

    def entry(self, kind: str, name: str) -> Entry:
        table = self._entries[kind]
        if name not in table and (wrapped := self._wrapped(kind, name)) is not None:
            return wrapped
        if name not in table:
            close = difflib.get_close_matches(name, list(table), n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise UnknownPluginError(
                f"unknown {LABEL[kind]} {name!r}.{hint} Available: {', '.join(sorted(table)) or 'none'} "
                f"(`bench plugins` lists them)."
            )
        return table[name]

    def find(self, name: str) -> list[Entry]:
        """The entries named ``name`` in any kind (raises UnknownPluginError with suggestions)."""
        hits = [t[name] for t in self._entries.values() if name in t]
        if not hits:  # a wrapper bound to a registered plugin, e.g. guarded-deepfilternet
            for kind in self._entries:
                try:
                    wrapped = self._wrapped(kind, name)
                except UnknownPluginError:
                    wrapped = None
                if wrapped is not None:
                    hits.append(wrapped)
        if not hits:
            every = sorted({n for t in self._entries.values() for n in t})
            close = difflib.get_close_matches(name, every, n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise UnknownPluginError(f"unknown plugin {name!r}.{hint} `bench plugins` lists them all.")
        return hits

    def _wrapped(self, kind: str, name: str) -> Entry | None:
        """``PREFIX-NAME`` for a pattern entry ``PREFIX-*`` (a wrapper plugin) and a registered NAME.

        The pattern's class must offer ``wrap(inner_name, inner_class)`` returning the class bound
        to NAME (e.g. ``guarded-*`` makes ``guarded-wiener``). Built on each lookup, never stored,
        so the registry stays frozen and picklable.
        """
        for pattern, e in self._entries[kind].items():
            prefix = pattern[:-1]
            if not pattern.endswith("*") or not name.startswith(prefix) or len(name) == len(prefix):
                continue
            inner = self.entry(kind, name[len(prefix):])  # unknown inner: its own error, with suggestions
            base = e.resolve()
            wrap = getattr(base, "wrap", None)
            if wrap is None:
                raise PluginError(f"{LABEL[kind]} pattern {pattern!r} from {e.plugin} has no wrap() classmethod")
            return Entry(kind=kind, name=name, target=wrap(inner.name, inner.resolve()), plugin=e.plugin,
                         dist=e.dist, dist_version=e.dist_version,
                         description=f"{inner.name}, wrapped by {pattern}: {e.describe()}")
        return None

    def get(self, kind: str, name: str) -> type[Plugin]:
        """The class registered under ``name`` (raises UnknownPluginError with suggestions)."""
        return self.entry(kind, name).resolve()

    def create(self, kind: str, name: str, options: dict[str, Any] | None = None) -> Any:
        """Instantiate a plugin with validated options."""
        return self.get(kind, name)(**(options or {}))

    def check(self, kind: str, names: list[str]) -> None:
        """Raise for the first unknown name (before any work starts)."""
        for n in names:
            self.entry(kind, n)
