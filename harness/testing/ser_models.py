"""``check_ser_model``: the :class:`ser_bench.SERModel` contract, fitted on the tiny tone corpus."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..interfaces import Dataset, FeatureSet, Label, SERModel, TimeSeries, Utterance
from .common import ConformanceError, _call, _check_identity, _fresh, _instantiate, _who, check_metadata
from .fakes import ToneTraceDataset, make_tone_dataset


def check_ser_model(
    model: SERModel | type[SERModel],
    *,
    options: dict[str, Any] | None = None,
    dataset: Dataset | None = None,
    min_score: float | None = None,
    atol: float = 1e-6,
) -> SERModel:
    """Check an SER model: featurize, fit on a tiny dataset, predict valid labels, deterministically.

    Rules: valid metadata; ``featurize`` returns a finite numeric array, the same for the same
    audio; ``fit(train, valid)`` returns self (with and without ``valid``); ``predict`` gets no
    labels (``y=None``) and returns one label per entry: a training class name, or (regression)
    a finite :class:`TimeSeries` with the reference's hop and length (within one frame); two
    fresh instances fitted on the same data predict the same.

    Args:
        dataset: the data to use (default: :func:`make_tone_dataset` or, for regression models,
            :class:`ToneTraceDataset`); the last speaker is the test speaker.
        min_score: if given, the UAR (classification) or mean CCC (regression) on the test
            speaker must reach it (the tone data are easy: a working model scores ~1).
    """
    inst = _instantiate(model, "ser_model", options)
    who = _who(inst, "ser_model")
    check_metadata(inst, "ser_model")
    _check_identity(inst, who)
    if inst.task not in ("classification", "regression"):
        raise ConformanceError(who, "has a valid task", f"task is {inst.task!r}; use 'classification' or 'regression'")
    if dataset is None:
        dataset = make_tone_dataset() if inst.task == "classification" else ToneTraceDataset()
    if dataset.task != inst.task:
        raise ValueError(f"dataset {dataset.name!r} is a {dataset.task} dataset but the model does {inst.task}")
    key = _call(who, "has a feature key", "feature_key()", inst.feature_key)
    if not isinstance(key, str) or not key or key != _fresh(inst).feature_key():
        raise ConformanceError(who, "has a feature key", f"feature_key() gave {key!r}; return a stable non-empty string")

    utts = dataset.utterances()
    feats = []
    for i, u in enumerate(utts):
        audio = u.load()
        f = _call(who, "featurizes audio", f"featurize() on utterance {u.id!r}", lambda: inst.featurize(audio.copy()))
        if not isinstance(f, np.ndarray) or f.dtype.kind not in "fiub":
            raise ConformanceError(
                who, "featurizes audio",
                f"featurize() returned {type(f).__name__}{'' if not isinstance(f, np.ndarray) else ' of dtype ' + str(f.dtype)}; "
                "return a numeric numpy array (the harness caches it on disk)",
            )
        if not np.all(np.isfinite(f)):
            raise ConformanceError(who, "featurizes audio", f"featurize() returned NaN/inf for utterance {u.id!r}")
        if i == 0 and not np.array_equal(f, inst.featurize(audio.copy())):
            raise ConformanceError(who, "is deterministic", "featurize() gave different features for the same audio")
        feats.append(f)

    speakers = sorted({u.speaker for u in utts})
    test_spk, valid_spk = speakers[-1], speakers[-2]

    def fs(keep: Callable[[Utterance], bool], labels: bool = True) -> FeatureSet:
        idx = [i for i, u in enumerate(utts) if keep(u)]
        return FeatureSet(
            X=[feats[i] for i in idx], y=[utts[i].label for i in idx] if labels else None,
            groups=[utts[i].speaker for i in idx], ids=[utts[i].id for i in idx],
        )

    train = fs(lambda u: u.speaker != test_spk)
    test = fs(lambda u: u.speaker == test_spk, labels=False)
    truth = [u.label for u in utts if u.speaker == test_spk]
    classes = sorted({y for y in train.y if isinstance(y, str)})

    def fit_predict(m: SERModel, tr: FeatureSet, va: FeatureSet | None) -> list[Label]:
        ret = _call(who, "fits", f"fit(train, valid={'None' if va is None else 'a FeatureSet'})", lambda: m.fit(tr, va))
        if ret is not m:
            raise ConformanceError(who, "fit() returns self", f"fit() returned {type(ret).__name__}; end fit() with `return self`")
        preds = _call(who, "predicts without labels", "predict(test) (test.y is None: predictions must not use labels)", lambda: m.predict(test))
        _check_predictions(who, inst.task, preds, truth, classes)
        return list(preds)

    first = fit_predict(inst, train, None)
    second = fit_predict(_fresh(inst), train, None)
    for a, b in zip(first, second):
        same = a == b if isinstance(a, str) else (
            isinstance(b, TimeSeries) and a.values.shape == b.values.shape and np.allclose(a.values, b.values, atol=atol))
        if not same:
            raise ConformanceError(
                who, "is deterministic",
                "two fresh instances fitted on the same data predict differently; seed every random generator "
                "from the options (e.g. a `seed` option)",
            )
    fit_predict(_fresh(inst), fs(lambda u: u.speaker not in (test_spk, valid_spk)), fs(lambda u: u.speaker == valid_spk))
    if min_score is not None:
        score = _uar(truth, first) if inst.task == "classification" else float(
            np.mean([_ccc(t.values, p.values) for t, p in zip(truth, first)]))
        if not score >= min_score:
            raise ConformanceError(who, "learns the tone data", f"scored {score:.3f} on the test speaker, below {min_score}")
    return inst


def _check_predictions(who: str, task: str, preds: Any, truth: list[Label], classes: list[str]) -> None:
    if not isinstance(preds, Sequence | np.ndarray) or len(preds) != len(truth):
        n = len(preds) if hasattr(preds, "__len__") else "?"
        raise ConformanceError(who, "predicts one label per entry", f"predict() returned {n} labels for {len(truth)} entries")
    for p, t in zip(preds, truth):
        if task == "classification":
            if not isinstance(p, str) or p not in classes:
                raise ConformanceError(
                    who, "predicts training classes",
                    f"predicted {p!r} ({type(p).__name__}); labels must be class names seen in training: {classes}",
                )
        else:
            if not isinstance(p, TimeSeries):
                raise ConformanceError(who, "predicts time series", f"predicted a {type(p).__name__}; regression models return TimeSeries")
            v = np.asarray(p.values)
            if v.ndim != 1 or not np.all(np.isfinite(v)):
                raise ConformanceError(who, "predicts time series", f"values of shape {v.shape} with NaN/inf; return a finite 1-D series")
            if abs(p.hop_s - t.hop_s) > 1e-9 or abs(len(v) - len(t.values)) > 1:
                raise ConformanceError(
                    who, "predicts time series",
                    f"predicted {len(v)} frames at hop {p.hop_s} s for a reference of {len(t.values)} frames at hop "
                    f"{t.hop_s} s; match the label's hop and length",
                )


def _uar(y_true: Sequence[str], y_pred: Sequence[str]) -> float:
    t, p = np.asarray(y_true), np.asarray(y_pred)
    return float(np.mean([np.mean(p[t == c] == c) for c in np.unique(t)]))


def _ccc(x: np.ndarray, y: np.ndarray) -> float:
    n = min(len(x), len(y))
    x, y = np.asarray(x[:n], float), np.asarray(y[:n], float)
    cov = np.mean((x - x.mean()) * (y - y.mean()))
    return float(2 * cov / (x.var() + y.var() + (x.mean() - y.mean()) ** 2 + 1e-12))

