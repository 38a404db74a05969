"""Hook specifications for ser-bench plugins. Bodies are intentionally empty.

A plugin is a module or object with functions decorated by :data:`hookimpl`. Built-in
plugins live in ``plugins/``; third-party packages expose theirs through the ``ser_bench``
entry-point group.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("ser_bench")
hookimpl = pluggy.HookimplMarker("ser_bench")

#: ``register(name, target)``: ``target`` is a plugin class or a lazy "module:Class" string.
Register = Callable[..., None]


@hookspec
def register_enhancers(register: Register) -> None:
    """Offer speech enhancers (subclasses of :class:`ser_bench.Enhancer`).

    Call ``register(name, target)`` once per enhancer. ``target`` is the class or a lazy
    ``"package.module:Class"`` string, so heavy imports (torch) happen only when the enhancer is
    selected; pass ``description="..."`` with a lazy target so ``bench plugins`` can list it
    without importing it. Called once per process while the registry is built. A name already registered
    by another plugin is an error.
    """


@hookspec
def register_ser_models(register: Register) -> None:
    """Offer SER models (subclasses of :class:`ser_bench.SERModel`); same rules as enhancers."""


@hookspec
def register_datasets(register: Register) -> None:
    """Offer datasets (subclasses of :class:`ser_bench.Dataset`); same rules as enhancers."""


@hookspec
def register_noise_sources(register: Register) -> None:
    """Offer noise sources (subclasses of :class:`ser_bench.NoiseSource`); same rules as enhancers."""


@hookspec
def register_corruptions(register: Register) -> None:
    """Offer corruptions (subclasses of :class:`ser_bench.Corruption`): reverberation, babble, a
    channel... Same rules as enhancers. A run names a corruption step as ``NAME(param=value)``."""


@hookspec
def register_commands(cli: Any) -> None:
    """Add click commands to the ``bench`` group (``cli`` is the click group)."""


@hookspec
def result_recorded(run_id: int, cell: dict[str, Any], metrics: dict[str, float]) -> None:
    """Event: one cell finished and was committed. For observers (progress, export) only."""
