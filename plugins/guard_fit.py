"""The guard's numbers: blind SNR estimates, the calibration criteria, and the fit of ``w``.

Everything :mod:`ser_bench_plugins.guarded`'s wrappers (``guarded-NAME``, ``oadd-NAME``,
``snrswitch-NAME``) compute that is not the wrapper itself: the estimates ``w`` is read from,
how calibration mixtures are scored (a distance of eGeMAPS functionals, or of clean-trained
emotion classifiers' decision scores), and the search for each policy's parameters. The module
docstring of ``guarded`` explains the method and its numbers.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from ser_bench import Enhancer
from ser_bench.errors import ConfigError

ESTIMATORS = ("wada", "removed", "inner")
W_GRID: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
CALIB_SNRS: tuple[float, ...] = (-5, 0, 5, 10, 15, 20, 30)
#: Least drop of the calibration cost for which a backstop ramp is kept (a second ramp that
#: changes little is not worth a second estimate).
BACKSTOP_MIN_GAIN = 0.01
#: How ``w`` follows the blind estimate: ``guarded-NAME`` ramps, ``oadd-NAME`` (observation
#: adding) keeps one ``w`` for every input, ``snrswitch-NAME`` switches (NRSER-style).
POLICIES = ("ramp", "constant", "switch")
CONSTANT_GRID: tuple[float, ...] = tuple(np.round(np.linspace(0.0, 1.0, 21), 2))
#: Feature sets of the ``emotion`` criterion's classifiers (those of svm-egemaps / svm-compare).
EMOTION_FEATURES: tuple[str, ...] = ("eGeMAPSv02", "ComParE_2016")
#: The ``emotion`` criterion's corpus: this share of its speakers fits the classifiers, the
#: other speakers' utterances join the calibration mixtures.
EMOTION_FIT_SALT = "guard-emotion"
#: The emotion criterion's floor of the true class's posterior (log-loss at most 6.9).
PROB_FLOOR = 1e-3


# --------------------------------------------------------------------------- blind SNR estimates


@lru_cache(maxsize=1)
def _wada_table() -> tuple[np.ndarray, np.ndarray]:
    """G(SNR) for Gamma(0.4)-amplitude speech plus Gaussian noise, simulated with a fixed seed."""
    rng = np.random.default_rng(20080101)
    n = 200_000
    s = rng.gamma(0.4, 1.0, n) * rng.choice([-1.0, 1.0], n)
    s /= np.sqrt(np.mean(s**2))
    v = rng.standard_normal(n)
    snrs = np.arange(-20.0, 101.0, 1.0)
    g = []
    for snr in snrs:
        a = np.abs(s * 10 ** (snr / 20) + v)
        a = np.maximum(a / a.max(), 1e-10)
        g.append(math.log(a.mean()) - float(np.mean(np.log(a))))
    return snrs, np.maximum.accumulate(np.asarray(g))  # G grows with SNR; forced monotone


def wada_snr(x: np.ndarray) -> float:
    """WADA-SNR (dB) of a signal: Kim & Stern, Interspeech 2008. Clipped to [-20, 100]."""
    x = np.asarray(x, dtype=np.float64)
    peak = float(np.max(np.abs(x), initial=0.0))
    if peak == 0.0:
        return 100.0
    a = np.maximum(np.abs(x) / peak, 1e-10)
    g = math.log(a.mean()) - float(np.mean(np.log(a)))
    snrs, table = _wada_table()
    return float(np.interp(g, table, snrs))


def removed_snr(noisy: np.ndarray, enhanced: np.ndarray) -> float:
    """Energy the enhancer kept over the energy it removed, in dB, clipped to [-30, 100]."""
    y = np.asarray(enhanced, np.float64)
    r = np.asarray(noisy, np.float64) - y
    kept, removed = float(np.dot(y, y)), float(np.dot(r, r))
    if removed <= 1e-12 * max(kept, 1e-30):
        return 100.0
    if kept <= 0.0:
        return -30.0
    return float(np.clip(10 * np.log10(kept / removed), -30.0, 100.0))


def ramp(e: float | np.ndarray, lo: float, hi: float) -> float | np.ndarray:
    """w = 1 for e <= lo, 0 for e >= hi, linear between."""
    return np.clip((hi - np.asarray(e, np.float64)) / max(hi - lo, 1e-9), 0.0, 1.0)


def has_inner_snr(enh: Enhancer) -> bool:
    return callable(getattr(enh, "enhance_with_snr", None))


def enhance_and_estimate(inner: Enhancer, noisy: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
    """The inner enhancer's output and every blind estimate available for it."""
    est: dict[str, float] = {"wada": wada_snr(noisy)}
    y, inner_snr = inner.enhance_keeping_snr(noisy)
    if inner_snr is not None:
        est["inner"] = inner_snr
    est["removed"] = removed_snr(noisy, y)
    return y, est


