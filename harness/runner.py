"""The protocol runner.

1. Resolve plugins, list utterances, build folds, enumerate cells, drop the cells already
   stored (resume / re-run), and retry failed ones.
2. *Prepare*: for every (dataset, SER model feature key, condition) needed by a pending cell,
   make the audio (mix, enhance) and the features of every utterance, in parallel chunks, each
   artefact cached on disk by content key, so shared steps run once for all cells and folds.
3. *Cells*: fit on the train fold, predict the test fold, score; each cell's result streams back
   to the driver, which commits it in its own transaction. A plugin error fails that cell
   (stored with its traceback), not the run.
"""
from __future__ import annotations

import importlib
import json
import os
import threading
import time
import traceback as tb
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .cache import Cache
from .config import RunConfig
from . import corruptions
from .db import Store
from .audio import SILENCE_PEAK, is_silent
from .bad_entries import BadEntry, collecting
from .errors import AudioError, BenchError, PluginError
from .executors import Executor, InlineExecutor, make_executor, one_thread, usable_cores
from .interfaces import Enhancer, FeatureSet, TimeSeries, Utterance, stable_hash
from .metrics import accuracy, ccc, uar
from .mixing import MIXING_VERSION, SNR_DEFINITION, mix
from .protocols import CLEAN_NOISE, Cell, Condition, Fold, enumerate_cells, make_folds
from .provenance import code_version, environment, noise_clips_used
from .registry import Registry

CHUNK = 16  # utterances per preparation job
AUDIT_CHUNK = 64  # utterances per audit job
AUDIT_VERSION = "1"  # bump when what the audit checks changes


# ----------------------------------------------------------------------------- worker side


