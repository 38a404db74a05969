"""Post-processing of continuous predictions (Trigeorgis et al. 2016, after the AVEC baselines).

Four steps, fitted on the validation partition and then applied unchanged to test:

1. **median filtering** of each recording's prediction (window searched over odd sizes);
2. **centring**: shift the predictions' mean to the training labels' mean;
3. **scaling**: scale the predictions' spread to the training labels' standard deviation;
4. **time shift**: delay the predictions by ``s`` frames (searched) to compensate the annotators'
   reaction delay (the gold standard lags the audio).

Steps run in that order; each is kept only if it raises the validation ρc of the concatenated
recordings (greedy, one step at a time). Centring and scaling use the statistics of the set being
processed (all recordings of the partition concatenated), as the AVEC baselines do: at test time
they use the test *predictions'* mean and deviation, never test labels.

numpy/scipy only (no torch), so that it is quick to test.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from scipy.ndimage import median_filter as _median

#: Odd median-filter windows tried (frames of 40 ms: 0.12 s ... 10 s).
DEFAULT_WINDOWS = (3, 5, 7, 9, 11, 15, 21, 31, 41, 51, 75, 101, 151, 201, 251)
#: Largest delay tried, in frames (10 s at 40 ms).
DEFAULT_MAX_SHIFT = 250


def ccc(x: np.ndarray, y: np.ndarray) -> float:
    """Concordance correlation coefficient with population moments (0 when undefined)."""
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    ma, mb = a.mean(), b.mean()
    denom = a.var() + b.var() + (ma - mb) ** 2
    return float(2 * np.mean((a - ma) * (b - mb)) / denom) if denom > 0 else 0.0


def concat_ccc(preds: Sequence[np.ndarray], labels: Sequence[np.ndarray]) -> float:
    """ρc over all recordings concatenated (the AVEC convention)."""
    return ccc(np.concatenate([np.asarray(p) for p in preds]), np.concatenate([np.asarray(y) for y in labels]))


def median_smooth(x: np.ndarray, window: int) -> np.ndarray:
    """Median filter with an odd window; edges use the nearest value."""
    if window <= 1:
        return np.asarray(x, dtype=np.float64)
    return _median(np.asarray(x, dtype=np.float64), size=int(window), mode="nearest")


def delay(x: np.ndarray, shift: int) -> np.ndarray:
    """``y[t] = x[t - shift]``: same length; the first ``shift`` frames repeat ``x[0]``.

    A negative shift advances instead (the last frames repeat ``x[-1]``).
    """
    x = np.asarray(x, dtype=np.float64)
    if shift == 0 or len(x) == 0:
        return x.copy()
    if shift > 0:
        s = min(shift, len(x))
        return np.concatenate([np.full(s, x[0]), x[: len(x) - s]])
    s = min(-shift, len(x))
    return np.concatenate([x[s:], np.full(s, x[-1])])


@dataclass
class PostProcessing:
    """Fitted post-processing parameters (JSON-able through :meth:`as_dict`).

    Attributes:
        median_window: odd window in frames, or 0 when the step is off.
        centre: whether predictions are shifted to ``train_mean``.
        scale: whether predictions are scaled to ``train_std``.
        shift: delay in frames (0: off).
        train_mean, train_std: statistics of the training labels (all frames concatenated).
        valid_ccc_before, valid_ccc_after: validation ρc without and with post-processing.
        trials: validation ρc of each candidate tried, per step (for the record).
    """

    median_window: int = 0
    centre: bool = False
    scale: bool = False
    shift: int = 0
    train_mean: float = 0.0
    train_std: float = 1.0
    hop_s: float = 0.04
    valid_ccc_before: float | None = None
    valid_ccc_after: float | None = None
    trials: dict[str, dict[str, float]] = field(default_factory=dict)

    def apply(self, preds: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Apply the chosen steps to the predictions of one partition (a list of recordings)."""
        out = [median_smooth(p, self.median_window) for p in preds]
        out = _centre_scale(out, self.train_mean, self.train_std, self.centre, self.scale)
        return [delay(p, self.shift) for p in out]

    def as_dict(self, *, trials: bool = False) -> dict[str, Any]:
        d = asdict(self)
        d["shift_s"] = round(self.shift * self.hop_s, 6)
        if not trials:
            d.pop("trials")
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PostProcessing:
        keys = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in keys})