# --------------------------------------------------------------------------- calibration


def egemaps(x: np.ndarray) -> np.ndarray:
    from ser_bench_plugins.opensmile_svm import smile_functionals

    return smile_functionals(np.asarray(x, np.float32), "eGeMAPSv02").astype(np.float64)


def functionals(x: np.ndarray, feature_set: str) -> np.ndarray:
    from ser_bench_plugins.opensmile_svm import smile_functionals

    return smile_functionals(np.asarray(x, np.float32), feature_set).astype(np.float64)


class EmotionModels:
    """Emotion classifiers trained on clean, labelled speech, one per feature set (the functionals
    svm-egemaps / svm-compare read): multinomial logistic regression on standardised features
    (C = 0.05, balanced classes), i.e. what a clean-trained SER model sees. The ``emotion``
    criterion is their log-loss on held-out speakers' mixtures, ``-log p(true emotion | signal)``
    (p floored at 1e-3): the task itself, on speech with labels, rather than a proxy.

    Proxies were tried first and failed on the calibration data (issue 22): the decision values
    of an RBF SVM collapse to its intercepts far from the training data (noisy and clean speech
    alike); a linear model's logits run off to 1e8 for noisy ComParE features; and the total
    variation between posteriors of output and clean speech rated full DeepFilterNet worse than
    the noisy input even at -5 dB for ComParE, where the ComParE SVM's UAR rises from 18 to 52 %."""

    C = 0.05

    def __init__(self, utterances: Sequence[Any], feature_sets: Sequence[str] = EMOTION_FEATURES) -> None:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        labels = [u.label for u in utterances]
        if len(set(labels)) < 2:
            raise ConfigError(f"the emotion criterion needs >= 2 classes to fit its classifiers, got {sorted(set(labels))}")
        signals = [u.load() for u in utterances]
        self.feature_sets = list(feature_sets)
        self.models = []
        for fs in self.feature_sets:
            X = np.stack([functionals(x, fs) for x in signals])
            self.models.append(make_pipeline(StandardScaler(), LogisticRegression(
                C=self.C, max_iter=3000, class_weight="balanced")).fit(X, labels))
        self.classes = sorted(set(labels))
        self.n_fit = len(signals)

    def criteria(self) -> list:
        """One map (signal, true label) -> log-loss per feature set."""
        def loss(x, label, fs, m) -> float:
            p = m.predict_proba(functionals(x, fs)[None])[0]
            return float(-np.log(max(p[list(m.classes_).index(label)], PROB_FLOOR)))

        return [lambda x, label, fs=fs, m=m: loss(x, label, fs, m)
                for fs, m in zip(self.feature_sets, self.models, strict=True)]


