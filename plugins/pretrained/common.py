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


#: The 16 -> 48 kHz paths the 48 kHz enhancers can take (their ``upsampler`` option).
#:
#: * ``reference``: the resampler of DeepFilterNet's reference implementation (``df.io.resample``,
#:   method ``sinc_fast``: torchaudio's Hann-windowed sinc, 16 zero crossings, roll-off 0.99),
#:   computed with :func:`scipy.signal.resample_poly` and the same kernel. Its images of the
#:   upper pass band leave some energy just above the input's Nyquist frequency (8-8.5 kHz at
#:   about -24 dB of a white input), as every file resampled by DeepFilterNet's own tools has.
#: * ``soxr``: soxr HQ, a near-ideal low-pass: 8-24 kHz is digital silence (below -190 dB on
#:   band-limited input). DeepFilterNet reads that spectral cliff as "no speech" on some
#:   band-limited noisy input and erases the utterance (issue 22; ``benchmarks/upsampler.py``).
#: * ``poly``: :func:`scipy.signal.resample_poly`'s default Kaiser (beta 5) low-pass.
#: * ``floor`` (DeepFilterNet's default): soxr, then a documented noise floor in the empty band: white noise
#:   from 8.2 to 24 kHz at :data:`FLOOR_DB` below the signal's RMS (fixed seed; none on digital
#:   silence). The model never sees a spectral cliff, and the 16 kHz output loses nothing: the
#:   48 -> 16 kHz step removes the band again. Chosen on held-out speech (LibriSpeech
#:   validation speakers, noise train part) over the other three: ``benchmarks/upsampler.py``.
#:
#: The rule: a path replaces soxr (the earlier one) when it raises the mean SI-SDR gain on the
#: validation mixtures by more than 0.1 dB or collapses fewer of them. RNNoise keeps soxr: every
#: path scores within 0.1 dB of it there.
UPSAMPLERS: tuple[str, ...] = ("floor", "reference", "soxr", "poly")
DEFAULT_UPSAMPLER = "floor"
#: Level of the ``floor`` path's noise, in dB relative to the (upsampled) signal's RMS.
FLOOR_DB = -15.0
#: Lowest frequency of the ``floor`` path's noise (Hz): above soxr's transition band at 8 kHz.
FLOOR_FROM_HZ = 8200.0


def sinc_hann_kernel(up_factor: int, down_factor: int, *, zero_crossings: int = 16,
                     rolloff: float = 0.99) -> np.ndarray:
    """FIR taps (at ``up_factor`` times the input rate) of torchaudio's ``sinc_interp_hann``
    resampling kernel, scaled for :func:`scipy.signal.resample_poly` (which multiplies by
    ``up_factor``): ``b sinc(b t) cos^2(pi b t / 2 / zero_crossings)`` with ``t`` in input
    samples and ``b = rolloff * min(1, up_factor / down_factor)``; zero beyond
    ``|b t| = zero_crossings``. Odd length, symmetric: no delay."""
    b = rolloff * min(1.0, up_factor / down_factor)
    half = int(np.ceil(zero_crossings * up_factor / b))
    t = np.arange(-half, half + 1, dtype=np.float64) / up_factor * b
    t = np.clip(t, -zero_crossings, zero_crossings)
    window = np.cos(t * np.pi / zero_crossings / 2) ** 2
    return np.sinc(t) * window * b / up_factor


def band_floor(y: np.ndarray, level_db: float, from_hz: float, seed: int = 48_000) -> np.ndarray:
    """White noise above ``from_hz`` (48 kHz rate, ``len(y)`` samples) at ``level_db`` relative to
    ``y``'s RMS; zeros where ``y`` is digitally silent. Deterministic (fixed ``seed``)."""
    rms = float(np.sqrt(np.mean(np.asarray(y, np.float64) ** 2))) if len(y) else 0.0
    if rms == 0.0:
        return np.zeros(len(y), np.float32)
    spec = np.fft.rfft(np.random.default_rng(seed).standard_normal(len(y)))
    spec[np.fft.rfftfreq(len(y), 1 / MODEL_RATE) < from_hz] = 0.0
    noise = np.fft.irfft(spec, len(y))
    noise *= rms * 10 ** (level_db / 20) / max(float(np.sqrt(np.mean(noise**2))), 1e-30)
    return noise.astype(np.float32)


def up(x: np.ndarray, sr: int, method: str = DEFAULT_UPSAMPLER) -> np.ndarray:
    """``x`` (mono float32 at ``sr``) resampled to 48 kHz by ``method`` (one of :data:`UPSAMPLERS`);
    every path is linear phase and aligned (no delay), ``ceil(len(x) * 48000 / sr)`` samples."""
    if method in ("soxr", "floor"):
        y = np.ascontiguousarray(resample(x, sr, MODEL_RATE, quality="HQ"), dtype=np.float32)
        return y if method == "soxr" else y + band_floor(y, FLOOR_DB, FLOOR_FROM_HZ)
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(int(sr), MODEL_RATE)
    u, d = MODEL_RATE // g, int(sr) // g
    if method == "reference":
        y = resample_poly(np.asarray(x, np.float64), u, d, window=sinc_hann_kernel(u, d))
    elif method == "poly":
        y = resample_poly(np.asarray(x, np.float64), u, d)
    else:
        raise PluginError(f"upsampler {method!r} unknown; use one of {', '.join(UPSAMPLERS)}")
    return np.ascontiguousarray(y, dtype=np.float32)


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
