"""Managing the artefact cache: ``bench cache du`` (its size by kind, dataset and enhancer) and
``bench cache prune`` (remove entries by size budget, age or kind).

An entry is one file ``ROOT/KIND/ab/KEY.EXT``. Which dataset and enhancer an entry belongs to
comes from the index files the runs append to (``ROOT/index/*.tsv``; entries written by older
versions, or by plugins, show as "?"). Pruning is always safe: keys are content addresses, so an
entry a later run needs is simply recomputed (a run checks for entries, it never assumes them).
"""
from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .cache import INDEX, cache_root
from .errors import ConfigError

UNKNOWN = "?"


@dataclass(frozen=True)
class Entry:
    path: Path
    kind: str
    size: int
    mtime: float


def entries(root: str | Path | None = None) -> Iterator[Entry]:
    """Every entry of the cache (temporary files of writes in progress and the index left out)."""
    base = cache_root(root)
    if not base.is_dir():
        return
    for kind_dir in sorted(base.iterdir()):
        if not kind_dir.is_dir() or kind_dir.name == INDEX:
            continue
        for dirpath, _, files in os.walk(kind_dir):
            for name in files:
                if name.endswith(".tmp"):
                    continue
                p = Path(dirpath, name)
                try:
                    st = p.stat()
                except FileNotFoundError:  # removed meanwhile (another prune, a corrupt entry dropped)
                    continue
                yield Entry(p, kind_dir.name, st.st_size, st.st_mtime)


def index(root: str | Path | None = None) -> dict[tuple[str, str], tuple[str, str]]:
    """(kind, file name) -> (dataset, enhancer), from the runs' index files (last line wins)."""
    out: dict[tuple[str, str], tuple[str, str]] = {}
    folder = cache_root(root) / INDEX
    if not folder.is_dir():
        return out
    for f in sorted(folder.glob("*.tsv")):
        with open(f, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                parts = line.rstrip("\n").split("\t")
                if len(parts) == 4:
                    out[(parts[0], parts[1])] = (parts[2], parts[3])
    return out


def usage(root: str | Path | None = None) -> dict:
    """Bytes and entry counts in total and by kind, dataset and enhancer (JSON-ready)."""
    idx = index(root)
    out: dict = {"root": str(cache_root(root)), "bytes": 0, "entries": 0, "by_kind": {}, "by_dataset": {},
                 "by_enhancer": {}}
    for e in entries(root):
        ds, enh = idx.get((e.kind, e.path.name), (UNKNOWN, UNKNOWN))
        out["bytes"] += e.size
        out["entries"] += 1
        for group, name in (("by_kind", e.kind), ("by_dataset", ds), ("by_enhancer", enh)):
            slot = out[group].setdefault(name, {"bytes": 0, "entries": 0})
            slot["bytes"] += e.size
            slot["entries"] += 1
    for group in ("by_kind", "by_dataset", "by_enhancer"):
        out[group] = dict(sorted(out[group].items(), key=lambda kv: -kv[1]["bytes"]))
    return out


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)b?\s*$", re.IGNORECASE)
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_AGE_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_size(text: str) -> int:
    """``"500M"``, ``"2G"``, ``"1.5GB"``, ``"64MiB"``, ``"1000"`` -> bytes (k/M/G/T: powers of 1000;
    KiB/MiB/GiB: of 1024)."""
    m = _SIZE.match(str(text))
    if not m:
        raise ConfigError(f"size {text!r} not understood: write e.g. 500M, 2G, 1.5GB or 64MiB")
    power = " kmgt".index(m.group(2).lower() or " ")
    return int(float(m.group(1)) * (1024 if m.group(3) else 1000) ** power)


def parse_age(text: str) -> float:
    """``"30d"``, ``"12h"``, ``"90m"``, ``"2w"``, ``"45s"`` -> seconds."""
    m = _AGE.match(str(text))
    if not m:
        raise ConfigError(f"age {text!r} not understood: write e.g. 30d, 12h, 90m or 2w")
    return float(m.group(1)) * _AGE_S[m.group(2).lower()]


def prune(root: str | Path | None = None, *, max_size: int | None = None, older_than: float | None = None,
          kinds: tuple[str, ...] = (), dry_run: bool = False, now: float | None = None) -> dict:
    """Remove entries: of ``kinds`` (all kinds if empty) those written more than ``older_than``
    seconds ago, then, while the whole cache exceeds ``max_size`` bytes, the oldest of ``kinds``.
    With ``kinds`` alone, every entry of those kinds. Returns what was (or, dry, would be) removed."""
    if max_size is None and older_than is None and not kinds:
        raise ConfigError("prune what? give --max-size SIZE, --older-than AGE and/or --kind KIND "
                          "(`bench cache du` shows the sizes)")
    now = time.time() if now is None else now
    every = list(entries(root))
    total = sum(e.size for e in every)
    pool = sorted((e for e in every if not kinds or e.kind in kinds), key=lambda e: e.mtime)
    chosen: list[Entry] = []
    if older_than is not None:
        chosen = [e for e in pool if now - e.mtime > older_than]
    elif max_size is None:  # kinds alone
        chosen = list(pool)
    if max_size is not None:
        left = total - sum(e.size for e in chosen)
        taken = {e.path for e in chosen}
        for e in pool:
            if left <= max_size:
                break
            if e.path not in taken:
                chosen.append(e)
                left -= e.size
    removed = 0
    by_kind: dict[str, dict[str, int]] = {}
    for e in chosen:
        if not dry_run:
            try:
                e.path.unlink()
            except FileNotFoundError:
                continue
        removed += e.size
        slot = by_kind.setdefault(e.kind, {"bytes": 0, "entries": 0})
        slot["bytes"] += e.size
        slot["entries"] += 1
    return {"dry_run": dry_run, "removed_bytes": removed, "removed_entries": len(chosen), "by_kind": by_kind,
            "bytes_before": total, "bytes_after": total - removed}


def human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"
