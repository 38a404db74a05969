"""Bootstrap confidence intervals over utterances for leaderboard cells, and the paired test
"does enhanced beat noisy?".

A leaderboard value is the mean over folds of a per-fold score (UAR for classification; for
regression the stored per-utterance CCCs give the mean per-utterance CCC, a different statistic
from the frame-pooled CCC shown, and labelled as such). The bootstrap resamples utterances
with replacement *within each fold's test set* (stratified by fold), recomputes every fold's
score and averages over folds, so the interval is for the very number in the table. The
enhanced-vs-noisy test is paired: both conditions have the same test utterances, the same
resample is applied to both, and the percentile interval of the difference (enhanced - noisy)
decides: it excludes 0 -> significant at the 5 % level (two-sided).

Resampling is vectorised: per fold, a (B x n) matrix of multinomial counts weights every
utterance, so per-class recalls are two matrix products.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..interfaces import stable_hash

N_BOOT = 1000
ALPHA = 0.05


@dataclass
class FoldDetail:
    """One fold's per-utterance detail: ids, and (true, pred) labels or per-utterance scores."""

    fold: str
    ids: list[str]
    task: str  # classification | regression
    y_true: list[Any]
    y_pred: list[Any]
    scores: list[float]  # regression: per-utterance CCC


def parse_detail(fold: str, predictions_json: str | None) -> FoldDetail | None:
    """A stored SER cell's ``predictions_json`` -> :class:`FoldDetail` (None if absent/unusable)."""
    if not predictions_json:
        return None
    try:
        rows = json.loads(predictions_json)
    except (TypeError, ValueError):
        return None
    if not isinstance(rows, list) or not rows or not isinstance(rows[0], list) or len(rows[0]) != 3:
        return None
    if all(isinstance(r[1], str) or isinstance(r[2], str) for r in rows):  # [utt, true, pred]
        return FoldDetail(fold, [str(r[0]) for r in rows], "classification", [str(r[1]) for r in rows],
                          [str(r[2]) for r in rows], [])
    keep = [r for r in rows if r[2] is not None]  # [utt, n_frames, ccc_utt]
    return FoldDetail(fold, [str(r[0]) for r in keep], "regression", [], [], [float(r[2]) for r in keep])


def _weights(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)


def _fold_stat(d: FoldDetail, idx: np.ndarray, W: np.ndarray) -> tuple[float, np.ndarray]:
    """(point estimate, B bootstrap replicates) of one fold's score on utterances ``idx``."""
    if d.task == "regression":
        v = np.asarray(d.scores, dtype=np.float64)[idx]
        return float(v.mean()), (W @ v) / len(v)
    t = np.asarray(d.y_true, dtype=object)[idx]
    p = np.asarray(d.y_pred, dtype=object)[idx]
    classes = sorted(set(t))
    T = np.stack([(t == c) for c in classes], axis=1).astype(np.float64)  # n x C
    C = T * (t == p)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        point = float(np.mean(C.sum(0) / T.sum(0)))
        rec = (W @ C) / (W @ T)  # B x C; a class absent from a resample is NaN and left out
        reps = np.nanmean(rec, axis=1)
    return point, reps


def _seed(*parts: Any) -> int:
    return int(stable_hash([str(p) for p in parts]), 16) & ((1 << 63) - 1)


def _dedupe(details: list[FoldDetail]) -> list[FoldDetail]:
    """One detail per fold, in fold order. Where two cells share a fold (runs of different
    configs), the choice depends on their content only, never on storage order, so the same
    results give the same intervals in any registry."""
    by_fold: dict[str, list[FoldDetail]] = {}
    for d in details:
        by_fold.setdefault(d.fold, []).append(d)
    return [g[0] if len(g) == 1 else max(g, key=_content) for _, g in sorted(by_fold.items())]


def _content(d: FoldDetail) -> str:
    return json.dumps([d.ids, d.y_true, d.y_pred, d.scores], default=str)


def bootstrap_ci(details: list[FoldDetail], *, n_boot: int = N_BOOT, alpha: float = ALPHA,
                 seed: int | None = None) -> tuple[float, float, float] | None:
    """(point, lo, hi): percentile CI of the mean over folds of the fold score."""
    details = [d for d in _dedupe(details) if d.ids]
    if not details:
        return None
    rng = np.random.default_rng(seed if seed is not None else _seed(*(d.fold for d in details), len(details)))
    points, reps = [], []
    for d in details:
        idx = np.arange(len(d.ids))
        p, r = _fold_stat(d, idx, _weights(len(idx), n_boot, rng))
        points.append(p)
        reps.append(r)
    dist = np.nanmean(np.stack(reps), axis=0)
    lo, hi = np.nanquantile(dist, [alpha / 2, 1 - alpha / 2])
    return float(np.mean(points)), float(lo), float(hi)


def paired_delta_ci(base: list[FoldDetail], other: list[FoldDetail], *, n_boot: int = N_BOOT,
                    alpha: float = ALPHA, seed: int | None = None) -> dict[str, float] | None:
    """Paired bootstrap of (other - base) over the utterances both hold, fold by fold.

    Returns {"delta", "lo", "hi", "p_le0" (share of replicates <= 0), "n_utts", "n_folds"} or None
    when no fold has common utterances.
    """
    b = {d.fold: d for d in _dedupe(base)}
    o = {d.fold: d for d in _dedupe(other)}
    folds = sorted(set(b) & set(o))
    rng = np.random.default_rng(seed if seed is not None else _seed("paired", *folds))
    deltas, reps, n = [], [], 0
    for f in folds:
        pos_b = {u: i for i, u in enumerate(b[f].ids)}
        pos_o = {u: i for i, u in enumerate(o[f].ids)}
        common = [u for u in b[f].ids if u in pos_o]
        if not common:
            continue
        W = _weights(len(common), n_boot, rng)
        pb, rb = _fold_stat(b[f], np.array([pos_b[u] for u in common]), W)
        po, ro = _fold_stat(o[f], np.array([pos_o[u] for u in common]), W)
        deltas.append(po - pb)
        reps.append(ro - rb)
        n += len(common)
    if not deltas:
        return None
    dist = np.nanmean(np.stack(reps), axis=0)
    lo, hi = np.nanquantile(dist, [alpha / 2, 1 - alpha / 2])
    return {"delta": float(np.mean(deltas)), "lo": float(lo), "hi": float(hi),
            "p_le0": float(np.mean(dist <= 0)), "n_utts": n, "n_folds": len(deltas)}


