"""The protocol runner: orchestration only. Read :func:`run` top to bottom.

0. *Plan* (:mod:`ser_bench.plan`): resolve plugins, list utterances, build folds, enumerate
   cells, drop the cells already stored (resume / re-run), and retry failed ones.
1. *Audit* (:mod:`ser_bench.audit`): check every input file once; bad inputs fail the run
   together, or are left out and recorded.
2. *Prepare* (:mod:`ser_bench.jobs`, :mod:`ser_bench.artefacts`): for every (dataset, SER model
   feature key, condition) needed by a pending cell, make the audio (mix, enhance) and the
   features of every utterance, in parallel chunks, each artefact cached on disk by content key,
   so shared steps run once for all cells and folds.
3. *Cells*: fit on the train fold, predict the test fold, score; each cell's result streams back
   to the driver, which commits it in its own transaction. A plugin error fails that cell
   (stored with its traceback), not the run.
4. *Quality* (:mod:`ser_bench.quality_runner`, with ``config.quality``).

The names other code imported from here before the split into stages stay importable from here.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from . import corruptions
from .artefacts import CHUNK, FIT_FORMAT, Context, fit_key, per_cell_seed, remote_config, worker_context
from .audit import AUDIT_CHUNK, AUDIT_VERSION, audit, audit_all, audit_job, bad_inputs, describe_conversion, wav_truncation
from .cache import Cache
from .config import RunConfig
from .db import Store
from .errors import bad_audio_error
from .executors import Executor, InlineExecutor, make_executor, one_thread, usable_cores
from .interfaces import stable_hash
from .jobs import (
    FAULT_ENV, MeasuredExecutor, cell_job, fault_point, lost_cell, lost_prepare, peak_rss_mb, prepare_job, score,
)
from .mixing import SNR_DEFINITION
from .plan import cell_key, fit_cached, plan, prepared, unstored
from .plugins import registry_for
from .progress import run_bar
from .protocols import CLEAN_NOISE, Cell, Condition, members
from .provenance import code_version, environment, noise_clips_used
from .registry import Registry

__all__ = [  # the public names of the runner before its split (other code and plugins import them from here)
    "AUDIT_CHUNK", "AUDIT_VERSION", "CHUNK", "FAULT_ENV", "FIT_FORMAT", "Context", "RunSummary", "audit",
    "audit_job", "bad_audio_error", "cell_job", "cell_key", "describe_conversion", "fit_key", "per_cell_seed",
    "plan", "prepare_job", "registry_for", "remote_config", "run", "score", "wav_truncation", "worker_context",
]


@dataclass
class RunSummary:
    run_id: int | None
    n_cells: int
    n_skipped: int
    n_done: int
    n_failed: int
    wall_s: float
    failures: list[str] = field(default_factory=list)
    #: peak resident memory (MB) of the driver process, and of the busiest worker (stored with the run)
    peak_rss_mb: float | None = None
    workers_peak_rss_mb: float | None = None


def run(
    config: RunConfig,
    *,
    store: Store,
    registry: Registry | None = None,
    executor: str | Executor = "process",
    jobs: int | None = None,
    scheduler: str | None = None,
    extra_plugins: Sequence[str] = (),
    cache_dir: str | None = None,
    progress: bool = True,
    echo: Callable[[str], None] = lambda s: None,
) -> RunSummary:
    """Run (or resume) every cell of ``config`` and store the results.

    Args:
        executor: "process" (a local pool of ``jobs`` workers; ``jobs=1``: in-process),
            "inline", "dask" (``scheduler`` address or a LocalCluster of ``jobs`` workers), or
            an executor object (see :mod:`ser_bench.executors`), which the run closes.
        registry: a custom registry (tests); it cannot travel to worker processes, so the run
            goes inline. ``extra_plugins`` ("module:attribute" plugin objects added to the default
            registry) can: workers rebuild the same registry from them.
    """
    if isinstance(executor, str):
        if executor == "process" and registry is not None and (jobs or usable_cores()) > 1:
            executor = "inline"  # a custom (test) registry cannot be rebuilt in worker processes
        ex = make_executor(executor, jobs, scheduler=scheduler)
    else:
        ex = executor
    restore: list[Callable[[], None]] = []
    try:
        return _run(config, store=store, registry=registry or registry_for(extra_plugins), ex=ex,
                    extra_plugins=list(extra_plugins), cache_dir=cache_dir, progress=progress, echo=echo,
                    restore=restore)
    finally:
        for undo in restore:
            undo()
        ex.close()


def _run(config: RunConfig, *, store: Store, registry: Registry, ex: Executor, extra_plugins: list[str],
         cache_dir: str | None, progress: bool, echo: Callable[[str], None],
         restore: list[Callable[[], None]]) -> RunSummary:
    t_start = time.perf_counter()
    ctx, folds, cells = plan(config, registry)
    ctx.cache = Cache(cache_dir)
    inline = isinstance(ex, InlineExecutor)
    if inline:  # after plan(): the plugins (and torch, if they use it) are loaded
        restore.append(one_thread())
    remote = getattr(ex, "name", "") == "dask"  # workers elsewhere: relative paths must not travel
    ex = measured = MeasuredExecutor(ex)  # every job reports its process's peak RSS
    cell_measured = measured

    def rss() -> tuple[float, float]:  # peak MB of the driver and of the busiest worker
        return round(peak_rss_mb(), 1), round(max(measured.workers_peak_mb, cell_measured.workers_peak_mb), 1)
    base = {"config": remote_config(config, registry) if remote else config.model_dump_json(),
            "cache_dir": str(ctx.cache.root.resolve()),
            "ctx": ctx if inline else None, "extra_plugins": extra_plugins, "exclude": None}
    # ---- stage 0: audit the clean audio; bad inputs (the audit's and the loaders') fail the run
    # together, in one error, or are left out and recorded
    notes = audit_all(ctx, ex, base, progress)
    failing, skipped = bad_inputs(ctx, notes)
    if failing:
        raise bad_audio_error(failing)
    bad = [n for n in notes if n["kind"] == "skipped"]  # audited utterances to leave out
    if bad:
        exclude = {ds: sorted(n["utterance_id"] for n in bad if n["dataset"] == ds) for ds in config.datasets}
        ctx, folds, cells = plan(config, registry, exclude=exclude)
        ctx.cache = Cache(cache_dir)
        base.update(ctx=ctx if inline else None, exclude=exclude)
    notes = [n for n in notes if n["kind"] != "skipped"] + skipped
    if skipped:
        why = "on_bad_audio = skip" if config.on_bad_audio == "skip" else "the dataset's on_bad_entry = skip"
        echo(f"skipping {len(skipped)} bad utterance(s) ({why}); `bench runs show` lists them")
    fold_by = {(ds, f.name): f for ds, fs in folds.items() for f in fs}
    idents = {}
    for kind, names in (("dataset", config.datasets), ("ser_model", config.ser_models),
                        ("enhancer", config.enhancers), ("noise_source", config.noise_sources)):
        for n in names:
            idents[n] = stable_hash(ctx.identity(kind, n))
    idents.update(corruptions.run_identities(ctx))
    keys = [cell_key(c, config, idents, fold_by[(c.dataset, c.fold)]) for c in cells]
    qcells = []  # quality cells (config.quality): PESQ, STOI, SI-SDR, prosody fidelity per condition
    if config.quality:
        from .quality_runner import quality_cells, quality_key

        qcells = [(q, quality_key(q, config, idents)) for q in quality_cells(config)]
    run_keys = keys + [k for _, k in qcells]  # the run's cells, whichever run stored them
    existing = store.existing(run_keys)
    failed_before = [k for k, st in existing.items() if st == "failed"]
    store.delete_cells(failed_before)  # failed cells are retried
    todo = [(c, k) for c, k in zip(cells, keys) if existing.get(k) != "done"]
    qtodo = [(q, k) for q, k in qcells if existing.get(k) != "done"]
    n_all = len(cells) + len(qcells)
    n_skipped = n_all - len(todo) - len(qtodo)
    plugins_used = {f"{e.kind}:{e.name}": f"{e.dist} {e.dist_version}" for e in registry.entries()
                    if e.name in set(config.datasets + config.ser_models + config.enhancers + config.noise_sources)}
    env = environment()
    mixed = sorted({c.noise for c in cells if c.noise != CLEAN_NOISE} | (set(config.noise_sources) if qcells else set()))
    if mixed:  # provenance: the clips each noise source hands out for mixing
        env["noise_clips"] = noise_clips_used({n: ctx.plugin("noise_source", n) for n in mixed})
    run_id = store.start_run(
        config_json=config.to_json(), config_hash=config.config_hash(), protocol=config.protocol, name=config.name,
        code_version=code_version(), plugins=plugins_used, env=env, seed=config.seed,
        snr_definition=SNR_DEFINITION, n_cells=n_all,
    )
    store.record_utterance_notes(run_id, notes)
    echo(f"run {run_id}: {n_all} cells, {n_skipped} already stored, {len(todo) + len(qtodo)} to compute")
    if not todo and not qtodo:
        store.finish_run(run_id, "done", wall_s=time.perf_counter() - t_start, keys=run_keys, rss=rss())
        return RunSummary(run_id, n_all, n_skipped, 0, 0, time.perf_counter() - t_start, [], *rss())

    n_done = n_failed = 0
    failures: list[str] = []
    try:
        # ---- stage 1: audio + features per condition, shared by all cells that need them; only
        # the utterances some pending cell reads (a test condition: its folds' test utterances)
        needed: OrderedDict[tuple[str, Condition], tuple[dict, dict]] = OrderedDict()
        for c, _ in todo:
            f = fold_by[(c.dataset, c.fold)]
            for cond, ids in [*((m, f.train + f.valid) for m in members(c.train)), (c.test, f.test)]:
                models, want = needed.setdefault((c.dataset, cond), ({}, {}))
                models[c.ser_model] = None
                want.update(dict.fromkeys(ids))
        prep = []
        for (ds, cond), (models, want) in needed.items():
            ids = [u for u in ctx.utterances(ds) if u in want]  # dataset order
            prep += [dict(base, dataset=ds, models=list(models), cond=cond.__dict__, ids=ids[i : i + CHUNK])
                     for i in range(0, len(ids), CHUNK)]
        prep = [job for job in prep if not prepared(ctx, job)]  # a warm cache needs no worker for this
        prep_errors: dict[tuple, str] = {}
        bar = run_bar(progress, sum(len(p["ids"]) for p in prep), "audio+features")
        for job, res in ex.map_unordered(prepare_job, prep, lost=lost_prepare):
            if not res["ok"]:
                for m in job["models"]:
                    prep_errors.setdefault((job["dataset"], m, Condition(**job["cond"])), res["error"])
            bar.update(res["n"])
        bar.close()
        corruptions.record_draws(store, run_id, ctx, needed)  # what each corruption drew, per utterance
        # ---- stage 2: cells, grouped by fit (dataset, SER model, training condition, fold): one fit each
        bar = run_bar(progress, len(todo), "cells")
        groups: OrderedDict[tuple, list[tuple[Cell, str, int]]] = OrderedDict()
        for c, k in todo:
            err = next(filter(None, (prep_errors.get((c.dataset, c.ser_model, m)) for m in (*members(c.train), c.test))),
                       None)
            seed = int(np.random.SeedSequence([config.seed, int(k[:12], 16)]).generate_state(1)[0])
            if err:
                failures.append(f"{c.test.label()} [{c.fold}]: {err}")
                store.record_cell(run_id, k, c.coords(), status="failed", seed=seed, error=err,
                                  traceback="preparation (mixing/enhancing/featurizing) failed: " + err)
                n_failed += 1
                bar.update(1)
                continue
            # models that take the runner's per-cell seed cannot share a fit
            gkey = (c.dataset, c.ser_model, c.train, c.fold) + ((k,) if per_cell_seed(registry, c.ser_model) else ())
            groups.setdefault(gkey, []).append((c, k, seed))
        cell_jobs = unstored(store, base, fold_by, groups)
        cell_ex = ex
        if not prep and cell_jobs and all(fit_cached(ctx, registry, j) for j in cell_jobs):
            # nothing left but reading cached features and fits, and predicting: starting worker
            # processes (each importing the plugins' libraries) would cost more than the work
            cell_ex = cell_measured = MeasuredExecutor(InlineExecutor())
            cell_jobs = [dict(j, ctx=ctx) for j in cell_jobs]
        for job, res in cell_ex.map_unordered(cell_job, cell_jobs, lost=lost_cell):
            for c, k, seed, r in zip(job["cells"], job["keys"], job["seeds"], res["results"]):
                store.record_cell(
                    run_id, k, c.coords(), status=r["status"], metrics=r.get("metrics"), seed=seed,
                    timings=r.get("timings"), n_train=r.get("n_train", 0), n_test=r.get("n_test", 0),
                    info=r.get("info"), predictions=r.get("predictions"), error=r.get("error"),
                    traceback=r.get("traceback"),
                )
                fault_point(n_done + n_failed + 1)
                if r["status"] == "done":
                    n_done += 1
                else:
                    n_failed += 1
                    failures.append(f"{c.ser_model} {c.train.label()} -> {c.test.label()} [{c.fold}]: {r['error']}")
                bar.update(1)
        bar.close()
        # ---- stage 3 (config.quality): quality / emotion-preservation cells, from the cached audio
        if qtodo:
            from .quality_runner import run_quality

            qd, qf, qfail = run_quality(qtodo, ctx=ctx, ex=ex, base=base, store=store, run_id=run_id,
                                        progress=progress, echo=echo)
            n_done, n_failed, failures = n_done + qd, n_failed + qf, failures + qfail
    except BaseException as exc:
        store.finish_run(run_id, "interrupted", wall_s=time.perf_counter() - t_start,
                         error=f"{type(exc).__name__}: {exc}", keys=run_keys, rss=rss())
        raise
    finally:
        ex.close()
    wall = time.perf_counter() - t_start
    store.finish_run(run_id, "done" if not n_failed else "failed", wall_s=wall, keys=run_keys, rss=rss(),
                     error=None if not n_failed else f"{n_failed} cell(s) failed; see `bench runs show {run_id}`")
    return RunSummary(run_id, n_all, n_skipped, n_done, n_failed, wall, failures, *rss())

