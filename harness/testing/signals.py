"""Deterministic test signals: speech-like harmonic bursts, tone bursts, white noise at an SNR."""
from __future__ import annotations

import numpy as np

from ..interfaces import SAMPLE_RATE


def syllable_envelope(n: int, sr: int = SAMPLE_RATE, on_s: float = 0.16, off_s: float = 0.09) -> np.ndarray:
    """0..1 envelope of syllable-like bursts (``on_s`` on, ``off_s`` off, 20 ms cosine ramps)."""
    period, on, ramp = int((on_s + off_s) * sr), int(on_s * sr), int(0.02 * sr)
    one = np.zeros(period)
    one[:on] = 1.0
    r = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
    one[:ramp], one[on - ramp : on] = r, r[::-1]
    return np.tile(one, n // period + 1)[:n]


def speech_like(
    duration_s: float = 1.0, *, f0: float = 150.0, seed: int = 0, level: float = 0.3,
    brightness: float = 0.7, sr: int = SAMPLE_RATE,
) -> np.ndarray:
    """A deterministic speech-like signal: harmonic bursts with vibrato, peak ``level``.

    Args:
        f0: fundamental frequency in Hz.
        brightness: amplitude ratio between successive harmonics (higher: brighter timbre).
    """
    rng = np.random.default_rng(seed)
    n = max(1, int(round(duration_s * sr)))
    t = np.arange(n) / sr
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.03 * np.sin(2 * np.pi * 5 * t))) / sr
    x = sum(brightness ** (k - 1) * np.sin(k * phase + rng.uniform(0, 2 * np.pi)) for k in range(1, 9) if k * f0 < sr / 2)
    x = np.asarray(x) * syllable_envelope(n, sr)
    x = level * x / max(float(np.max(np.abs(x))), 1e-9)
    x += 1e-4 * rng.standard_normal(n)  # a floor, so that no utterance is digitally silent
    return x.astype(np.float32)


def tone_bursts(freq: float = 1000.0, duration_s: float = 1.0, level: float = 0.3, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Bursts of a pure tone: the probe for 'keeps the sample rate' (its frequency must not move)."""
    n = int(round(duration_s * sr))
    x = level * np.sin(2 * np.pi * freq * np.arange(n) / sr) * syllable_envelope(n, sr)
    return x.astype(np.float32)


def add_white_noise(x: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    """``x`` plus seeded white noise at ``snr_db`` (mean power over the whole signal)."""
    rng = np.random.default_rng(seed)
    n = rng.standard_normal(len(x))
    n *= np.sqrt(np.mean(np.square(x, dtype=np.float64)) / (np.mean(n**2) * 10 ** (snr_db / 10)))
    return (x + n).astype(np.float32)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(np.asarray(x, dtype=np.float64))))) if len(x) else 0.0


def _frame_rms(x: np.ndarray, hop: int = 160) -> np.ndarray:
    n = len(x) // hop
    return np.sqrt(np.mean(np.asarray(x[: n * hop], dtype=np.float64).reshape(n, hop) ** 2, axis=1))


def _lag_frames(x: np.ndarray, y: np.ndarray, max_lag: int = 10) -> int:
    """The delay of y relative to x in 10 ms frames, from the cross-correlation of their envelopes."""
    ex, ey = _frame_rms(x), _frame_rms(y)
    ex, ey = ex - ex.mean(), ey - ey.mean()
    lags = range(-max_lag, max_lag + 1)
    scores = [float(np.dot(ex[max(0, -k) : len(ex) - max(0, k)], ey[max(0, k) : len(ey) - max(0, -k)])) for k in lags]
    return list(lags)[int(np.argmax(scores))]


def _dominant_hz(x: np.ndarray, sr: int = SAMPLE_RATE) -> float:
    spec = np.abs(np.fft.rfft(np.asarray(x, dtype=np.float64) * np.hanning(len(x))))
    return float(np.argmax(spec) * sr / len(x))

