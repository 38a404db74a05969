"""Log-magnitude features and their normalisation (numpy; shared by training and inference).

Representation: ``L = log(|STFT| + 1e-8)`` of :mod:`ser_bench.dsp` (25 ms Hann, 10 ms hop,
201 bins). For the loss and the network input, ``L`` is floored at :data:`LOG_FLOOR`
(``log 1e-4``, about 80 dB below a loud bin) so that digitally silent bins, whose log is -18,
do not dominate the MSE.

Normalisation (stored in the checkpoint): the network input is
``(max(L, floor) - utterance_mean - mu[f]) / sigma[f]`` where ``utterance_mean`` is one scalar,
the mean of the floored log-magnitude over the whole signal (so the input does not depend on
the recording level: a gain is a constant shift in ``L``), and ``mu``/``sigma`` are per-bin
statistics of that level-free quantity over training mixtures. Windows reaching past either end
of the signal see it mirrored (numpy ``reflect``).
"""
from __future__ import annotations

import numpy as np

from ser_bench.dsp import log_magnitude, stft

LOG_FLOOR = float(np.log(1e-4))


def logmag(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(complex STFT, floored log-magnitude), both (frames, 201)."""
    spec = stft(x)
    return spec, np.maximum(log_magnitude(spec), LOG_FLOOR).astype(np.float32)


def level_free(L: np.ndarray) -> np.ndarray:
    return L - np.float32(L.mean())


def normalise(L: np.ndarray, norm: dict[str, np.ndarray]) -> np.ndarray:
    return ((level_free(L) - norm["mu"]) / norm["sigma"]).astype(np.float32)


def pad_frames(x: np.ndarray, left: int, right: int) -> np.ndarray:
    """Mirror-pad (frames, bins) in time so every frame gets a full window."""
    return np.pad(x, ((left, right), (0, 0)), mode="reflect") if len(x) > 1 else np.pad(
        x, ((left, right), (0, 0)), mode="edge")


def fit_norm(Ls: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Per-bin mean and std of the level-free log-magnitudes of training mixtures."""
    z = np.concatenate([level_free(L) for L in Ls]).astype(np.float64)
    return {"mu": z.mean(0).astype(np.float32), "sigma": np.maximum(z.std(0), 1e-3).astype(np.float32)}
