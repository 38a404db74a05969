"""``check_hooks`` (a plugin module, what an entry point names) and ``check_plugin`` (dispatch by kind)."""
from __future__ import annotations

from typing import Any

import pluggy

from .. import hookspecs
from ..errors import BenchError
from ..interfaces import Corruption, Dataset, Enhancer, NoiseSource, Plugin, SERModel
from ..plugininfo import static_attributes
from ..plugins import installed_names
from ..registry import HOOKS, LABEL, Entry
from .common import _NAME_RE, ConformanceError, _call
from .corruptions import check_corruption
from .datasets import check_dataset
from .enhancers import check_enhancer
from .noise_sources import check_noise_source
from .ser_models import check_ser_model


def check_plugin(plugin: Plugin | type[Plugin], **kwargs: Any) -> Plugin:
    """Run the check for the plugin's kind (enhancer, SER model, dataset, noise source or corruption)."""
    cls = plugin if isinstance(plugin, type) else type(plugin)
    checks = {Enhancer: check_enhancer, SERModel: check_ser_model, Dataset: check_dataset, NoiseSource: check_noise_source,
              Corruption: check_corruption}
    for base, check in checks.items():
        if isinstance(cls, type) and issubclass(cls, base):
            return check(plugin, **kwargs)  # type: ignore[operator]
    raise ConformanceError(repr(plugin), "is a plugin", "it subclasses none of Enhancer, SERModel, Dataset, NoiseSource, Corruption")


def check_hooks(plugin: object, *, installed: bool = True) -> dict[tuple[str, str], type[Plugin]]:
    """Check a plugin module (what your entry point points at) and return what it registers.

    Rules: every ``@hookimpl`` function names a known hook (a typo such as
    ``register_enhancer`` would otherwise be silently ignored); registered names are valid and
    unique; a lazy ``"module:Class"`` target comes with ``description=`` (or a literal
    ``description`` in its class body), so that ``bench plugins`` lists it without importing it;
    every target imports, subclasses the right interface and has the ``name`` it is registered
    under; and, with ``installed=True``, no name is already taken by a built-in or another
    installed plugin package (``bench`` would stop with a duplicate-name error).

    Returns:
        ``{(kind, name): class}`` for everything the module registers.
    """
    who = f"plugin module {getattr(plugin, '__name__', plugin)!r}"
    pm = pluggy.PluginManager("ser_bench")
    pm.add_hookspecs(hookspecs)
    try:
        pm.register(plugin, name="checked")
        pm.check_pending()
    except (pluggy.PluginValidationError, ValueError) as exc:
        known = ", ".join(n for n in dir(hookspecs) if n.startswith(("register_", "result_")))
        raise ConformanceError(who, "implements known hooks", f"{exc}. Known hooks: {known}") from exc
    found: dict[tuple[str, str], type[Plugin]] = {}
    for kind, hook in HOOKS.items():
        entries: list[Entry] = []

        def register(name: str, target: object, description: str = "", _k: str = kind) -> None:
            """The same signature as the registry's ``register`` (ser_bench.plugins.build_registry)."""
            entries.append(Entry(kind=_k, name=name, target=target, plugin="checked", dist="?", dist_version="?",
                                 description=description))

        for impl in getattr(pm.hook, hook).get_hookimpls():
            _call(who, "registers cleanly", f"{hook}()", lambda impl=impl: impl.function(register=register))
        for e in entries:
            _check_entry(who, e, found)
    if not found:
        raise ConformanceError(who, "registers something", "no register_* hook registered any plugin")
    if installed:
        taken = installed_names(exclude=plugin)
        for kind, name in found:
            if (kind, name) in taken:
                raise ConformanceError(
                    who, "does not clash with installed plugins",
                    f"{LABEL[kind]} {name!r} is already registered by {taken[(kind, name)]}; with both installed, "
                    f"`bench` stops with a duplicate-name error. Choose another name (e.g. prefix it: 'mypkg-{name}')",
                )
    return found


def _check_entry(who: str, e: Entry, found: dict[tuple[str, str], type[Plugin]]) -> None:
    label = LABEL[e.kind]
    if not isinstance(e.name, str) or not _NAME_RE.match(e.name):
        raise ConformanceError(who, "registers valid names", f"{label} name {e.name!r}; use a short lowercase name")
    if (e.kind, e.name) in found:
        raise ConformanceError(who, "registers unique names", f"{label} {e.name!r} is registered twice")
    try:
        cls = e.import_target()
    except BenchError as exc:
        raise ConformanceError(who, "registers importable plugin classes", str(exc)) from exc
    if isinstance(e.target, str) and not e.description:
        static = (static_attributes(e.target, use_imported=False) or {}).get("description")
        if not (isinstance(static, str) and static.strip()):
            raise ConformanceError(
                who, "describes lazy targets",
                f"{label} {e.name!r} is registered lazily ({e.target!r}) without a description, so `bench plugins` "
                f"has to import it to list it; call register({e.name!r}, {e.target!r}, description=\"one line\")",
            )
    mismatch = e._name_mismatch(getattr(cls, "name", None), f"{cls.__module__}.{cls.__qualname__}")
    if mismatch:
        raise ConformanceError(who, "registers names matching the classes", mismatch)
    found[(e.kind, e.name)] = cls
