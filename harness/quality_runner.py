"""The quality stage of a run (``bench run ... --quality``): enhancement quality and emotion
preservation of every noisy / enhanced condition, stored as ``kind="quality"`` cells.

One cell per (dataset, noise, SNR, enhancer): ``enhancer="none"`` / ``test_condition="noisy"``
is the noisy input, the others (``test_condition="enhanced"``) an enhancer's output; all are
measured against the clean speech as it sits in the mixture (see :func:`reference`). The cell
coordinates line up with the SER cells (``ser_model="-"``, ``protocol="quality"``,
``train_condition="-"``, ``fold="all"``), so quality joins SER results on dataset, noise,
enhancer and SNR. Results rows hold the means over utterances (plus ``n_utts``, ``failures``
and ``failed_<measure>`` counts); ``predictions_json`` holds every utterance's values and every
per-file failure (:func:`utterance_frame` reads them back).

The noisy and enhanced audio come from the runner's content-addressed cache (what the SER stage
made is reused, what is missing is made and cached); eGeMAPS functionals share the cache entries
of the ``svm-egemaps`` SER model. Work runs through the run's executor in chunks of utterances:
first the clean functionals of each dataset (their mean / std standardise the functional
distance), then every (cell, chunk).
"""
from __future__ import annotations

import json
import time
import traceback as tb
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .artefacts import worker_context
from .interfaces import Utterance, stable_hash
from .mixing import MIXING_VERSION, PEAK_LIMIT, mix
from .progress import run_bar
from .protocols import CLEAN_NOISE, Condition
from .quality import (
    METRICS, egemaps_functionals, egemaps_lld, functional_stats, functionals_key, implementation_ids, lld_key,
    measure, pesq_implementation,
)

PROTOCOL = "quality"
CHUNK = 16

REFERENCE_NOTE = (
    "reference = the clean utterance as it sits in the mixture (scaled by the mixture's anti-clipping "
    "gain when there is one); enhancer 'none' = the noisy input"
)
CORRUPTION_REFERENCE_NOTE = (
    "reference = the dry clean utterance (a reverberant chain is aligned to its direct path, so the "
    "reference stays time-aligned); enhancer 'none' = the corrupted input"
)


@dataclass(frozen=True)
class QualityCell:
    dataset: str
    noise: str
    snr: float | None
    enhancer: str  # "none": the noisy input
    #: a corruption chain (canonical label; ``snr`` is then None), "" for additive noise at ``snr``
    corruption: str = ""

    @property
    def condition(self) -> Condition:
        if self.enhancer == "none":
            return Condition("noisy", self.snr, self.noise, corruption=self.corruption)
        return Condition("enhanced", self.snr, self.noise, self.enhancer, corruption=self.corruption)

    def coords(self) -> dict[str, Any]:
        out = {
            "dataset": self.dataset, "ser_model": "-", "protocol": PROTOCOL, "enhancer": self.enhancer,
            "noise": self.noise, "train_condition": "-", "train_snr": None,
            "test_condition": self.condition.kind, "test_snr": self.snr, "fold": "all",
        }
        if self.corruption:  # absent otherwise: additive-noise quality cells keep their keys
            from .corruptions import steps_json

            out.update(test_corruption=self.corruption, corruption_json=json.dumps(steps_json(self.corruption)))
        return out

    def label(self) -> str:
        return f"{self.dataset} {self.condition.label()}"


def quality_cells(config: Any) -> list[QualityCell]:
    """The quality cells of a run: every noise x test SNR x (noisy + each enhancer) per dataset."""
    if config.protocol == "clean":
        return []
    snrs = (config.test_snrs or config.snrs) if config.protocol == "multi-snr" else config.snrs
    enhancers = ["none"] + [e for e in config.enhancers if e != "none"]
    from .corruptions import chain_sources, corruption_conditions

    return ([QualityCell(ds, noise, float(s), e)
             for ds in config.datasets for noise in config.noise_sources for s in snrs for e in enhancers]
            + [QualityCell(ds, (chain_sources(c) or [CLEAN_NOISE])[0], None, e, c)
               for ds in config.datasets for c in corruption_conditions(config) for e in enhancers])


