"""``check_hooks`` (a plugin module, what an entry point names) and ``check_plugin`` (dispatch by kind)."""
from __future__ import annotations

from typing import Any

import pluggy

from .. import hookspecs
from ..errors import BenchError
from ..interfaces import Dataset, Enhancer, NoiseSource, Plugin, SERModel
from ..registry import HOOKS, LABEL, Entry
from .common import _NAME_RE, ConformanceError, _call
from .datasets import check_dataset
from .enhancers import check_enhancer
from .noise_sources import check_noise_source
from .ser_models import check_ser_model


def check_plugin(plugin: Plugin | type[Plugin], **kwargs: Any) -> Plugin:
    """Run the check for the plugin's kind (enhancer, SER model, dataset or noise source)."""
    cls = plugin if isinstance(plugin, type) else type(plugin)
    checks = {Enhancer: check_enhancer, SERModel: check_ser_model, Dataset: check_dataset, NoiseSource: check_noise_source}
    for base, check in checks.items():
        if isinstance(cls, type) and issubclass(cls, base):
            return check(plugin, **kwargs)  # type: ignore[operator]
    raise ConformanceError(repr(plugin), "is a plugin", "it subclasses none of Enhancer, SERModel, Dataset, NoiseSource")


def check_hooks(plugin: object) -> dict[tuple[str, str], type[Plugin]]:
    """Check a plugin module (what your entry point points at) and return what it registers.

    Rules: every ``@hookimpl`` function names a known hook (a typo such as
    ``register_enhancer`` would otherwise be silently ignored); registered names are valid and
    unique; every target (class or lazy ``"module:Class"``) imports and subclasses the right
    interface.

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

        def register(name: str, target: object, _k: str = kind) -> None:
            entries.append(Entry(kind=_k, name=name, target=target, plugin="checked", dist="?", dist_version="?"))

        for impl in getattr(pm.hook, hook).get_hookimpls():
            _call(who, "registers cleanly", f"{hook}()", lambda impl=impl: impl.function(register=register))
        for e in entries:
            if not isinstance(e.name, str) or not _NAME_RE.match(e.name):
                raise ConformanceError(who, "registers valid names", f"{LABEL[kind]} name {e.name!r}; use a short lowercase name")
            if (kind, e.name) in found:
                raise ConformanceError(who, "registers unique names", f"{LABEL[kind]} {e.name!r} is registered twice")
            try:
                found[(kind, e.name)] = e.resolve()
            except BenchError as exc:
                raise ConformanceError(who, "registers importable plugin classes", str(exc)) from exc
    if not found:
        raise ConformanceError(who, "registers something", "no register_* hook registered any plugin")
    return found

