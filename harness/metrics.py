"""Scores: UAR for classification, CCC for continuous labels, bootstrap confidence intervals."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

#: metric name -> higher is better
HIGHER_IS_BETTER = {"uar": True, "ccc": True, "accuracy": True}


def uar(y_true: Sequence, y_pred: Sequence) -> float:
    """Unweighted average recall: the mean over the classes present in ``y_true`` of the recall."""
    t = np.asarray(y_true)
    p = np.asarray(y_pred)
    if t.size == 0:
        raise ValueError("uar of an empty set")
    return float(np.mean([np.mean(p[t == c] == c) for c in np.unique(t)]))


def accuracy(y_true: Sequence, y_pred: Sequence) -> float:
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred)))


def ccc(x: Sequence[float], y: Sequence[float]) -> float:
    """Concordance correlation coefficient (Lin 1989), population moments."""
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    if a.shape != b.shape or a.size < 2:
        raise ValueError(f"ccc needs two equal-length series of >= 2 values, got {a.shape} and {b.shape}")
    ma, mb = a.mean(), b.mean()
    cov = np.mean((a - ma) * (b - mb))
    denom = a.var() + b.var() + (ma - mb) ** 2
    return float(2 * cov / denom) if denom > 0 else 0.0


def bootstrap_ci(
    y_true: Sequence,
    y_pred: Sequence,
    metric: Callable[[Sequence, Sequence], float],
    *,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap CI of ``metric`` over items (utterances), resampled with replacement."""
    t = np.asarray(y_true, dtype=object)
    p = np.asarray(y_pred, dtype=object)
    rng = np.random.default_rng(seed)
    n = len(t)
    stats = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        try:
            stats.append(metric(list(t[idx]), list(p[idx])))
        except ValueError:
            continue
    lo, hi = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)
