"""Building the pluggy plugin manager: built-ins by module, third parties by entry point."""
from __future__ import annotations

import importlib
import importlib.metadata as md
import os
from collections.abc import Iterable, Iterator, Sequence
from functools import lru_cache

import pluggy

from . import __version__, hookspecs
from .errors import PluginError
from .registry import HOOKS, Entry, Registry

BUILTIN_PLUGINS: tuple[str, ...] = (
    "ser_bench_plugins.identity",
    "ser_bench_plugins.classic",
    "ser_bench_plugins.opensmile_svm",
    "ser_bench_plugins.synthetic",
    "ser_bench_plugins.noise_folder",
    "ser_bench_plugins.emodb",
    "ser_bench_plugins.enterface",
    "ser_bench_plugins.ravdess",
    "ser_bench_plugins.generic",
    "ser_bench_plugins.rescnn",
    "ser_bench_plugins.guarded",
    "ser_bench_plugins.pretrained",
    "ser_bench_plugins.speech_corpora",
    "ser_bench_plugins.audioset",
    "ser_bench_plugins.audformat_db",
    "ser_bench_plugins.recola",
    "ser_bench_plugins.e2e",
    "ser_bench_plugins.corpora",
    "ser_bench_plugins.ssl_probe",
    "ser_bench_plugins.corruptions",
)
ENTRY_POINT_GROUP = "ser_bench"
#: Comma-separated allow-list of third-party plugins (entry-point names or distribution names).
#: Unset: load all. Empty: load none.
ALLOW_ENV = "BENCH_LOAD_PLUGINS"


def _allowed(ep_name: str, dist_name: str) -> bool:
    raw = os.environ.get(ALLOW_ENV)
    if raw is None:
        return True
    allowed = {p.strip().lower().replace("_", "-") for p in raw.split(",") if p.strip()}
    return ep_name.lower().replace("_", "-") in allowed or dist_name.lower().replace("_", "-") in allowed


def _entry_points() -> Iterator[tuple[md.EntryPoint, str, str]]:
    """Every installed ``ser_bench`` entry point with its distribution's name and version."""
    for dist in md.distributions():
        for ep in dist.entry_points:
            if ep.group == ENTRY_POINT_GROUP:
                yield ep, dist.metadata["name"] or "?", dist.version


def make_plugin_manager(*, entry_points: bool = True, extra: Iterable[object] = ()) -> pluggy.PluginManager:
    """A fresh plugin manager with built-ins, allowed third-party plugins and ``extra`` objects."""
    pm = pluggy.PluginManager("ser_bench")
    pm.add_hookspecs(hookspecs)
    for name in BUILTIN_PLUGINS:
        pm.register(importlib.import_module(name), name=name)
    pm._ser_bench_dists = {name: ("ser-bench", __version__) for name in BUILTIN_PLUGINS}  # type: ignore[attr-defined]
    if entry_points:
        for ep, dname, dversion in _entry_points():
            if not _allowed(ep.name, dname) or pm.get_plugin(ep.name) is not None:
                continue
            try:
                plugin = ep.load()
            except Exception as exc:
                raise PluginError(
                    f"third-party plugin {ep.name!r} from {dname} {dversion} failed to import "
                    f"({ep.value}): {type(exc).__name__}: {exc}. Fix or uninstall it, or leave it out "
                    f"with {ALLOW_ENV}=<comma-separated plugins to load>."
                ) from exc
            pm.register(plugin, name=ep.name)
            pm._ser_bench_dists[ep.name] = (dname, dversion)  # type: ignore[attr-defined]
    for i, plugin in enumerate(extra):
        name = getattr(plugin, "__name__", None) or f"extra-{i}-{type(plugin).__name__}"
        pm.register(plugin, name=name)
        pm._ser_bench_dists[name] = ("(test)", "0")  # type: ignore[attr-defined]
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"a plugin implements an unknown hook: {exc}") from exc
    return pm


def build_registry(pm: pluggy.PluginManager) -> Registry:
    """Call the four registration hooks plugin by plugin, recording who registered what."""
    reg = Registry()
    dists = getattr(pm, "_ser_bench_dists", {})
    for kind, hook in HOOKS.items():
        for impl in getattr(pm.hook, hook).get_hookimpls():
            pname = impl.plugin_name
            dist, ver = dists.get(pname, ("?", "?"))

            def register(name: str, target: object, description: str = "", _k=kind, _p=pname, _d=dist,
                         _v=ver) -> None:
                reg.add(Entry(kind=_k, name=name, target=target, plugin=_p, dist=_d, dist_version=_v,
                              description=description))

            impl.function(register=register)
    reg.freeze()
    return reg


@lru_cache(maxsize=1)
def default_registry() -> Registry:
    """The process-wide registry (built-ins + allowed entry points). Tests build their own."""
    return build_registry(make_plugin_manager())


def installed_names(exclude: object = None) -> dict[tuple[str, str], str]:
    """``(kind, name) -> "plugin (distribution)"`` for the built-ins and every installed third-party plugin.

    Ignores ``BENCH_LOAD_PLUGINS`` (a user may load anything installed) and skips plugins that fail
    to import. ``exclude`` (a plugin module or object) and any entry point loading the module of
    the same name are left out, so a package checked while installed does not clash with itself.
    Used by :func:`ser_bench.testing.check_hooks`.
    """
    skip = getattr(exclude, "__name__", None)
    plugins: list[tuple[str, object, str]] = [(n, importlib.import_module(n), "ser-bench") for n in BUILTIN_PLUGINS]
    for ep, dname, _ in _entry_points():
        try:
            plugin = ep.load()
        except Exception:  # reported by `bench plugins`, not the checked package's problem
            continue
        plugins.append((ep.name, plugin, dname))
    found: dict[tuple[str, str], str] = {}
    for pname, plugin, dname in plugins:
        if plugin is exclude or (skip is not None and getattr(plugin, "__name__", None) == skip):
            continue
        for kind, hook in HOOKS.items():
            fn = getattr(plugin, hook, None)
            if not callable(fn):
                continue

            def register(name: str, target: object = None, description: str = "", _k: str = kind,
                         _who: str = f"{pname} ({dname})") -> None:
                found.setdefault((_k, name), _who)

            try:
                fn(register=register)
            except Exception:
                continue
    return found


_REGISTRIES: dict[tuple[str, ...], Registry] = {}


def registry_for(extra_plugins: Sequence[str] = ()) -> Registry:
    """The default registry, or one with extra plugin objects given as ``"module:attribute"``.

    Workers rebuild the driver's registry from these strings (a registry object itself cannot
    travel to another process); an attribute that is a class is instantiated.
    """
    extra = tuple(extra_plugins or ())
    if not extra:
        return default_registry()
    if extra not in _REGISTRIES:
        objs = []
        for spec in extra:
            mod, colon, attr = spec.partition(":")
            if not colon or not mod or not attr:
                raise PluginError(f"extra plugin {spec!r} must look like 'module:attribute'")
            obj = getattr(importlib.import_module(mod), attr)
            objs.append(obj() if isinstance(obj, type) else obj)
        _REGISTRIES[extra] = build_registry(make_plugin_manager(extra=objs))
    return _REGISTRIES[extra]