def score_mixtures(inner: Enhancer, examples, w_grid: Sequence[float] = W_GRID, features=None,
                   criteria: Sequence[Any] | None = None, labels: dict[str, Any] | None = None) -> dict[str, Any]:
    """Per mixture: the blind estimates and, for each ``w``, the distance to the clean speech of
    its ``features`` (default: eGeMAPS; z-scored, mean square) or, with ``criteria`` (maps signal
    -> (signal, true label) -> loss, e.g. :meth:`EmotionModels.criteria`; ``labels``: speech id
    -> label), each criterion's loss of the output (``dist`` then has a last axis of one per
    criterion)."""
    if criteria:
        if labels is None:
            raise ConfigError("criteria need the labels of the calibration utterances")
        outs, ests, snrs = [], [], []
        for ex in examples:
            y, est = enhance_and_estimate(inner, ex.noisy)
            noisy = np.asarray(ex.noisy, np.float64)
            lab = labels[ex.speech_id]
            outs.append([[c(noisy + w * (y - noisy), lab) for c in criteria] for w in w_grid])
            ests.append(est)
            snrs.append(float(ex.snr))
        return {"dist": np.asarray(outs), "estimates": ests, "snrs": snrs, "w_grid": list(w_grid)}
    features = features or egemaps
    feats_clean, feats_out, ests, snrs = [], [], [], []
    for ex in examples:
        y, est = enhance_and_estimate(inner, ex.noisy)
        noisy = np.asarray(ex.noisy, np.float64)
        feats_clean.append(features(ex.clean))
        feats_out.append([features(noisy + w * (y - noisy)) for w in w_grid])
        ests.append(est)
        snrs.append(float(ex.snr))
    fc, fo = np.asarray(feats_clean), np.asarray(feats_out)  # (n, F), (n, W, F)
    scale = np.concatenate([fc, fo.reshape(-1, fo.shape[-1])]).std(0)
    scale[scale < 1e-9] = 1.0
    dist = (((fo - fc[:, None, :]) / scale) ** 2).mean(-1)  # (n, W)
    return {"dist": dist, "estimates": ests, "snrs": snrs, "w_grid": list(w_grid)}


def _interp_rows(dist: np.ndarray, w_grid: np.ndarray, w: np.ndarray) -> np.ndarray:
    idx = np.clip(np.searchsorted(w_grid, w, side="right") - 1, 0, len(w_grid) - 2)
    t = (w - w_grid[idx]) / (w_grid[idx + 1] - w_grid[idx])
    rows = np.arange(len(w))
    return dist[rows, idx] * (1 - t) + dist[rows, idx + 1] * t


def weight_of(cal: dict[str, Any], est: dict[str, float]) -> float:
    """``w`` of a calibration for one signal's estimates: by its policy (``ramp``: its ramp,
    raised by its backstop ramp if it has one; ``constant``: its fixed ``w``; ``switch``: 1 below
    its threshold, else 0)."""
    policy = cal.get("policy", "ramp")
    if policy == "constant":
        return float(cal["w"])
    if policy == "switch":
        return 1.0 if est[cal["estimator"]] < float(cal["threshold"]) else 0.0
    w = float(ramp(est[cal["estimator"]], float(cal["lo"]), float(cal["hi"])))
    b = cal.get("backstop")
    if b:
        w = max(w, float(ramp(est[b["estimator"]], float(b["lo"]), float(b["hi"]))))
    return w


def _log_ratio_fn(scores: dict[str, Any]):
    """``lr(w)`` -> per-mixture log ratio (output vs noisy input) of the criterion at weights ``w``.

    ``dist`` is (mixtures, w grid) for one criterion, or (mixtures, w grid, K) for K criteria
    (the log-losses of an eGeMAPS and a ComParE emotion model): then ``lr(w)`` is (mixtures, K),
    each criterion's change of loss from the noisy input (a difference, not a log ratio)."""
    dist = np.maximum(np.asarray(scores["dist"], np.float64), 1e-9)
    w_grid = np.asarray(scores["w_grid"], np.float64)
    if dist.ndim == 2:
        base = dist[:, 0]  # w = 0: the noisy input

        def lr(w: np.ndarray) -> np.ndarray:
            return np.log(_interp_rows(dist, w_grid, w) / base)
    else:
        # losses (log-loss of the true emotion): their change from the noisy input, not a ratio,
        # is what counts (a ratio would blow up wherever the noisy input is already classified well)
        base3 = dist[:, 0, :]

        def lr(w: np.ndarray) -> np.ndarray:  # (mixtures, criteria)
            return np.stack([_interp_rows(dist[:, :, k], w_grid, w) for k in range(dist.shape[2])], 1) - base3
    return lr


