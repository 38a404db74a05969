"""What every check shares: :class:`ConformanceError`, the rules every plugin follows, helpers."""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..interfaces import Plugin, PluginConfig
from ..registry import KINDS, LABEL

PARTITIONS = ("train", "dev", "test")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")

#: Every rule a check can report, by check ("all": the rules every check applies first). A
#: :class:`ConformanceError` names one of these; docs/writing-a-plugin.md lists the same names
#: (tests/test_plugin_kit.py keeps the two equal).
RULES: dict[str, tuple[str, ...]] = {
    "all": (
        "is the right kind of plugin", "constructs from its options", "has a valid name", "has a version",
        "has a description", "has a strict Config", "has a stable identity",
    ),
    "check_enhancer": (
        "is ready to enhance", "trains on tiny data", "keeps length", "returns a numpy array", "returns float samples",
        "returns finite samples", "stays in range", "handles silence", "handles short inputs",
        "does not modify its input", "keeps the sample rate", "keeps the timing", "is deterministic",
        "passes the harness's own checks",
    ),
    "check_ser_model": (
        "has a valid task", "has a feature key", "featurizes audio", "is deterministic", "fits", "fit() returns self",
        "predicts without labels", "predicts one label per entry", "predicts training classes", "predicts time series",
        "learns the tone data",
    ),
    "check_dataset": (
        "has a valid task", "lists utterances", "has unique ids", "names speakers", "has valid labels",
        "uses known partitions", "is deterministic", "has several classes", "has complete partitions",
        "has several speakers", "has unique content keys", "has stable content keys", "has readable audio",
        "has audible audio", "has usable durations", "has labels matching the audio", "passes the harness's own checks",
    ),
    "check_noise_source": (
        "lists clips", "has unique clip ids", "has unique fingerprints", "splits train/test",
        "has disjoint train and test parts", "is deterministic", "has readable audio", "has audible audio",
    ),
    "check_corruption": (
        "has strict Params", "names its severity", "accepts its parameters", "returns a signal and info",
        "does not modify its input", "keeps length", "returns finite samples", "stays in range", "is deterministic",
        "keeps the timing",
    ),
    "check_plugin": ("is a plugin",),
    "check_hooks": (
        "implements known hooks", "registers cleanly", "registers valid names", "registers unique names",
        "describes lazy targets", "registers importable plugin classes", "registers names matching the classes",
        "does not clash with installed plugins", "registers something",
    ),
}
_ALL_RULES = frozenset(r for rules in RULES.values() for r in rules)


class ConformanceError(AssertionError):
    """A plugin breaks a rule of its interface.

    Attributes:
        plugin: who broke it, e.g. ``"enhancer 'gate' (mypkg.Gate)"``.
        rule: the short rule name, e.g. ``"keeps length"``.
        detail: what was observed and how to fix it.
    """

    def __init__(self, plugin: str, rule: str, detail: str) -> None:
        if rule not in _ALL_RULES:  # a bug in the kit, not in the plugin: every rule is listed in RULES
            raise ValueError(f"unknown conformance rule {rule!r} (add it to ser_bench.testing.RULES and the docs)")
        self.plugin, self.rule, self.detail = plugin, rule, detail
        super().__init__(f"{plugin} breaks rule {rule!r}: {detail}")


def _who(obj: Plugin | type[Plugin], kind: str) -> str:
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{LABEL[kind]} {getattr(cls, 'name', '?')!r} ({cls.__module__}.{cls.__qualname__})"


def _instantiate(obj: Any, kind: str, options: dict[str, Any] | None) -> Plugin:
    """An instance of the plugin: ``obj`` itself, or ``obj(**options)`` for a class."""
    base = KINDS[kind]
    if isinstance(obj, type):
        if not issubclass(obj, base):
            raise ConformanceError(repr(obj), "is the right kind of plugin", f"it does not subclass ser_bench.{base.__name__}")
        try:
            return obj(**(options or {}))
        except Exception as exc:
            hint = " Pass the options it needs: options={...}." if isinstance(exc, ConfigError) else ""
            raise ConformanceError(
                _who(obj, kind), "constructs from its options",
                f"{obj.__name__}(**{options or {}!r}) raised {type(exc).__name__}: {exc}.{hint}",
            ) from exc
    if not isinstance(obj, base):
        raise ConformanceError(repr(obj), "is the right kind of plugin", f"got a {type(obj).__name__}, not a ser_bench.{base.__name__}")
    if options:
        raise TypeError("options= is only for plugin classes; configure the instance instead")
    return obj


def _fresh(inst: Plugin) -> Plugin:
    """A second instance with the same options (for determinism checks)."""
    return type(inst)(**inst.config.model_dump())


def check_metadata(obj: Plugin | type[Plugin], kind: str) -> None:
    """Rules every plugin class follows: name, version, description, a strict ``Config``."""
    cls = obj if isinstance(obj, type) else type(obj)
    who = _who(cls, kind)
    name = getattr(cls, "name", "")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ConformanceError(
            who, "has a valid name",
            f"name is {name!r}; use a short lowercase name of letters, digits, '-', '_' or '.' (e.g. 'my-gate')",
        )
    if not isinstance(cls.version, str) or not cls.version.strip():
        raise ConformanceError(who, "has a version", f"version is {cls.version!r}; use a non-empty string such as '1'")
    if not isinstance(cls.description, str) or not cls.description.strip() or "\n" in cls.description:
        raise ConformanceError(who, "has a description", "set `description` to one line; `bench plugins` shows it")
    if not (isinstance(cls.Config, type) and issubclass(cls.Config, PluginConfig)):
        raise ConformanceError(
            who, "has a strict Config",
            f"{cls.__name__}.Config must subclass ser_bench.PluginConfig (pydantic, extra='forbid')",
        )
    if cls.Config.model_config.get("extra") != "forbid":
        raise ConformanceError(
            who, "has a strict Config",
            f"{cls.__name__}.Config accepts unknown options (extra={cls.Config.model_config.get('extra')!r}); "
            "subclass ser_bench.PluginConfig and keep extra='forbid' so that typos in options are errors",
        )


def _check_identity(inst: Plugin, who: str) -> None:
    try:
        h1, h2 = inst.identity_hash(), _fresh(inst).identity_hash()
    except Exception as exc:
        raise ConformanceError(who, "has a stable identity", f"identity()/re-construction failed: {exc}") from exc
    if h1 != h2:
        raise ConformanceError(
            who, "has a stable identity",
            "two instances with the same options hash differently; identity() must depend only on name, version and options",
        )


def _call(who: str, rule: str, what: str, fn: Callable[[], Any]) -> Any:
    """Run a plugin method, turning any exception into a ConformanceError for ``rule``."""
    try:
        return fn()
    except ConformanceError:
        raise
    except Exception as exc:
        raise ConformanceError(who, rule, f"{what} raised {type(exc).__name__}: {exc}") from exc


def _sample(items: Sequence[Any], k: int) -> list[Any]:
    """Up to ``k`` items spread evenly (deterministic)."""
    if len(items) <= k:
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, k).round().astype(int)]