class Context:
    """Per-process state: registry, cache and plugin instances (created once per process)."""

    def __init__(self, config: RunConfig, registry: Registry, cache_dir: str | None,
                 exclude: dict[str, Sequence[str]] | None = None) -> None:
        self.config = config
        self.registry = registry
        self.cache = Cache(cache_dir)
        #: dataset -> ids of bad utterances left out (``on_bad_audio = "skip"``)
        self.exclude = {ds: frozenset(ids) for ds, ids in (exclude or {}).items()}
        self._plugins: dict[tuple[str, str], Any] = {}
        self._idents: dict[tuple[str, str], Any] = {}
        self._utts: dict[str, dict[str, Utterance]] = {}
        #: dataset -> entries its loader could not use (the run's bad-audio policy decides)
        self.bad_entries: dict[str, list[BadEntry]] = {}
        self._feats: OrderedDict[tuple, list[np.ndarray]] = OrderedDict()

    def plugin(self, kind: str, name: str) -> Any:
        key = (kind, name)
        if key not in self._plugins:
            obj = self.registry.create(kind, name, self.config.plugin_options(name))
            if kind == "enhancer" and not obj.is_trained():
                raise PluginError(
                    f"enhancer {name!r} needs training first: run `bench train {name} ...` or give a "
                    f"checkpoint with --option {name}.checkpoint=PATH"
                )
            self._plugins[key] = obj
        return self._plugins[key]

    def utterances(self, dataset: str) -> dict[str, Utterance]:
        """The dataset's usable utterances by id (bad ones left out under ``on_bad_audio = "skip"``).

        The entries its loader could not use are kept in :attr:`bad_entries`: the run's policy
        decides about them (see :mod:`ser_bench.bad_entries`), not the loader.
        """
        if dataset not in self._utts:
            drop = self.exclude.get(dataset, frozenset())
            with collecting() as found:
                try:
                    utts = self.plugin("dataset", dataset).utterances()
                except PluginError as exc:
                    if not found:
                        raise
                    raise bad_audio_error([e.note() for e in found],
                                          head=f"{exc}: every entry is bad") from None
            self.bad_entries[dataset] = list(found)
            self._utts[dataset] = {u.id: u for u in utts if u.id not in drop}
        return self._utts[dataset]

    def audit(self, utt: Utterance) -> tuple[str, str]:
        """``(problem, conversion)`` of an utterance's clean audio ("" when none).

        A problem makes the utterance bad: missing / unreadable / empty / truncated file,
        zero-length audio, NaN or inf samples (all raised by the loader, naming the file), or
        silent speech. A conversion is documented handling: a stereo file downmixed, another
        sample rate resampled. Clean results are cached by content key; problems are re-checked
        on every run (the user may have fixed the file).
        """
        key = self.cache.key(["audit", AUDIT_VERSION, utt.content_key()])
        hit = self.cache.load("audit", key)
        if hit is not None and hit.shape == (2,):
            return str(hit[0]), str(hit[1])
        problem = conversion = ""
        where = str(utt.path or utt.id)
        try:
            if utt.loader is None and utt.path is not None:
                p = Path(utt.path)
                if p.is_file() and p.stat().st_size == 0:
                    raise AudioError(f"{p}: the file is empty (0 bytes); copy or export it again")
                problem = wav_truncation(p)
                conversion = describe_conversion(p)
            x = utt.load()  # raises AudioError for missing/corrupt/empty files and NaN/inf samples
            if not problem and is_silent(x):
                problem = (f"{where}: the speech is silent (peak below {SILENCE_PEAK:g}), so no SNR can be set and "
                           "its features mean nothing; remove or replace the recording")
        except BenchError as exc:
            problem = str(exc)
        except Exception as exc:  # a loader's own failure on this file
            problem = f"{where}: {type(exc).__name__}: {exc}"
        if not problem:
            self.cache.store("audit", key, np.array([problem, conversion]))
        return problem, conversion

    def identity(self, kind: str, name: str) -> Any:
        """A plugin's identity, computed once per process (it can hash a checkpoint or every noise clip)."""
        key = (kind, name)
        if key not in self._idents:
            self._idents[key] = self.plugin(kind, name).identity()
        return self._idents[key]

    def _noisy_parts(self, utt: Utterance, cond: Condition) -> list:
        """Cache-key parts of the mixture behind a noisy or enhanced condition."""
        if cond.corruption:  # a corruption chain: its own content key (ser_bench.corruptions)
            return corruptions.chain_parts(self, utt, cond.corruption)
        return ["noisy", MIXING_VERSION, utt.content_key(), cond.snr, self.config.seed,
                self.identity("noise_source", cond.noise)]

    # audio of one utterance under a condition -> (signal, content key)
    def audio(self, utt: Utterance, cond: Condition) -> tuple[np.ndarray, str]:
        clean_key = utt.content_key()
        if cond.kind == "clean":
            return utt.load(), "clean:" + clean_key
        parts = self._noisy_parts(utt, cond)

        def make_noisy() -> np.ndarray:
            if cond.corruption:  # the one hook of corruptions: the corrupted audio replaces the mixture
                return corruptions.corrupt(self, utt, cond.corruption)
            noise = self.plugin("noise_source", cond.noise)
            m = mix(utt.load(), noise.clips("test"), cond.snr, key=clean_key, seed=self.config.seed,
                    source=cond.noise, speech_name=str(utt.path or utt.id))
            return m.noisy

        noisy, nkey = self.cache.get_or_compute("audio", parts, make_noisy)
        if cond.kind == "noisy":
            return noisy, nkey
        enh = self.plugin("enhancer", cond.enhancer)
        ident = self.identity("enhancer", cond.enhancer)
        if enh.inner is None:
            make = lambda: self._enhance_keeping_snr(enh, ident, noisy, nkey)[0]  # noqa: E731
        else:  # a wrapper: its inner enhancer's output comes from (and goes to) the cache
            make = lambda: enh.enhance(noisy, lambda want_snr: self.inner_output(enh, cond.enhancer,  # noqa: E731
                                                                                  noisy, nkey, want_snr))
        return self.cache.get_or_compute("audio", ["enhanced", nkey, ident], make)

    def _snr_key(self, nkey: str, ident: Any) -> str:
        return self.cache.key(["enhancer-snr", nkey, ident])

    def _enhance_keeping_snr(self, enh: Enhancer, ident: Any, noisy: np.ndarray,
                             nkey: str) -> tuple[np.ndarray, float | None]:
        """Enhance; an enhancer's own SNR estimate, where it has one, is kept beside its audio (for
        ``guarded-*`` runs, which then never rerun it) and returned with it."""
        y, snr = enh.enhance_keeping_snr(noisy)
        if snr is not None:
            self.cache.store("audio", self._snr_key(nkey, ident), np.array([snr], np.float64))
        return y, snr

    def inner_output(self, wrapper: Enhancer, name: str, noisy: np.ndarray, nkey: str,
                     want_snr: bool) -> tuple[np.ndarray, float | None]:
        """A wrapper enhancer's inner output for the mixture ``nkey`` (cached under the inner
        enhancer's identity, so runs of the inner enhancer itself share it) and, if ``want_snr``,
        the mean of the inner enhancer's own SNR estimate (kept beside it)."""
        inner = wrapper.inner
        key = ("inner", name)
        if key not in self._idents:
            self._idents[key] = inner.identity()
        ident = self._idents[key]
        parts = ["enhanced", nkey, ident]
        stored = self.cache.load("audio", self._snr_key(nkey, ident)) if want_snr else None
        if want_snr and stored is None:  # (re)compute: audio cached without its estimate, or neither
            y, snr = self._enhance_keeping_snr(inner, ident, noisy, nkey)
            self.cache.store("audio", self.cache.key(parts), y)
            return y, snr
        y = self.cache.get_or_compute("audio", parts, lambda: self._enhance_keeping_snr(inner, ident, noisy, nkey)[0])[0]
        return y, (float(stored[0]) if stored is not None else None)

    def features(self, dataset: str, model_name: str, cond: Condition, ids: Sequence[str]) -> list[np.ndarray]:
        return self.prepare(dataset, [model_name], cond, ids)[model_name]

    def prepare(self, dataset: str, model_names: Sequence[str], cond: Condition,
                ids: Sequence[str]) -> dict[str, list[np.ndarray]]:
        """Features of ``ids`` under ``cond`` for several SER models: each utterance's audio is made
        (or read from the cache) at most once, then featurised by every model whose features are
        not cached yet."""
        models = {m: self.plugin("ser_model", m) for m in model_names}
        utts = self.utterances(dataset)
        out: dict[str, list[np.ndarray]] = {m: [] for m in model_names}
        for uid in ids:
            utt = utts[uid]
            audio = None
            for m, model in models.items():
                if not model.cache_features:
                    if audio is None:
                        audio = self.audio(utt, cond)[0]
                    out[m].append(audio)
                    continue
                # feature key first: a hit needs no audio at all
                fkey = self.feature_key(utt, cond, m)
                val = self.cache.load("features", fkey)
                if val is None:
                    if audio is None:
                        audio = self.audio(utt, cond)[0]
                    val = np.asarray(model.featurize(audio))
                    self.cache.store("features", fkey, val)
                out[m].append(val)
        return out

    def feature_key(self, utt: Utterance, cond: Condition, model_name: str) -> str:
        model = self.plugin("ser_model", model_name)
        key = (model_name, "fk")
        if key not in self._idents:
            self._idents[key] = model.feature_key()
        return self.cache.key(["feat", self._audio_key(utt, cond), self._idents[key]])

    def data_key(self, utt: Utterance, cond: Condition, model_name: str) -> str:
        """Content key of what ``model_name`` is fitted on for ``utt`` (its features, or its audio)."""
        if self.plugin("ser_model", model_name).cache_features:
            return self.feature_key(utt, cond, model_name)
        return self._audio_key(utt, cond)

    def _audio_key(self, utt: Utterance, cond: Condition) -> str:
        if cond.kind == "clean":
            return "clean:" + utt.content_key()
        nkey = self.cache.key(self._noisy_parts(utt, cond))
        if cond.kind == "noisy":
            return nkey
        return self.cache.key(["enhanced", nkey, self.identity("enhancer", cond.enhancer)])

    def condition_features(self, dataset: str, model_name: str, cond: Condition,
                           ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Features of ``ids`` under ``cond`` (kept in a small per-process LRU, which grows as
        cells ask for more utterances of the same condition)."""
        key = (dataset, model_name, cond)
        have = self._feats.get(key)
        if have is None:
            have = self._feats[key] = {}
        self._feats.move_to_end(key)
        missing = [i for i in dict.fromkeys(ids) if i not in have]
        if missing:
            have.update(zip(missing, self.features(dataset, model_name, cond, missing)))
        while len(self._feats) > 8:
            self._feats.popitem(last=False)
        return have


_LOCAL = threading.local()  # one context per worker thread (Dask workers may run several threads)
_REGISTRIES: dict[tuple[str, ...], Registry] = {}


def registry_for(extra_plugins: Sequence[str] = ()) -> Registry:
    """The default registry, or one with extra plugin objects given as ``"module:attribute"``.

    Workers rebuild the driver's registry from these strings (a registry object itself cannot
    travel to another process); an attribute that is a class is instantiated.
    """
    extra = tuple(extra_plugins or ())
    if not extra:
        from .plugins import default_registry

        return default_registry()
    if extra not in _REGISTRIES:
        from .plugins import build_registry, make_plugin_manager

        objs = []
        for spec in extra:
            mod, colon, attr = spec.partition(":")
            if not colon or not mod or not attr:
                raise PluginError(f"extra plugin {spec!r} must look like 'module:attribute'")
            obj = getattr(importlib.import_module(mod), attr)
            objs.append(obj() if isinstance(obj, type) else obj)
        _REGISTRIES[extra] = build_registry(make_plugin_manager(extra=objs))
    return _REGISTRIES[extra]


def remote_config(config: RunConfig, registry: Registry) -> str:
    """The run config as JSON for workers that do not share this process's working directory (a
    Dask cluster's): every relative path option (a ``Path`` field of the plugin's Config, such as
    ``--data-root`` or ``folder.root``) made absolute from here, where the user meant it."""
    kinds = {n: k for k, names in (("dataset", config.datasets), ("ser_model", config.ser_models),
                                   ("enhancer", config.enhancers), ("noise_source", config.noise_sources))
             for n in names}
    options = {}
    for name, opts in config.options.items():
        fields = registry.get(kinds[name], name).Config.model_fields if name in kinds else {}
        options[name] = {
            k: os.path.abspath(os.path.expanduser(v))
            if k in fields and isinstance(v, str) and "Path" in str(fields[k].annotation) else v
            for k, v in opts.items()
        }
    return config.model_copy(update={"options": options}).model_dump_json()


def _context(payload: dict) -> Context:
    """The worker's context: built once per process (thread) and kept while the run is the same."""
    if payload.get("ctx") is not None:  # inline executor: the driver's context
        return payload["ctx"]
    key = (payload["config"], payload["cache_dir"], tuple(payload.get("extra_plugins") or ()),
           json.dumps(payload.get("exclude"), sort_keys=True))
    ctx = getattr(_LOCAL, "ctx", None)
    if ctx is None or _LOCAL.key != key:
        cfg = RunConfig(**json.loads(payload["config"]))
        ctx = Context(cfg, registry_for(key[2]), payload["cache_dir"], exclude=payload.get("exclude"))
        _LOCAL.ctx, _LOCAL.key = ctx, key
    return ctx