def quality_key(qc: QualityCell, config: Any, idents: dict[str, str]) -> str:
    """Identity of a quality cell: coordinates + plugins + seed + mixing + measure implementations."""
    used = ([qc.dataset] + ([qc.noise] if qc.noise != CLEAN_NOISE else [])
            + ([qc.enhancer] if qc.enhancer != "none" else []))
    extra = {}
    if qc.corruption:  # the chain's corruption plugins (as corrupted SER cells are keyed)
        from .corruptions import parse_chain

        extra["corruptions"] = {n: idents[f"corruption:{n}"] for n in sorted({s.name for s in parse_chain(qc.corruption)})}
    return stable_hash({
        "quality": qc.coords(), "plugins": {n: idents[n] for n in used}, "seed": config.seed,
        "mixing": MIXING_VERSION, "impl": implementation_ids(), **extra,
    }, n=32)


# ----------------------------------------------------------------------------- worker side


def reference(ctx: Any, utt: Utterance, cond: Condition, noisy: np.ndarray) -> tuple[np.ndarray, str]:
    """The clean speech as it sits in ``noisy``, and its audio key.

    The mixer scales speech and noise down together only when the mixture would clip, which
    leaves its peak at exactly ``PEAK_LIMIT``; below that the reference is the clean utterance
    itself (sharing the clean audio key, hence cached features), else the mixture is remade
    (deterministic) to get the scaled speech.
    """
    clean = utt.load()
    ckey = utt.content_key()
    if float(np.max(np.abs(noisy))) < PEAK_LIMIT * (1 - 1e-4):
        return clean, "clean:" + ckey
    noise = ctx.plugin("noise_source", cond.noise)
    m = mix(clean, noise.clips("test"), cond.snr, key=ckey, seed=ctx.config.seed, source=cond.noise,
            speech_name=str(utt.path or utt.id))
    if m.gain == 1.0:
        return clean, "clean:" + ckey
    return m.clean, ctx.cache.key(["scaled-clean", ckey, repr(m.gain)])


def _lld(ctx: Any, audio_key: str, audio: np.ndarray) -> np.ndarray:
    return ctx.cache.get_or_compute("lld", ["lld", audio_key, lld_key()], lambda: egemaps_lld(audio))[0]


def _functionals(ctx: Any, audio_key: str, audio: np.ndarray) -> np.ndarray:
    fkey = ctx.cache.key(["feat", audio_key, functionals_key()])  # = the svm-egemaps feature entry
    val = ctx.cache.load("features", fkey)
    if val is None:
        val = egemaps_functionals(audio)
        ctx.cache.store("features", fkey, val)
    return val


def _maybe(fn: Callable[[], np.ndarray]) -> np.ndarray | None:
    try:
        return fn()
    except Exception:  # noqa: BLE001 - measure() recomputes and records the error per measure
        return None


def clean_job(payload: dict) -> dict:
    """eGeMAPS functionals (and cached LLDs) of a chunk of clean utterances."""
    ctx = worker_context(payload)
    out: dict[str, Any] = {"ok": True, "func": {}, "errors": {}, "n": len(payload["ids"])}
    try:
        utts = ctx.utterances(payload["dataset"])
        for uid in payload["ids"]:
            try:
                audio = utts[uid].load()
                key = "clean:" + utts[uid].content_key()
                out["func"][uid] = _functionals(ctx, key, audio)
                _lld(ctx, key, audio)
            except Exception as exc:  # noqa: BLE001
                out["errors"][uid] = f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # noqa: BLE001
        out.update(ok=False, error=f"{type(exc).__name__}: {exc}", traceback=tb.format_exc())
    return out


