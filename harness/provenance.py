"""Where a result came from: code version, plugin distributions, environment, noise clips used."""
from __future__ import annotations

import importlib.metadata as md
import platform
import socket
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

from . import __version__


@lru_cache(maxsize=1)
def code_version() -> str:
    """``__version__`` plus ``git describe --always --dirty`` when run from a checkout."""
    root = Path(__file__).resolve().parent.parent
    try:
        desc = subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=root, capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        desc = ""
    return f"{__version__}+{desc}" if desc else __version__


def package_versions(names=("numpy", "scipy", "torch", "opensmile", "scikit-learn", "pandas", "sqlalchemy", "pluggy")) -> dict[str, str]:
    out = {}
    for n in names:
        try:
            out[n] = md.version(n)
        except md.PackageNotFoundError:
            out[n] = "-"
    return out


def environment() -> dict[str, object]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "host": socket.gethostname(),
        "packages": package_versions(),
    }


def noise_clips_used(sources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Which clips each noise source hands a run for mixing (``clips("test")``: its test part, or
    the part its options choose, e.g. ``folder.split``), for the run's provenance.

    Returns ``{source: {"part", "n_clips", "of", "clips": [ids], "fingerprint"}}``; a source
    that cannot list them gets ``{"error": message}`` (its cells fail with the same error).
    """
    from .errors import BenchError
    from .interfaces import stable_hash

    out: dict[str, dict[str, Any]] = {}
    for name, src in sources.items():
        try:
            used, every = src.clips("test"), src.clips("all")
        except BenchError as exc:
            out[name] = {"error": str(exc)}
            continue
        out[name] = {
            "part": str(getattr(src.config, "split", "test")),
            "n_clips": len(used),
            "of": len(every),
            "clips": [c.id for c in used],
            "fingerprint": stable_hash([[c.id, c.fingerprint] for c in used]),
        }
    return out
