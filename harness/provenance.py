"""Where a result came from: code version, plugin distributions, environment."""
from __future__ import annotations

import importlib.metadata as md
import platform
import socket
import subprocess
from functools import lru_cache
from pathlib import Path

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
