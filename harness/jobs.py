"""What a run's workers execute: preparing a chunk of utterances' audio and features, and fitting,
predicting and scoring a group of cells that share one fit.

Jobs take and return plain payloads (dicts of picklable values), so any executor can run them;
each job finds its run's :class:`~ser_bench.artefacts.Context` through
:func:`~ser_bench.artefacts.worker_context`. A job never raises: a failure comes back as a value.
"""
from __future__ import annotations

import os
import time
import traceback as tb
from typing import Any

import numpy as np

from .artefacts import Context, fit_key, worker_context
from .errors import PluginError
from .interfaces import FeatureSet, TimeSeries, Utterance
from .metrics import accuracy, ccc, uar
from .protocols import Cell, Condition, Fold


def prepare_job(payload: dict) -> dict:
    """Make audio + features for a chunk of utterances under one condition, for every SER model
    of ``payload["models"]`` (the audio is made once and featurised by each)."""
    ctx = worker_context(payload)
    t0 = time.perf_counter()
    try:
        ctx.prepare(payload["dataset"], payload["models"], Condition(**payload["cond"]), payload["ids"])
        return {"ok": True, "n": len(payload["ids"]), "s": time.perf_counter() - t0}
    except Exception as exc:  # reported per condition; the cells that need it fail with this error
        return {"ok": False, "n": len(payload["ids"]), "error": f"{type(exc).__name__}: {exc}",
                "traceback": tb.format_exc()}



def _featureset(feats: dict[str, np.ndarray], utts: dict[str, Utterance], ids: tuple[str, ...]) -> FeatureSet:
    return FeatureSet(X=[feats[i] for i in ids], y=[utts[i].label for i in ids],
                      groups=[utts[i].speaker for i in ids], ids=list(ids))


def _train_featureset(ctx: Context, cell: Cell, utts: dict[str, Utterance], ids: tuple[str, ...]) -> FeatureSet:
    """The training (or validation) set of ``cell``: ``ids`` under its training condition; under a
    pooled condition, ``ids`` once per member, in member order (ids ``"UTT@member"``, the speaker
    kept as the group, so speaker-grouped tuning never splits one speaker's copies)."""
    if cell.train.kind != "pooled":
        return _featureset(ctx.condition_features(cell.dataset, cell.ser_model, cell.train, ids), utts, ids)
    X, y, groups, out_ids = [], [], [], []
    for m in cell.train.pool:
        feats = ctx.condition_features(cell.dataset, cell.ser_model, m, ids)
        X += [feats[i] for i in ids]
        y += [utts[i].label for i in ids]
        groups += [utts[i].speaker for i in ids]
        out_ids += [f"{i}@{m.label()}" for i in ids]
    return FeatureSet(X=X, y=y, groups=groups, ids=out_ids)


def score(task: str, y_true: list, y_pred: list, ids: list[str]) -> tuple[dict[str, float], Any]:
    """Metrics of one cell and the per-utterance detail stored with it."""
    if task == "classification":
        y_pred = [str(p) for p in y_pred]
        return ({"uar": uar(y_true, y_pred), "accuracy": accuracy(y_true, y_pred)},
                [[i, t, p] for i, t, p in zip(ids, y_true, y_pred)])
    trues, preds, per_utt = [], [], []
    for i, t, p in zip(ids, y_true, y_pred):
        tv = np.asarray(t.values if isinstance(t, TimeSeries) else t, dtype=float)
        pv = np.asarray(p.values if isinstance(p, TimeSeries) else p, dtype=float)
        if len(pv) != len(tv):
            raise PluginError(f"prediction for {i!r} has {len(pv)} frames, the label {len(tv)}")
        trues.append(tv)
        preds.append(pv)
        per_utt.append([i, len(tv), ccc(tv, pv) if len(tv) > 1 else None])
    return {"ccc": ccc(np.concatenate(trues), np.concatenate(preds))}, per_utt



def _fit(ctx: Context, cell: Cell, fold: Fold, seed: int, train: FeatureSet,
         valid: FeatureSet | None) -> tuple[Any, bool]:
    """A fitted model for ``cell``'s training data: from the fit cache, or fitted (and cached).
    Returns ``(model, reused)``."""
    model = ctx.registry.create("ser_model", cell.ser_model, ctx.config.plugin_options(cell.ser_model))
    takes_seed = hasattr(model, "seed_")
    key = fit_key(ctx, cell, fold, seed if takes_seed else None)
    cache_fits = getattr(model, "cache_fits", True)
    if cache_fits:
        cached = ctx.cache.load_object("fits", key)
        if cached is not None and type(cached) is type(model):
            if hasattr(cached, "restore_training_data"):
                cached.restore_training_data(train)
            return cached, True
    if takes_seed:
        model.seed_ = seed
    model.fit(train, valid)
    if cache_fits:
        ctx.cache.store_object("fits", key, model, (cell.dataset, cell.train.enhancer))
    return model, False


