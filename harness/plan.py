"""Planning a run: its cells and their keys, and what of their work is already stored.

:func:`plan` validates the run's plugins and options, builds the folds and enumerates the cells;
:func:`cell_key` names a cell's result by everything that determines its numbers (the results
database's resume key). The other helpers tell the driver which preparation and cell jobs a
warm cache or another process has made unnecessary.
"""
from __future__ import annotations

from collections.abc import Sequence

from . import corruptions
from .artefacts import ENHANCED_FORMAT, Context, fit_key, per_cell_seed
from .config import RunConfig
from .db import Store
from .errors import BenchError
from .interfaces import stable_hash
from .mixing import MIXING_VERSION
from .protocols import CLEAN_NOISE, Cell, Condition, Fold, enumerate_cells, make_folds, members
from .registry import Registry


def cell_key(cell: Cell, config: RunConfig, ids: dict[str, str], fold: Fold) -> str:
    """Identity of a cell's result: coordinates + everything that determines the numbers."""
    used = [cell.dataset, cell.ser_model] + ([cell.noise] if cell.noise != CLEAN_NOISE else [])
    if "enhanced" in (cell.train.kind, cell.test.kind):
        used.append(cell.enhancer)
    reads_enhanced = "enhanced" in (cell.test.kind, *(m.kind for m in members(cell.train)))
    return stable_hash({
        "cell": cell.as_dict(), "plugins": {n: ids[n] for n in used}, "seed": config.seed,
        "mixing": MIXING_VERSION, "fold": stable_hash([fold.train, fold.valid, fold.test]),
        **corruptions.cell_key_parts(cell, ids), **({"enhanced_format": ENHANCED_FORMAT} if reads_enhanced else {}),
    }, n=32)


def plan(config: RunConfig, registry: Registry,
         exclude: dict[str, Sequence[str]] | None = None) -> tuple[Context, dict[str, list[Fold]], list[Cell]]:
    """Validate names, build folds and enumerate cells (used by --dry-run too).

    ``exclude``: dataset -> utterance ids to leave out of every fold (bad utterances skipped).
    """
    registry.check("dataset", config.datasets)
    registry.check("ser_model", config.ser_models)
    registry.check("enhancer", config.enhancers)
    registry.check("noise_source", config.noise_sources)
    corruptions.check(config, registry)
    ctx = Context(config, registry, None, exclude=exclude)
    folds = {}
    for ds in config.datasets:
        dset = ctx.plugin("dataset", ds)
        for m in config.ser_models:
            model_cls = registry.get("ser_model", m)
            if model_cls.task != dset.task:
                raise BenchError(f"SER model {m!r} is for {model_cls.task} but dataset {ds!r} has {dset.task} labels")
        folds[ds] = make_folds(list(ctx.utterances(ds).values()), config.cv, ds, dset.has_partitions,
                               [o for o in type(dset).Config.model_fields if "speaker" in o],
                               k=config.cv_folds)
    for kind, names in (("ser_model", config.ser_models), ("enhancer", config.enhancers),
                        ("noise_source", config.noise_sources)):
        for n in names:  # validates every plugin's options (and training state) before any work starts
            ctx.plugin(kind, n)
    for n in config.enhancers:  # an enhancer calibrated on speech of a corpus under test saw its test speakers
        if clash := sorted(set(ctx.plugin("enhancer", n).calibration_corpora()) & set(config.datasets)):
            raise BenchError(f"enhancer {n!r} is calibrated on {', '.join(clash)}, a dataset of this run, so it "
                             f"would have seen its test speakers; calibrate it on another corpus (e.g. -o "
                             f"{n}.emotion_corpus=OTHER -o {n}.emotion_root=PATH) or leave {', '.join(clash)} out")
    unused = set(config.options) - set(config.datasets + config.ser_models + config.enhancers + config.noise_sources
                                       + corruptions.names(config))
    if unused:
        raise BenchError(f"options given for plugins that this run does not use: {', '.join(sorted(unused))}; "
                         "check the names (`bench plugins`) or add them to the run")
    return ctx, folds, enumerate_cells(config, folds)



def prepared(ctx: Context, job: dict) -> bool:
    """Whether everything a preparation job would make is in the cache already (or would not be
    kept: the audio of a model fitted on audio, where the cache policy drops it, is made by the
    cell job that reads it)."""
    cond = Condition(**job["cond"])
    utts = ctx.utterances(job["dataset"])
    for m in job["models"]:
        cached = ctx.plugin("ser_model", m).cache_features
        if not cached and (cond.kind == "clean" or not ctx.keeps_audio(cond.kind)):
            continue
        for uid in job["ids"]:
            if cached:
                if not ctx.cache.path("features", ctx.feature_key(utts[uid], cond, m)).exists():
                    return False
            elif not ctx.has_audio(ctx._audio_key(utts[uid], cond)):
                return False
    return True


def fit_cached(ctx: Context, registry: Registry, job: dict) -> bool:
    """Whether the fit a cell job needs is in the fit cache."""
    c0 = job["cells"][0]
    if per_cell_seed(registry, c0.ser_model) or not getattr(ctx.plugin("ser_model", c0.ser_model), "cache_fits", True):
        return False
    return ctx.cache.object_path("fits", fit_key(ctx, c0, job["fold"], None)).exists()



def unstored(store: Store, base: dict, fold_by: dict, groups: dict[tuple, list[tuple[Cell, str, int]]]) -> list[dict]:
    """Cell jobs (one per fit group), dropping cells another process stored meanwhile (two runs of
    one config share the work)."""
    have = store.existing(k for members in groups.values() for _, k, _ in members)
    jobs = []
    for members in groups.values():
        left = [m for m in members if have.get(m[1]) != "done"]
        if left:
            c0 = left[0][0]
            jobs.append(dict(base, cells=[m[0] for m in left], keys=[m[1] for m in left], seeds=[m[2] for m in left],
                             fold=fold_by[(c0.dataset, c0.fold)]))
    return jobs


