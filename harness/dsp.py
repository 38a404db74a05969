"""Short-time Fourier analysis and synthesis shared by enhancers (numpy, no torch).

Defaults follow the paper: 16 kHz, 25 ms Hann window (400 samples), 10 ms hop (160),
400-point FFT -> 201 bins. ``istft(stft(x))`` reconstructs ``x`` to float precision, with the
same length.
"""
from __future__ import annotations

import numpy as np

N_FFT = 400
HOP = 160
LOG_EPS = 1e-8


def hann(n: int) -> np.ndarray:
    """Periodic Hann window (satisfies COLA at 75 % and 60 % overlap with normalisation)."""
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)).astype(np.float64)


def stft(x: np.ndarray, n_fft: int = N_FFT, hop: int = HOP) -> np.ndarray:
    """Centred STFT: returns complex (frames, n_fft // 2 + 1), frames = 1 + len(x) // hop."""
    x = np.asarray(x, dtype=np.float64)
    pad = n_fft // 2
    mode = "reflect" if len(x) > pad else "constant"
    xp = np.pad(x, (pad, pad + hop), mode=mode)
    n_frames = 1 + len(x) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(n_frames)[:, None]
    return np.fft.rfft(xp[idx] * hann(n_fft), axis=1)


def istft(spec: np.ndarray, length: int, n_fft: int = N_FFT, hop: int = HOP) -> np.ndarray:
    """Weighted overlap-add inverse of :func:`stft`, cropped to ``length`` samples."""
    frames = np.fft.irfft(spec, n=n_fft, axis=1)
    win = hann(n_fft)
    n_frames = frames.shape[0]
    total = n_fft + hop * (n_frames - 1)
    out = np.zeros(total)
    norm = np.zeros(total)
    for i in range(n_frames):  # frames are few (100/s); a loop is clearer than stride tricks
        s = i * hop
        out[s : s + n_fft] += frames[i] * win
        norm[s : s + n_fft] += win**2
    out /= np.maximum(norm, 1e-8)
    pad = n_fft // 2
    y = out[pad : pad + length]
    if len(y) < length:
        y = np.pad(y, (0, length - len(y)))
    return y.astype(np.float32)


def log_magnitude(spec: np.ndarray) -> np.ndarray:
    """log(|S| + eps): the paper's enhancer input/target representation."""
    return np.log(np.abs(spec) + LOG_EPS)


def from_log_magnitude(logmag: np.ndarray, phase_from: np.ndarray, length: int) -> np.ndarray:
    """Resynthesise from a log-magnitude and the phase of ``phase_from`` (the noisy STFT)."""
    mag = np.maximum(np.exp(logmag) - LOG_EPS, 0.0)
    return istft(mag * np.exp(1j * np.angle(phase_from)), length)