def quality_job(payload: dict) -> dict:
    """Every measure of a chunk of utterances under one condition. Never raises."""
    t0 = time.perf_counter()
    ctx = worker_context(payload)
    qc = QualityCell(**payload["qcell"])
    cond = qc.condition
    stats = payload.get("stats")
    stats = (np.asarray(stats[0]), np.asarray(stats[1])) if stats else None
    rows: list[dict[str, Any]] = []
    try:
        utts = ctx.utterances(qc.dataset)
        noisy_cond = Condition("noisy", qc.snr, qc.noise, corruption=qc.corruption)
        for uid in payload["ids"]:
            utt = utts[uid]
            try:
                noisy, nkey = ctx.mixture(utt, noisy_cond)  # exact, whatever the cache keeps
                test, tkey = ctx.audio(utt, cond, qc.dataset) if cond.kind == "enhanced" else (noisy, nkey)
                # a corruption chain: the dry clean utterance (reverb keeps the direct path aligned)
                ref, rkey = ((utt.load(), "clean:" + utt.content_key()) if qc.corruption
                             else reference(ctx, utt, cond, noisy))
            except Exception as exc:  # noqa: BLE001 - this file fails, the others go on
                rows.append({"utt": uid, "values": {}, "errors": {"audio": f"{type(exc).__name__}: {exc}"}})
                continue
            values, errors = measure(
                ref, test, noisy=noisy if cond.kind == "enhanced" else None,
                ref_lld=_maybe(lambda: _lld(ctx, rkey, ref)), test_lld=_maybe(lambda: _lld(ctx, tkey, test)),
                ref_func=_maybe(lambda: _functionals(ctx, rkey, ref)) if stats else None,
                test_func=_maybe(lambda: _functionals(ctx, tkey, test)) if stats else None,
                stats=stats,
            )
            rows.append({"utt": uid, "values": values, "errors": errors})
        return {"ok": True, "rows": rows, "s": time.perf_counter() - t0, "n": len(payload["ids"])}
    except Exception as exc:  # noqa: BLE001 - e.g. the enhancer cannot be created: the whole cell fails
        return {"ok": False, "rows": rows, "error": f"{type(exc).__name__}: {exc}", "traceback": tb.format_exc(),
                "s": time.perf_counter() - t0, "n": len(payload["ids"])}


# ----------------------------------------------------------------------------- aggregation


def aggregate(rows: list[dict[str, Any]]) -> tuple[dict[str, float], dict[str, Any]]:
    """Cell metrics (means over utterances, failure counts) and the per-utterance detail."""
    rows = sorted(rows, key=lambda r: str(r["utt"]))
    names = [m for m in METRICS if any(m in r["values"] or m in r["errors"] for r in rows)]
    metrics: dict[str, float] = {"n_utts": float(len(rows))}
    failures = [{"utt": r["utt"], "metric": m, "error": e} for r in rows for m, e in sorted(r["errors"].items())]
    for m in names:
        vals = [r["values"][m] for r in rows if m in r["values"]]
        if vals:
            metrics[m] = float(np.mean(vals))
        n_bad = sum(1 for r in rows if m not in r["values"])
        if n_bad:
            metrics[f"failed_{m}"] = float(n_bad)
    metrics["failures"] = float(len(failures))
    detail = {"metrics": names, "values": [[r["utt"], *[r["values"].get(m) for m in names]] for r in rows],
              "failures": failures}
    return metrics, detail


def utterance_frame(store: Any, *, dataset: str | None = None, enhancer: str | None = None,
                    noise: str | None = None, snr: float | None = None, run_ids: list[int] | None = None):
    """Per-utterance quality values, long form: one row per (cell, utterance, measure).

    Columns: cell_id, run_id, dataset, noise, enhancer, test_condition, test_snr, utt, metric,
    value (NaN where the measure failed for that file) and error (the failure, else None).
    """
    import pandas as pd

    cells = store.cells_frame(run_ids)
    cols = ["cell_id", "run_id", "dataset", "noise", "enhancer", "test_condition", "test_snr", "utt", "metric",
            "value", "error"]
    if cells.empty:
        return pd.DataFrame(columns=cols)
    c = cells[(cells.kind == "quality") & (cells.status == "done")]
    for col, val in (("dataset", dataset), ("enhancer", enhancer), ("noise", noise), ("test_snr", snr)):
        if val is not None:
            c = c[c[col] == val]
    out = []
    for r in c.itertuples():
        d = json.loads(r.predictions_json or "{}")
        base = [r.id, r.run_id, r.dataset, r.noise, r.enhancer, r.test_condition, r.test_snr]
        errs = {(f["utt"], f["metric"]): f["error"] for f in d.get("failures", [])}
        for row in d.get("values", []):
            uid = row[0]
            for m, v in zip(d["metrics"], row[1:]):
                out.append(base + [uid, m, np.nan if v is None else float(v), errs.get((uid, m))])
        for (uid, m), e in errs.items():
            if m not in d.get("metrics", []):  # e.g. "audio": the file could not be made at all
                out.append(base + [uid, m, np.nan, e])
    return pd.DataFrame(out, columns=cols)


# ----------------------------------------------------------------------------- driver side