def mean_ci(values: Any, *, n_boot: int = N_BOOT, alpha: float = ALPHA, seed: int = 0) -> tuple[float, float] | None:
    """Percentile bootstrap CI of a plain mean (e.g. a quality measure over utterances)."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
    if len(v) < 2:
        return None
    W = _weights(len(v), n_boot, np.random.default_rng(seed))
    lo, hi = np.quantile((W @ v) / len(v), [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def significance(delta: dict[str, float] | None) -> str:
    """'better' / 'worse' when the CI of (enhanced - noisy) excludes 0, else 'n.s.' ('' if unknown)."""
    if not delta:
        return ""
    if delta["lo"] > 0:
        return "better"
    if delta["hi"] < 0:
        return "worse"
    return "n.s."


# ----------------------------------------------------------------------------- the leaderboard


def details_by_cell(store: Any, cell_ids: set[int] | None = None) -> dict[int, FoldDetail]:
    """cell id -> parsed per-utterance detail of the stored SER cells."""
    cells = store.cells_frame()
    if cells.empty:
        return {}
    cells = cells[(cells.kind == "ser") & (cells.status == "done")]
    if cell_ids is not None:
        cells = cells[cells.id.isin(cell_ids)]
    out = {}
    for r in cells.itertuples():
        d = parse_detail(r.fold, r.predictions_json)
        if d is not None:
            out[int(r.id)] = d
    return out


def annotate(tables: list[Any], store: Any, *, n_boot: int = N_BOOT) -> None:
    """Add ``ci`` (lo, hi) to every table value and, on enhanced columns, ``delta`` (the paired
    enhanced - noisy bootstrap) and ``sig``. Values need ``cell_ids``; tables ``columns`` of
    (group, sub) labels where sub is "noisy" / "enhanced" for the leaderboard."""
    wanted = {c for t in tables for r in t.rows for v in r["cells"] if v is not None for c in getattr(v, "cell_ids", [])}
    if not wanted:
        return
    details = details_by_cell(store, wanted)
    for t in tables:
        t.notes.extend(fold_notes([details[c] for r in t.rows for v in r["cells"] if v is not None
                                   for c in getattr(v, "cell_ids", []) if c in details]))
        noisy_col = {g: j for j, (g, sub) in enumerate(t.columns) if sub == "noisy"}
        for r in t.rows:
            for j, v in enumerate(r["cells"]):
                if v is None or not getattr(v, "cell_ids", None):
                    continue
                ds = [details[c] for c in sorted(v.cell_ids) if c in details]
                if not ds:
                    continue
                ci = bootstrap_ci(ds, n_boot=n_boot)
                if ci is not None:
                    v.ci = (ci[1], ci[2])
                    v.n_utts = sum(len(d.ids) for d in _dedupe(ds))
                    v.ci_stat = "mean per-utterance CCC" if ds[0].task == "regression" else "UAR"
                g, sub = t.columns[j]
                if sub == "enhanced" and g in noisy_col and r["cells"][noisy_col[g]] is not None:
                    nv = r["cells"][noisy_col[g]]
                    base = [details[c] for c in sorted(getattr(nv, "cell_ids", [])) if c in details]
                    v.delta = paired_delta_ci(base, ds, n_boot=n_boot)
                    v.sig = significance(v.delta)


#: below this median number of test utterances per fold, the report says what its intervals cover
FEW_UTTERANCES = 20


def fold_notes(details: list[FoldDetail]) -> list[str]:
    """Warnings about a table's test folds: single-class folds (leave-one-speaker-out on a corpus
    whose speakers each have one emotion) and few test utterances per fold."""
    folds = _dedupe(details)
    if not folds:
        return []
    notes = []
    k = len(folds)
    single = [d for d in folds if d.task == "classification" and len(set(d.y_true)) == 1]
    if single:
        eg = ", ".join(f"{d.fold}: only {d.y_true[0]!r}" for d in single[:3]) + (", ..." if len(single) > 3 else "")
        notes.append(
            f"{len(single)} of {k} test folds hold a single emotion ({eg}): such a fold's UAR is the recall of that "
            "one emotion, so the fold scores and their mean mislead. This happens with leave-one-speaker-out when "
            "each speaker has one emotion; re-run with --cv group-kfold (folds of whole speakers, balanced by "
            "emotion; --cv-folds K, default 5).")
    sizes = sorted(len(d.ids) for d in folds)
    if float(np.median(sizes)) < FEW_UTTERANCES:
        notes.append(
            f"Few test utterances per fold ({sizes[0]}–{sizes[-1]} in {k} folds, {sum(sizes)} in all): the bracketed "
            "95% intervals show how far a score could move with another draw of that many test utterances "
            "(bootstrap over utterances within each fold), not the spread between folds (± is the standard "
            "deviation over folds); a value equal in every fold (±0.0) still has a wide interval.")
    return notes
