"""The suites that ship with ser-bench (the paper's experiments, one TOML file per corpus and
protocol), found by name, and the one rule for relative paths inside a suite.

``benchmarks/*.toml`` ships inside the installed package as ``ser_bench/_suites`` (pyproject.toml
maps the folder; every ``*.toml`` there is package data, so a new suite ships without further
edits). In a source checkout the suites are read from ``benchmarks/`` itself.

Relative paths, one rule whatever the working directory:

- a relative path *in a suite file* (a plugin option typed as a path, e.g. ``[options.folder]
  root = "..."``) is relative to the folder that holds the suite file;
- a relative path *on the command line* (``--data-root``, ``-o PLUGIN.KEY=PATH``, ``--noise-root``)
  is relative to the working directory.

``bench run --suite X`` takes a path to a suite file, or the name of a shipped suite
(``emodb_mismatched``, with or without ``.toml``); a file that exists wins over a name.
"""
from __future__ import annotations

import difflib
import os
import types
import typing
from pathlib import Path
from typing import Any

from .errors import ConfigError

_HERE = Path(__file__).resolve().parent


def suites_dir() -> Path:
    """The folder holding the shipped suites: ``ser_bench/_suites`` installed, ``benchmarks/`` in a checkout."""
    for d in (_HERE / "_suites", _HERE.parent / "benchmarks"):
        if d.is_dir() and any(d.glob("*.toml")):
            return d
    raise ConfigError(f"the shipped suites are missing from this installation ({_HERE / '_suites'}); reinstall "
                      "ser-bench, or pass a suite file's path")


def shipped() -> dict[str, Path]:
    """``name -> file`` of every shipped suite (the name is the file name without ``.toml``)."""
    return {p.stem: p for p in sorted(suites_dir().glob("*.toml"))}


def locate(text: str | os.PathLike[str]) -> Path:
    """The suite file ``text`` names: an existing file, else a shipped suite of that name."""
    path = Path(text).expanduser()
    if path.is_file():
        return path
    name = path.name[:-5] if path.name.endswith(".toml") else path.name
    suites = shipped()
    if path.parent == Path(".") and name in suites:
        return suites[name]
    if name in suites:  # a path to a checkout's benchmarks/ that is not here
        raise ConfigError(f"suite file {text} not found; the shipped suite of that name is --suite {name} "
                          "(`bench suites` lists them)")
    close = difflib.get_close_matches(name, list(suites), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ConfigError(f"suite {str(text)!r}: no such file, and no shipped suite of that name.{hint} Shipped suites: "
                      f"{', '.join(suites)} (`bench suites` lists them with their cells)")


def _is_path_type(annotation: Any) -> bool:
    if annotation is Path or (isinstance(annotation, type) and issubclass(annotation, os.PathLike)):
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, typing.Annotated):
        return any(_is_path_type(a) for a in typing.get_args(annotation))
    return False


def path_options(registry: Any, plugin: str) -> set[str]:
    """The options of ``plugin`` typed as a path (``Path`` or ``Path | None``); empty if unknown."""
    from .errors import PluginError

    try:
        entries = registry.find(plugin)
    except PluginError:
        return set()  # an unknown name: the run's own check names it, with suggestions
    out: set[str] = set()
    for e in entries:
        try:
            cls = e.resolve()
        except PluginError:
            continue
        config = getattr(cls, "Config", None)
        fields = getattr(config, "model_fields", {}) or {}
        out |= {k for k, f in fields.items() if _is_path_type(f.annotation)}
    return out


def resolve_paths(data: dict[str, Any], suite: Path, registry: Any) -> dict[str, Any]:
    """``data`` (a loaded suite) with every relative path option made absolute against the suite's folder."""
    options = data.get("options")
    if not isinstance(options, dict) or not options:
        return data
    base = Path(suite).resolve().parent
    out: dict[str, Any] = {}
    for plugin, opts in options.items():
        if not isinstance(opts, dict):
            out[plugin] = opts
            continue
        keys = path_options(registry, plugin)
        out[plugin] = {k: (str(Path(os.path.normpath(base / v))) if k in keys and isinstance(v, str) and v
                           and not v.startswith("~") and not Path(v).is_absolute() else v)
                       for k, v in opts.items()}
    return {**data, "options": out}


def load(text: str | os.PathLike[str], registry: Any) -> tuple[Path, dict[str, Any]]:
    """Locate a suite (path or shipped name) and read it, its relative paths made absolute."""
    from .config import load_suite

    path = locate(text)
    return path, resolve_paths(load_suite(path), path, registry)


def summary(path: Path) -> dict[str, Any]:
    """A shipped suite as ``bench suites`` shows it: its grid and cells per fold (no data needed)."""
    from .config import load_suite, make_config
    from .protocols import condition_pairs

    data = load_suite(path)
    cfg = make_config({"protocol": "mismatched", **data}, source=str(path))
    pairs = list(condition_pairs(cfg))
    cells = [{"ser_model": m, "enhancer": e, "train": tr.label(), "test": te.label()}
             for m in cfg.ser_models for e, _, tr, te in pairs]
    return {
        "name": path.stem, "path": str(path), "title": cfg.name, "protocol": cfg.protocol,
        "datasets": cfg.datasets, "ser_models": cfg.ser_models, "enhancers": cfg.enhancers,
        "noise_sources": cfg.noise_sources, "snrs": cfg.snrs, "train_snrs": cfg.train_snrs,
        "test_snrs": cfg.test_snrs, "cv": cfg.cv, "cells_per_fold": len(cells) * len(cfg.datasets),
        "cells": cells, "usage": _usage(data, path.stem, cfg.datasets),
    }


def _usage(data: dict[str, Any], name: str, datasets: list[str]) -> str:
    roots = " ".join(f"--data-root {d}=PATH" for d in datasets)
    return f"bench run --suite {name} {roots}".rstrip()