def run_quality(
    todo: list[tuple[QualityCell, str]],
    *,
    ctx: Any,
    ex: Any,
    base: dict[str, Any],
    store: Any,
    run_id: int,
    progress: bool = False,
    echo: Callable[[str], None] = lambda s: None,
) -> tuple[int, int, list[str]]:
    """Compute and store every quality cell in ``todo``; returns (done, failed, failure lines)."""
    if not todo:
        return 0, 0, []
    datasets = list(OrderedDict.fromkeys(qc.dataset for qc, _ in todo))
    ids = {ds: list(ctx.utterances(ds)) for ds in datasets}
    # ---- phase 1: clean functionals per dataset -> standardisation stats
    jobs = [dict(base, dataset=ds, ids=ids[ds][i : i + CHUNK]) for ds in datasets for i in range(0, len(ids[ds]), CHUNK)]
    funcs: dict[str, dict[str, np.ndarray]] = {ds: {} for ds in datasets}
    stats: dict[str, Any] = {}
    notes: dict[str, str] = {}
    bar = run_bar(progress, sum(len(j["ids"]) for j in jobs), "quality: clean")
    for job, res in ex.map_unordered(clean_job, jobs, lost=_lost_clean):
        funcs[job["dataset"]].update(res.get("func", {}))
        bar.update(res["n"])
    bar.close()
    for ds in datasets:
        try:
            vecs = [funcs[ds][u] for u in ids[ds] if u in funcs[ds]]
            mean, std = functional_stats(np.stack(vecs) if vecs else np.zeros((0, 0)))
            stats[ds] = [mean.tolist(), std.tolist()]
            notes[ds] = f"eGeMAPS functionals standardised by mean/std over {len(vecs)} clean utterances of {ds}"
        except Exception as exc:  # noqa: BLE001
            stats[ds] = None
            notes[ds] = f"no eGeMAPS distance: {type(exc).__name__}: {exc}"
            echo(f"quality: {ds}: {notes[ds]}")
    # ---- phase 2: every (cell, chunk)
    jobs, pending, acc, secs, errors = [], {}, {}, {}, {}
    for qc, key in todo:
        chunks = [ids[qc.dataset][i : i + CHUNK] for i in range(0, len(ids[qc.dataset]), CHUNK)]
        pending[key], acc[key], secs[key] = len(chunks), [], 0.0
        jobs += [dict(base, qcell=asdict(qc), key=key, ids=ch, stats=stats[qc.dataset]) for ch in chunks]
    cell_of = {k: qc for qc, k in todo}
    n_done = n_failed = 0
    failures: list[str] = []
    bar = run_bar(progress, sum(len(j["ids"]) for j in jobs), "quality")
    for job, res in ex.map_unordered(quality_job, jobs, lost=_lost_quality):
        key = job["key"]
        acc[key] += res["rows"]
        secs[key] += res.get("s", 0.0)
        if not res["ok"]:
            errors.setdefault(key, (res["error"], res.get("traceback")))
        pending[key] -= 1
        bar.update(res["n"])
        if pending[key]:
            continue
        qc = cell_of[key]
        metrics, detail = aggregate(acc.pop(key))
        info = {"pesq": pesq_implementation(), "impl": implementation_ids(),
                "reference": CORRUPTION_REFERENCE_NOTE if qc.corruption else REFERENCE_NOTE,
                "functional_stats": notes[qc.dataset]}
        usable = any(m in METRICS for m in metrics)
        if key in errors or not usable:
            err, trace = errors.get(key) or ("every measure failed on every file: " + _first_errors(detail), None)
            store.record_cell(run_id, key, qc.coords(), status="failed", kind="quality", error=err,
                              traceback=trace or err, predictions=detail, info=info)
            n_failed += 1
            failures.append(f"quality {qc.label()}: {err}")
        else:
            store.record_cell(run_id, key, qc.coords(), status="done", kind="quality", metrics=metrics,
                              timings={"prep_s": secs[key]}, n_test=len(detail["values"]), info=info,
                              predictions=detail)
            n_done += 1
    bar.close()
    return n_done, n_failed, failures


def _lost_clean(job: dict, message: str) -> dict:
    """A worker died on this chunk (killed, out of memory): its utterances get no functionals."""
    return {"ok": False, "func": {}, "errors": {}, "n": len(job["ids"]), "error": f"WorkerLost: {message}"}


def _lost_quality(job: dict, message: str) -> dict:
    """A worker died on this chunk: its cell is stored as failed (and retried by the next run)."""
    return {"ok": False, "rows": [], "n": len(job["ids"]), "error": f"WorkerLost: {message}", "traceback": message}


def _first_errors(detail: dict[str, Any], n: int = 3) -> str:
    return "; ".join(f"{f['utt']} {f['metric']}: {f['error']}" for f in detail["failures"][:n])