def _centre_scale(
    preds: list[np.ndarray], mean: float, std: float, centre: bool, scale: bool
) -> list[np.ndarray]:
    if not (centre or scale) or not preds:
        return [np.asarray(p, dtype=np.float64) for p in preds]
    allp = np.concatenate(preds)
    m, s = float(allp.mean()), float(allp.std())
    out = []
    for p in preds:
        q = np.asarray(p, dtype=np.float64)
        if scale and s > 0:
            q = (q - m) * (std / s) + m
        if centre:
            q = q - m + mean
        out.append(q)
    return out


def fit_postprocessing(
    preds: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    train_labels: Sequence[np.ndarray],
    *,
    windows: Sequence[int] = DEFAULT_WINDOWS,
    max_shift: int = DEFAULT_MAX_SHIFT,
    hop_s: float = 0.04,
    min_gain: float = 1e-6,
) -> PostProcessing:
    """Choose the post-processing steps on validation predictions and labels.

    Args:
        preds, labels: per-recording validation predictions and gold standards (equal lengths).
        train_labels: per-recording training gold standards (for the mean and deviation).
        windows: median-filter windows to try (odd, in frames).
        max_shift: the largest delay to try, in frames (every delay 1..max_shift is tried).
        min_gain: the ρc improvement a step must bring to be kept.

    Returns:
        the fitted :class:`PostProcessing`; ``valid_ccc_after >= valid_ccc_before`` always.
    """
    preds = [np.asarray(p, dtype=np.float64) for p in preds]
    labels = [np.asarray(y, dtype=np.float64) for y in labels]
    if len(preds) != len(labels) or any(len(p) != len(y) for p, y in zip(preds, labels)):
        raise ValueError("fit_postprocessing: predictions and labels must pair up with equal lengths")
    tr = np.concatenate([np.asarray(y, dtype=np.float64) for y in train_labels])
    pp = PostProcessing(train_mean=float(tr.mean()), train_std=float(tr.std()), hop_s=hop_s)
    best = concat_ccc(preds, labels)
    pp.valid_ccc_before = best

    def score(candidate: list[np.ndarray]) -> float:
        return concat_ccc(candidate, labels)

    # 1. median filter
    trials = {str(w): score([median_smooth(p, w) for p in preds]) for w in windows if w > 1 and w % 2 == 1}
    pp.trials["median_window"] = trials
    if trials:
        w_best = max(trials, key=lambda k: trials[k])
        if trials[w_best] > best + min_gain:
            pp.median_window, best = int(w_best), trials[w_best]
    smoothed = [median_smooth(p, pp.median_window) for p in preds]
    # 2. centring, 3. scaling
    for step in ("centre", "scale"):
        trial = replace(pp, **{step: True})
        s = score(_centre_scale(smoothed, pp.train_mean, pp.train_std, trial.centre, trial.scale))
        pp.trials[step] = {"on": s}
        if s > best + min_gain:
            setattr(pp, step, True)
            best = s
    # 4. time shift (on the output of steps 1-3, computed once)
    stage = _centre_scale(smoothed, pp.train_mean, pp.train_std, pp.centre, pp.scale)
    trials = {str(k): score([delay(p, k) for p in stage]) for k in range(1, max_shift + 1)}
    pp.trials["shift"] = trials
    if trials:
        k_best = max(trials, key=lambda k: trials[k])
        if trials[k_best] > best + min_gain:
            pp.shift, best = int(k_best), trials[k_best]
    pp.valid_ccc_after = best
    return pp