def wav_truncation(path: object) -> str:
    """For a RIFF/WAVE file whose data chunk is shorter than its header declares (an interrupted
    copy or download; decoders silently return the part that is there): a description; else ""."""
    import struct

    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return ""
            size = os.fstat(fh.fileno()).st_size
            pos = 12
            while pos + 8 <= size:
                fh.seek(pos)
                cid, clen = struct.unpack("<4sI", fh.read(8))
                if cid == b"data":
                    have = size - pos - 8
                    if clen not in (0, 0xFFFFFFFF) and clen > have:  # 0 / -1: streaming writers
                        return (f"{path}: truncated: the header declares {clen} bytes of audio, the file holds "
                                f"{have}; copy or export the file again")
                    return ""
                pos += 8 + clen + (clen & 1)
    except OSError:
        return ""
    return ""


def describe_conversion(path: object) -> str:
    """What loading ``path`` converts (from its header): a downmix, a resampling; "" if nothing."""
    from .audio import audio_info
    from .interfaces import SAMPLE_RATE

    try:
        info = audio_info(path)
    except AudioError:  # unreadable: the load that follows reports it
        return ""
    done = []
    if info.channels > 1:
        done.append(f"{info.channels} channels downmixed to mono (mean)")
    if info.samplerate != SAMPLE_RATE:
        done.append(f"resampled {info.samplerate} Hz -> {SAMPLE_RATE} Hz (soxr, very high quality)")
    return "; ".join(done)