def fit_ramp(scores: dict[str, Any], estimators: Sequence[str], grid: Sequence[float] | None = None,
             harm_weight: float = 0.0, backstop: bool = False,
             backstop_min_gain: float = BACKSTOP_MIN_GAIN, policy: str = "ramp") -> dict[str, Any]:
    """The (estimator, lo, hi) minimising the mean log distance ratio (output vs noisy input),
    plus ``harm_weight`` times the mean of its positive part (mixtures made worse than the noisy
    input count extra: the guard's first duty is not to hurt).

    With ``backstop``, a second ramp on another estimate may raise ``w``: ``w = max(ramp(e1),
    ramp(e2))``, fitted by the same cost after the first; it is kept only if it lowers the cost by
    at least ``backstop_min_gain`` (see :func:`weight_of`).

    ``policy`` fits the two published alternatives by the same cost instead (see ``POLICIES``):
    ``constant`` (observation adding: one ``w`` for every input) and ``switch`` (enhance fully
    below an estimated-SNR threshold, not at all above it, as NRSER does)."""
    if policy not in POLICIES:
        raise ConfigError(f"policy must be one of {POLICIES}, not {policy!r}")
    lr_of = _log_ratio_fn(scores)
    grid = np.arange(-15.0, 45.5, 1.0) if grid is None else np.asarray(grid, np.float64)
    snrs = np.asarray(scores["snrs"], np.float64)

    bins = [snrs == s for s in sorted(set(snrs.tolist()))]

    def cost_of(w: np.ndarray) -> float:
        lr = lr_of(w)
        if lr.ndim == 1:  # one criterion: harm counted per mixture
            return float(np.mean(lr + harm_weight * np.maximum(lr, 0.0)))
        # several SER models' losses, each per utterance and noisy: harm is counted where the
        # promise is made, per SNR and per model (the mean change of each criterion's loss in each
        # SNR bin; the worst model's), not per mixture, where the max of noisy differences
        # would read harm into every w > 0
        harm = [float(np.max(np.maximum(lr[b].mean(0), 0.0))) for b in bins]
        return float(lr.mean() + harm_weight * np.mean(harm))

    def estimate(name: str) -> np.ndarray:
        return np.asarray([x[name] for x in scores["estimates"]])

    def available(names) -> list[str]:
        return [n for n in names if all(n in x for x in scores["estimates"])]

    def search(names, floor: np.ndarray) -> dict[str, Any] | None:
        """The (estimator, lo, hi) whose ramp, raised to at least ``floor``, costs least."""
        found: dict[str, Any] | None = None
        for name in available(names):
            e = estimate(name)
            for i, lo in enumerate(grid):
                for hi in grid[i + 1 :]:
                    cost = cost_of(np.maximum(floor, ramp(e, lo, hi)))
                    if found is None or cost < found["cost"] - 1e-12:
                        found = {"estimator": name, "lo": float(lo), "hi": float(hi), "cost": cost}
        return found

    n = len(snrs)
    e = np.zeros(n)
    if policy == "constant":
        best = None
        for c in CONSTANT_GRID:
            cost = cost_of(np.full(n, c))
            if best is None or cost < best["cost"] - 1e-12:
                best = {"policy": "constant", "estimator": None, "w": float(c), "cost": cost}
        w = np.full(n, best["w"])
    elif policy == "switch":
        best = None
        for name in available(estimators):
            est = estimate(name)
            for t in np.concatenate([grid, [np.inf]]):
                cost = cost_of((est < t).astype(np.float64))
                if best is None or cost < best["cost"] - 1e-12:
                    best = {"policy": "switch", "estimator": name, "threshold": float(t), "cost": cost}
        if best is None:
            raise ConfigError(f"no estimator of {list(estimators)} is available for calibration")
        if not np.isfinite(best["threshold"]):
            best["threshold"] = 1e9  # always enhance (JSON has no infinity)
        e = estimate(best["estimator"])
        w = (e < best["threshold"]).astype(np.float64)
    else:
        best = search(estimators, np.zeros(n))
        if best is None:
            raise ConfigError(f"no estimator of {list(estimators)} is available for calibration")
        e = estimate(best["estimator"])
        w = ramp(e, best["lo"], best["hi"])
        if backstop:
            # a second estimate that sees what the first misses: w = max(first ramp, second ramp).
            # DeepFilterNet's own SNR estimate ranks high-SNR input well but reads -5..0 dB input as
            # ~-3.5 dB, giving w ~0.87 there; the energy it removed says "very noisy" plainly
            back = search([x for x in estimators if x != best["estimator"]], w)
            if back is not None and back["cost"] <= best["cost"] - backstop_min_gain:
                best["backstop"] = {"estimator": back["estimator"], "lo": back["lo"], "hi": back["hi"],
                                    "cost_without": round(best["cost"], 5)}
                best["cost"] = back["cost"]
                w = np.maximum(w, ramp(estimate(back["estimator"]), back["lo"], back["hi"]))
            else:
                best["backstop"] = None
    # what the fitted weights do, per SNR (for the record; several criteria: their mean)
    def per_mixture(w: np.ndarray) -> np.ndarray:
        lr = lr_of(w)
        return lr if lr.ndim == 1 else lr.mean(1)

    d = per_mixture(w)
    d1 = per_mixture(np.ones(n))
    w_grid = np.asarray(scores["w_grid"], np.float64)
    oracle = np.min(np.stack([per_mixture(np.full(n, g)) for g in w_grid], 1), axis=1)
    best["per_snr"] = {f"{s:g}": {"n": int((snrs == s).sum()), "w_mean": round(float(w[snrs == s].mean()), 3),
                                  "estimate_mean": round(float(e[snrs == s].mean()), 2),
                                  "log_ratio_guarded": round(float(d[snrs == s].mean()), 4),
                                  "log_ratio_inner": round(float(d1[snrs == s].mean()), 4),
                                  "log_ratio_oracle_w": round(float(oracle[snrs == s].mean()), 4),
                                  "share_harmed": round(float((d[snrs == s] > 0).mean()), 3)}
                       for s in sorted(set(snrs.tolist()))}
    best["cost"] = round(best["cost"], 5)
    return best


def _zero_without_inner(cal: dict[str, Any], x: np.ndarray) -> bool:
    """Whether ``w`` is 0 for input ``x`` before the inner enhancer runs (a constant 0, or a
    ramp / switch on the input's WADA-SNR alone that reads 'clean')."""
    policy = cal.get("policy", "ramp")
    if policy == "constant":
        return float(cal["w"]) == 0.0
    if cal["estimator"] != "wada" or cal.get("backstop"):
        return False
    return wada_snr(x) >= float(cal["threshold"] if policy == "switch" else cal["hi"])


def _estimators_of(cal: dict[str, Any]) -> list[str]:
    """The estimates a calibration's ``w`` reads (its ramp's, then its backstop's)."""
    if cal.get("policy") == "constant":
        return []
    b = cal.get("backstop")
    return [cal["estimator"]] + ([b["estimator"]] if b and b["estimator"] != cal["estimator"] else [])
