"""Shared helpers of the third-party enhancers: the optional-extra import, 16 <-> 48 kHz, hashing."""
from __future__ import annotations

import hashlib
import importlib
from functools import lru_cache
from pathlib import Path
from types import ModuleType

import numpy as np

from ser_bench.audio import resample
from ser_bench.errors import PluginError

EXTRA = "enhancers"
INSTALL = "pip install 'ser-bench[enhancers]'"
MODEL_RATE = 48_000


class MissingExtraError(PluginError):
    """A third-party enhancer's package is not installed (the ``enhancers`` extra)."""


def require(module: str, *, enhancer: str, dist: str) -> ModuleType:
    """Import ``module`` or raise a one-line :class:`MissingExtraError` naming the pip install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"enhancer {enhancer!r} needs the {dist} package, which is not installed "
            f"({type(exc).__name__}: {exc}); install the extra: {INSTALL}"
        ) from None


def up(x: np.ndarray, sr: int) -> np.ndarray:
    """``x`` (mono float32 at ``sr``) resampled to 48 kHz (soxr, linear phase: no delay)."""
    return np.ascontiguousarray(resample(x, sr, MODEL_RATE, quality="HQ"), dtype=np.float32)


def down(y: np.ndarray, sr: int, n: int) -> np.ndarray:
    """48 kHz ``y`` back at ``sr``, exactly ``n`` samples (padded / cut by at most a sample)."""
    out = np.asarray(resample(y, MODEL_RATE, sr, quality="HQ"), dtype=np.float32)
    if len(out) >= n:
        return np.ascontiguousarray(out[:n])
    return np.concatenate([out, np.zeros(n - len(out), np.float32)])


@lru_cache(maxsize=8)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, computed once per process (keyed by path, size and mtime)."""
    st = path.stat()
    return _digest(str(path), st.st_size, st.st_mtime_ns)