def cell_job(payload: dict) -> dict:
    """Fit once, then predict and score each cell of ``payload["cells"]`` (cells sharing dataset,
    SER model, training condition and fold). Never raises: each cell's failure comes back with its
    traceback. Returns ``{"results": [one result per cell]}``."""
    ctx = worker_context(payload)
    fold: Fold = payload["fold"]
    cells: list[Cell] = payload["cells"]
    first = cells[0]
    utts = ctx.utterances(first.dataset)
    results: list[dict[str, Any]] = []
    model = None
    fit_out: dict[str, Any] = {}
    try:
        t0 = time.perf_counter()
        train = _train_featureset(ctx, first, utts, fold.train)
        valid = _train_featureset(ctx, first, utts, fold.valid) if fold.valid else None
        t1 = time.perf_counter()
        model, reused = _fit(ctx, first, fold, payload["seeds"][0], train, valid)
        t2 = time.perf_counter()
        fit_out = {"prep_s": t1 - t0, "fit_s": t2 - t1, "reused": reused, "n_train": len(train)}
    except Exception as exc:
        fit_out = {"error": f"{type(exc).__name__}: {exc}", "traceback": tb.format_exc()}
    for n, cell in enumerate(cells):
        out: dict[str, Any] = {"timings": {}}
        if model is None:
            out.update(status="failed", error=fit_out["error"], traceback=fit_out["traceback"])
            results.append(out)
            continue
        try:
            t2 = time.perf_counter()
            test_f = ctx.condition_features(cell.dataset, cell.ser_model, cell.test, fold.test)
            test = _featureset(test_f, utts, fold.test)
            t3 = time.perf_counter()
            preds = model.predict(test)
            t4 = time.perf_counter()
            if len(preds) != len(test):
                raise PluginError(f"SER model {cell.ser_model!r} returned {len(preds)} predictions for "
                                  f"{len(test)} inputs")
            metrics, detail = score(model.task, test.y, preds, test.ids)
            # a fit shared by the group or loaded from the fit cache shows as fit_s = 0
            out.update(status="done", metrics=metrics, predictions=detail,
                       info={"fit": getattr(model, "fit_info_", None), "fold_note": fold.note},
                       timings={"prep_s": (fit_out["prep_s"] if n == 0 else 0.0) + t3 - t2,
                                "fit_s": fit_out["fit_s"] if n == 0 and not fit_out["reused"] else 0.0,
                                "predict_s": t4 - t3},
                       n_train=fit_out["n_train"], n_test=len(test))
        except Exception as exc:
            out.update(status="failed", error=f"{type(exc).__name__}: {exc}", traceback=tb.format_exc())
        results.append(out)
    return {"results": results}



def lost_prepare(job: dict, message: str) -> dict:
    return {"ok": False, "n": len(job["ids"]), "error": f"WorkerLost: {message}", "traceback": message}


def lost_cell(job: dict, message: str) -> dict:
    return {"results": [{"status": "failed", "error": f"WorkerLost: {message}", "traceback": message, "timings": {}}
                        for _ in job["cells"]]}


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB (0 where the platform cannot tell)."""
    try:
        import resource
        import sys

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux
    except (ImportError, OSError):  # Windows
        return 0.0


class Measured:
    """A job function whose result (a dict) also carries its process's peak RSS (``"rss_mb"``):
    the driver learns how much memory its workers needed, wherever they run."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn
        self.__name__ = getattr(fn, "__name__", "job")

    def __call__(self, payload: Any) -> Any:
        res = self.fn(payload)
        if isinstance(res, dict):
            res["rss_mb"] = peak_rss_mb()
        return res


class MeasuredExecutor:
    """An executor whose jobs report their peak RSS; :attr:`workers_peak_mb` holds the largest."""

    def __init__(self, ex: Any) -> None:
        self.ex = ex
        self.workers_peak_mb = 0.0

    def map_unordered(self, fn: Any, jobs: Any, **kw: Any) -> Any:
        for job, res in self.ex.map_unordered(Measured(fn), jobs, **kw):
            if isinstance(res, dict):
                self.workers_peak_mb = max(self.workers_peak_mb, float(res.pop("rss_mb", 0.0) or 0.0))
            yield job, res

    def close(self) -> None:
        self.ex.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.ex, name)


#: Crash-test hook (benchmarks/kill_resume.py): the driver SIGKILLs itself right after storing
#: this many cells, so kill points are exact whatever the machine's speed. Unset in normal use.
FAULT_ENV = "BENCH_FAULT_KILL_AFTER_CELLS"


def fault_point(n_stored: int) -> None:
    target = os.environ.get(FAULT_ENV)
    if target and n_stored >= int(target):
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