def audit_job(payload: dict) -> dict:
    """Check the clean audio of a chunk of utterances: ``{"n", "notes": [[id, path, problem, conversion]]}``."""
    ctx = _context(payload)
    utts = ctx.utterances(payload["dataset"])
    notes = []
    for uid in payload["ids"]:
        utt = utts[uid]
        problem, conversion = ctx.audit(utt)
        if problem or conversion:
            notes.append([uid, str(utt.path) if utt.path is not None else None, problem, conversion])
    return {"n": len(payload["ids"]), "notes": notes}


def prepare_job(payload: dict) -> dict:
    """Make audio + features for a chunk of utterances under one condition, for every SER model
    of ``payload["models"]`` (the audio is made once and featurised by each)."""
    ctx = _context(payload)
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


#: Bump when what a cached fit holds, or how its key is made, changes.
FIT_FORMAT = "1"


def _label_digest(y: Any) -> str:
    if isinstance(y, TimeSeries):
        return stable_hash([np.asarray(y.values, dtype=np.float64).tobytes().hex(), y.hop_s])
    return repr(y)


def _library_versions() -> dict[str, str]:
    """Versions of the libraries a pickled fit may hold objects of (a fit made by another version is refitted)."""
    from importlib import metadata

    out = {}
    for dist in ("numpy", "scikit-learn", "torch"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


_LIBS: dict[str, str] | None = None


def fit_key(ctx: Context, cell: Cell, fold: Fold, seed: int | None) -> str:
    """Identity of a fitted SER model: the model's name, version and options, the library versions,
    the seed (only for models that take the runner's per-cell seed), and a digest of the training
    and validation data: every utterance's id, content key of what the model sees (features or
    audio, which include the condition, mixing, enhancer and feature extractor), label and speaker."""
    global _LIBS
    if _LIBS is None:
        _LIBS = _library_versions()
    utts = ctx.utterances(cell.dataset)

    def digest(ids: tuple[str, ...]) -> str:
        return stable_hash([[i, ctx.data_key(utts[i], cell.train, cell.ser_model), _label_digest(utts[i].label),
                             utts[i].speaker] for i in ids], n=32)

    return ctx.cache.key(["fit", FIT_FORMAT, ctx.identity("ser_model", cell.ser_model), _LIBS, seed,
                          digest(fold.train), digest(fold.valid) if fold.valid else None])


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
        ctx.cache.store_object("fits", key, model)
    return model, False


def cell_job(payload: dict) -> dict:
    """Fit once, then predict and score each cell of ``payload["cells"]`` (cells sharing dataset,
    SER model, training condition and fold). Never raises: each cell's failure comes back with its
    traceback. Returns ``{"results": [one result per cell]}``."""
    ctx = _context(payload)
    fold: Fold = payload["fold"]
    cells: list[Cell] = payload["cells"]
    first = cells[0]
    utts = ctx.utterances(first.dataset)
    results: list[dict[str, Any]] = []
    model = None
    fit_out: dict[str, Any] = {}
    try:
        t0 = time.perf_counter()
        train_f = ctx.condition_features(first.dataset, first.ser_model, first.train, fold.train + fold.valid)
        train = _featureset(train_f, utts, fold.train)
        valid = _featureset(train_f, utts, fold.valid) if fold.valid else None
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


# ----------------------------------------------------------------------------- driver side


@dataclass
class RunSummary:
    run_id: int | None
    n_cells: int
    n_skipped: int
    n_done: int
    n_failed: int
    wall_s: float
    failures: list[str] = field(default_factory=list)


def cell_key(cell: Cell, config: RunConfig, ids: dict[str, str], fold: Fold) -> str:
    """Identity of a cell's result: coordinates + everything that determines the numbers."""
    used = [cell.dataset, cell.ser_model] + ([cell.noise] if cell.noise != CLEAN_NOISE else [])
    if "enhanced" in (cell.train.kind, cell.test.kind):
        used.append(cell.enhancer)
    return stable_hash({
        "cell": cell.as_dict(), "plugins": {n: ids[n] for n in used}, "seed": config.seed,
        "mixing": MIXING_VERSION, "fold": stable_hash([fold.train, fold.valid, fold.test]),
        **corruptions.cell_key_parts(cell, ids),
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
    unused = set(config.options) - set(config.datasets + config.ser_models + config.enhancers + config.noise_sources
                                       + corruptions.names(config))
    if unused:
        raise BenchError(f"options given for plugins that this run does not use: {', '.join(sorted(unused))}; "
                         "check the names (`bench plugins`) or add them to the run")
    return ctx, folds, enumerate_cells(config, folds)


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


def _audit(ctx: Context, ex: Executor, base: dict, progress: bool) -> list[dict[str, Any]]:
    """Audit every utterance's clean audio (cache hits in the driver, the rest on ``ex``).

    Returns notes ``{dataset, utterance_id, path, kind: "skipped" | "converted", detail}``.
    """
    notes: list[dict[str, Any]] = []
    jobs = []
    for ds in ctx.config.datasets:
        missing = []
        for uid, utt in ctx.utterances(ds).items():
            hit = ctx.cache.load("audit", ctx.cache.key(["audit", AUDIT_VERSION, utt.content_key()]))
            if hit is not None and hit.shape == (2,):
                if str(hit[1]):
                    notes.append(dict(dataset=ds, utterance_id=uid, path=str(utt.path) if utt.path is not None else None,
                                      kind="converted", detail=str(hit[1])))
            else:
                missing.append(uid)
        jobs += [dict(base, dataset=ds, ids=missing[i : i + AUDIT_CHUNK]) for i in range(0, len(missing), AUDIT_CHUNK)]
    bar = _bar(progress, sum(len(j["ids"]) for j in jobs), "audit")
    lost: list[dict] = []
    for round_ in (1, 2):  # round 2: the utterances of chunks whose worker died, one job each
        for job, res in ex.map_unordered(audit_job, jobs, lost=lambda job, msg: {"lost": msg}):
            if "lost" in res:
                if round_ == 1:
                    lost.append(job)
                    continue
                utt = ctx.utterances(job["dataset"])[job["ids"][0]]
                res = {"n": 1, "notes": [[utt.id, str(utt.path) if utt.path is not None else None,
                                          f"{utt.path or utt.id}: reading it killed the worker process ({res['lost']})",
                                          ""]]}
            for uid, path, problem, conversion in res["notes"]:
                if problem:
                    notes.append(dict(dataset=job["dataset"], utterance_id=uid, path=path, kind="skipped",
                                      detail=problem))
                if conversion:
                    notes.append(dict(dataset=job["dataset"], utterance_id=uid, path=path, kind="converted",
                                      detail=conversion))
            bar.update(res["n"])
        jobs = [dict(job, ids=[uid]) for job in lost for uid in job["ids"]]
        if not jobs:
            break
    bar.close()
    return sorted(notes, key=lambda n: (n["dataset"], n["utterance_id"], n["kind"]))


def bad_audio_error(bad: list[dict[str, Any]], limit: int = 200, head: str = "") -> AudioError:
    """The error of ``on_bad_audio = "fail"``: every bad utterance (up to ``limit``), each with its
    reason, and one line of fix advice."""
    lines = "\n".join(f"  - {n['dataset']}/{n['utterance_id']}: {n['detail']}" for n in bad[:limit])
    more = f"\n  ... and {len(bad) - limit} more" if len(bad) > limit else ""
    head = head or (f"{len(bad)} bad utterance{'s' if len(bad) != 1 else ''}; the run stopped before computing "
                    "anything (stored results are untouched)")
    return AudioError(
        f"{head}:\n{lines}{more}\nFix or remove these files, or run with "
        "--on-bad-audio skip (suite: on_bad_audio = \"skip\") to leave them out of every fold; skipped "
        "utterances are recorded in the registry (`bench runs show RUN`)."
    )


def _bad_inputs(ctx: Context, notes: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The run's bad inputs under its policy: ``(failing, skipped)`` notes.

    Both the entries loaders could not use and the audit's findings count; an entry of a
    dataset whose own ``on_bad_entry`` is "skip" is skipped whatever the policy. Utterance ids
    are made unique per dataset (a note's key in the registry).
    """
    skip_all = ctx.config.on_bad_audio == "skip"
    failing, skipped = [], []
    taken: set[tuple[str, str]] = set()

    def place(note: dict[str, Any], skip: bool) -> None:
        key = (note["dataset"], note["utterance_id"])
        if key in taken:
            note = dict(note, utterance_id=f"{note['utterance_id']} ({len(taken)})")
        taken.add((note["dataset"], note["utterance_id"]))
        (skipped if skip or skip_all else failing).append(note)

    for ds in ctx.config.datasets:
        for entry in ctx.bad_entries.get(ds, []):
            place(entry.note(), entry.skip)
    for note in notes:
        if note["kind"] == "skipped":
            place(note, False)
    order = lambda n: (n["dataset"], n["utterance_id"])  # noqa: E731
    return sorted(failing, key=order), sorted(skipped, key=order)


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
    base = {"config": remote_config(config, registry) if remote else config.model_dump_json(),
            "cache_dir": str(ctx.cache.root.resolve()),
            "ctx": ctx if inline else None, "extra_plugins": extra_plugins, "exclude": None}
    # ---- stage 0: audit the clean audio; bad inputs (the audit's and the loaders') fail the run
    # together, in one error, or are left out and recorded
    notes = _audit(ctx, ex, base, progress)
    failing, skipped = _bad_inputs(ctx, notes)
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
        store.finish_run(run_id, "done", wall_s=time.perf_counter() - t_start, keys=run_keys)
        return RunSummary(run_id, n_all, n_skipped, 0, 0, time.perf_counter() - t_start)

    n_done = n_failed = 0
    failures: list[str] = []
    try:
        # ---- stage 1: audio + features per condition, shared by all cells that need them; only
        # the utterances some pending cell reads (a test condition: its folds' test utterances)
        needed: OrderedDict[tuple[str, Condition], tuple[dict, dict]] = OrderedDict()
        for c, _ in todo:
            f = fold_by[(c.dataset, c.fold)]
            for cond, ids in ((c.train, f.train + f.valid), (c.test, f.test)):
                models, want = needed.setdefault((c.dataset, cond), ({}, {}))
                models[c.ser_model] = None
                want.update(dict.fromkeys(ids))
        prep = []
        for (ds, cond), (models, want) in needed.items():
            ids = [u for u in ctx.utterances(ds) if u in want]  # dataset order
            prep += [dict(base, dataset=ds, models=list(models), cond=cond.__dict__, ids=ids[i : i + CHUNK])
                     for i in range(0, len(ids), CHUNK)]
        prep = [job for job in prep if not _prepared(ctx, job)]  # a warm cache needs no worker for this
        prep_errors: dict[tuple, str] = {}
        bar = _bar(progress, sum(len(p["ids"]) for p in prep), "audio+features")
        for job, res in ex.map_unordered(prepare_job, prep, lost=_lost_prepare):
            if not res["ok"]:
                for m in job["models"]:
                    prep_errors.setdefault((job["dataset"], m, Condition(**job["cond"])), res["error"])
            bar.update(res["n"])
        bar.close()
        corruptions.record_draws(store, run_id, ctx, needed)  # what each corruption drew, per utterance
        # ---- stage 2: cells, grouped by fit (dataset, SER model, training condition, fold): one fit each
        bar = _bar(progress, len(todo), "cells")
        groups: OrderedDict[tuple, list[tuple[Cell, str, int]]] = OrderedDict()
        for c, k in todo:
            err = prep_errors.get((c.dataset, c.ser_model, c.train)) or prep_errors.get((c.dataset, c.ser_model, c.test))
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
        cell_jobs = _unstored(store, base, fold_by, groups)
        cell_ex = ex
        if not prep and cell_jobs and all(_fit_cached(ctx, registry, j) for j in cell_jobs):
            # nothing left but reading cached features and fits, and predicting: starting worker
            # processes (each importing the plugins' libraries) would cost more than the work
            cell_ex = InlineExecutor()
            cell_jobs = [dict(j, ctx=ctx) for j in cell_jobs]
        for job, res in cell_ex.map_unordered(cell_job, cell_jobs, lost=_lost_cell):
            for c, k, seed, r in zip(job["cells"], job["keys"], job["seeds"], res["results"]):
                store.record_cell(
                    run_id, k, c.coords(), status=r["status"], metrics=r.get("metrics"), seed=seed,
                    timings=r.get("timings"), n_train=r.get("n_train", 0), n_test=r.get("n_test", 0),
                    info=r.get("info"), predictions=r.get("predictions"), error=r.get("error"),
                    traceback=r.get("traceback"),
                )
                _fault_point(n_done + n_failed + 1)
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
                         error=f"{type(exc).__name__}: {exc}", keys=run_keys)
        raise
    finally:
        ex.close()
    wall = time.perf_counter() - t_start
    store.finish_run(run_id, "done" if not n_failed else "failed", wall_s=wall, keys=run_keys,
                     error=None if not n_failed else f"{n_failed} cell(s) failed; see `bench runs show {run_id}`")
    return RunSummary(run_id, n_all, n_skipped, n_done, n_failed, wall, failures)


def _lost_prepare(job: dict, message: str) -> dict:
    return {"ok": False, "n": len(job["ids"]), "error": f"WorkerLost: {message}", "traceback": message}


def _lost_cell(job: dict, message: str) -> dict:
    return {"results": [{"status": "failed", "error": f"WorkerLost: {message}", "traceback": message, "timings": {}}
                        for _ in job["cells"]]}


def _prepared(ctx: Context, job: dict) -> bool:
    """Whether everything a preparation job would make is in the cache already."""
    cond = Condition(**job["cond"])
    utts = ctx.utterances(job["dataset"])
    for m in job["models"]:
        cached = ctx.plugin("ser_model", m).cache_features
        if not cached and cond.kind == "clean":
            continue
        for uid in job["ids"]:
            key = ctx.feature_key(utts[uid], cond, m) if cached else ctx._audio_key(utts[uid], cond)
            if not ctx.cache.path("features" if cached else "audio", key).exists():
                return False
    return True


def _fit_cached(ctx: Context, registry: Registry, job: dict) -> bool:
    """Whether the fit a cell job needs is in the fit cache."""
    c0 = job["cells"][0]
    if per_cell_seed(registry, c0.ser_model) or not getattr(ctx.plugin("ser_model", c0.ser_model), "cache_fits", True):
        return False
    return ctx.cache.object_path("fits", fit_key(ctx, c0, job["fold"], None)).exists()


def per_cell_seed(registry: Registry, model_name: str) -> bool:
    """Whether a SER model takes the runner's per-cell seed (an attribute ``seed_``)."""
    return hasattr(registry.get("ser_model", model_name), "seed_")


def _unstored(store: Store, base: dict, fold_by: dict, groups: dict[tuple, list[tuple[Cell, str, int]]]) -> list[dict]:
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


#: Crash-test hook (benchmarks/kill_resume.py): the driver SIGKILLs itself right after storing
#: this many cells, so kill points are exact whatever the machine's speed. Unset in normal use.
FAULT_ENV = "BENCH_FAULT_KILL_AFTER_CELLS"


def _fault_point(n_stored: int) -> None:
    target = os.environ.get(FAULT_ENV)
    if target and n_stored >= int(target):
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def _bar(enabled: bool, total: int, desc: str):  # noqa: ANN202
    from .progress import bar

    return bar(total=total, desc=desc, disable=not enabled, unit="it", leave=False, dynamic_ncols=True)
