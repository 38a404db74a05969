"""Reading and validating audio. Everything the harness hands to plugins is mono float32 16 kHz."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import AudioError
from .interfaces import SAMPLE_RATE

#: Peak amplitude below which a signal counts as silent (about -100 dBFS).
SILENCE_PEAK = 1e-5


def resample(x: np.ndarray, sr_in: int, sr_out: int = SAMPLE_RATE) -> np.ndarray:
    """Band-limited resampling (soxr, very-high quality)."""
    if sr_in == sr_out:
        return x
    import soxr

    return soxr.resample(x, sr_in, sr_out, quality="VHQ").astype(np.float32)


def check_signal(x: np.ndarray, source: str, *, allow_silence: bool = True) -> np.ndarray:
    """Validate a mono signal: 1-D, non-empty, finite. Returns float32.

    Raises:
        AudioError naming ``source`` and the fix.
    """
    x = np.asarray(x)
    if x.ndim == 2 and 1 in x.shape:
        x = x.reshape(-1)
    if x.ndim != 1:
        raise AudioError(f"{source}: expected mono audio, got an array of shape {x.shape}")
    if x.size == 0:
        raise AudioError(f"{source}: zero-length audio; remove the file or re-export it")
    x = x.astype(np.float32, copy=False)
    if not np.all(np.isfinite(x)):
        bad = int(np.sum(~np.isfinite(x)))
        raise AudioError(f"{source}: {bad} NaN/inf samples; re-export the file with finite samples")
    if not allow_silence and is_silent(x):
        raise AudioError(f"{source}: the signal is silent (peak < {SILENCE_PEAK:g}); remove or replace it")
    return x


def is_silent(x: np.ndarray) -> bool:
    return x.size == 0 or float(np.max(np.abs(x))) < SILENCE_PEAK


def load_audio(path: str | Path, *, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Read an audio file as mono float32 at ``sr``: stereo is averaged, other rates resampled.

    Raises:
        AudioError: missing, unreadable/corrupt, empty or non-finite files, naming the path.
    """
    import soundfile as sf

    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: file not found; check the dataset root or the manifest entry")
    try:
        data, file_sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError on bad headers
        raise AudioError(f"{path}: cannot decode audio ({exc}); the file is corrupt or not audio") from None
    if data.shape[0] == 0:
        raise AudioError(f"{path}: the file holds no samples (empty or truncated); re-export it")
    x = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    x = check_signal(x, source=str(path))
    return resample(x, file_sr, sr)


def write_audio(path: str | Path, x: np.ndarray, sr: int = SAMPLE_RATE) -> None:
    """Write float audio (mono 1-D or (n, channels)) as 16-bit PCM... or float if it would clip."""
    import soundfile as sf

    x = np.asarray(x, dtype=np.float32)
    subtype = "PCM_16" if float(np.max(np.abs(x), initial=0.0)) <= 1.0 else "FLOAT"
    sf.write(str(path), x, sr, subtype=subtype)
