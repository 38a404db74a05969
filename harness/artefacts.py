"""The artefact path of a run: clean audio -> mixture -> enhanced audio -> features, each cached
on disk by a content key, and the keys of what is fitted on them.

A :class:`Context` is one process's view of a run (its config, registry, cache and plugin
instances, created once per process); :func:`worker_context` gives a worker the context of the
run its job belongs to. :func:`fit_key` names a fitted SER model by everything it was fitted on.
Nothing here knows about cells, folds' scheduling or the results database.
"""
from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import corruptions
from .bad_entries import BadEntry, collecting
from .cache import Cache, pcm16
from .config import RunConfig
from .errors import PluginError, bad_audio_error
from .interfaces import Enhancer, TimeSeries, Utterance, stable_hash
from .mixing import MIXING_VERSION, mix
from .plugins import registry_for
from .protocols import Cell, Condition, Fold
from .registry import Registry

CHUNK = 16  # utterances per preparation job
#: bytes of features (or, for models fitted on audio, signals) a process keeps between cells
FEATURE_LRU_BYTES = 256 * 2**20

#: the cache policy (``config.keep_audio``, ``bench run --keep-audio``): which audio a run keeps.
#: Features, fitted models and predictions are always kept; clean audio is the user's own files.
KEPT_AUDIO = {"none": frozenset(), "enhanced": frozenset({"enhanced"}), "all": frozenset({"noisy", "enhanced"})}


#: Uncached utterances handed to a SER model's ``featurize_batch`` at once (a preparation job's size).
FEATURIZE_BATCH = 16

#: What an enhanced signal is measured as: 16-bit PCM (:func:`~ser_bench.cache.pcm16`), as a WAV
#: file holds it and as the cache keeps it. Enhancers such as DeepFilterNet put samples far below
#: one 16-bit step into pauses, and openSMILE's functionals read those (eGeMAPS values moved by up
#: to 1.3x |value| + 1 between the float output and its 16-bit copy): one format for every run
#: makes results independent of the cache policy, a cold run equal to a warm one, and a wrapper
#: at w = 1 equal to its inner enhancer. Part of the keys of everything computed from enhanced audio.
ENHANCED_FORMAT = "pcm16"


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

    # ---- audio: what the cache policy keeps (config.keep_audio) is read back, the rest remade
    def keeps_audio(self, kind: str) -> bool:
        """Whether the run's cache policy keeps audio of a condition kind ("noisy" mixtures,
        "enhanced" signals; clean audio is the user's own file and never copied)."""
        return kind in KEPT_AUDIO[self.config.keep_audio]

    def has_audio(self, key: str) -> bool:
        """Whether audio ``key`` is in the cache (as an exact float entry or a FLAC one)."""
        return self.cache.path("audio", key).exists() or self.cache.audio_path(key).exists()

    def _kept(self, kind: str, key: str, make: Callable[[], np.ndarray], about: tuple[str, str]) -> np.ndarray:
        """Audio ``key``: read back if kept, else made (and kept if the policy keeps ``kind``)."""
        val = self.cache.load_audio(key)
        if val is not None:
            self.cache.hits += 1
            return val
        self.cache.misses += 1
        val = np.asarray(make())
        if self.keeps_audio(kind):
            self.cache.store_audio(key, val, about)
        return val

    def mixture(self, utt: Utterance, cond: Condition) -> tuple[np.ndarray, str]:
        """The exact noisy mixture of ``utt`` under a noisy or enhanced ``cond``, and its key."""
        return self._mixture(utt, cond, exact=True)

    def _mixture(self, utt: Utterance, cond: Condition, exact: bool, dataset: str = "?") -> tuple[np.ndarray, str]:
        """The noisy mixture of ``utt`` under ``cond`` and its key; ``exact``: always remade
        (mixing is deterministic and cheap), never read from its 16-bit copy."""
        nkey = self.cache.key(self._noisy_parts(utt, cond))

        def make_noisy() -> np.ndarray:
            if cond.corruption:  # the one hook of corruptions: the corrupted audio replaces the mixture
                return corruptions.corrupt(self, utt, cond.corruption)
            noise = self.plugin("noise_source", cond.noise)
            m = mix(utt.load(), noise.clips("test"), cond.snr, key=utt.content_key(), seed=self.config.seed,
                    source=cond.noise, speech_name=str(utt.path or utt.id))
            return m.noisy

        if exact:
            exact_entry = self.cache.load("audio", nkey)  # an exact (float) entry, as older versions kept
            return (exact_entry if exact_entry is not None else make_noisy()), nkey
        return self._kept("noisy", nkey, make_noisy, (dataset, "none")), nkey

    # audio of one utterance under a condition -> (signal, content key)
    def audio(self, utt: Utterance, cond: Condition, dataset: str = "?") -> tuple[np.ndarray, str]:
        """The signal of ``utt`` under ``cond`` and its content key (``dataset``: for the index)."""
        if cond.kind == "clean":
            return utt.load(), "clean:" + utt.content_key()
        if cond.kind == "noisy":
            return self._mixture(utt, cond, exact=False, dataset=dataset)
        enh = self.plugin("enhancer", cond.enhancer)
        ident = self.identity("enhancer", cond.enhancer)
        ekey = self.cache.key(["enhanced", self.cache.key(self._noisy_parts(utt, cond)), ident])
        # an enhancer always sees the exact mixture, so its output does not depend on the policy

        def make() -> np.ndarray:
            noisy, nkey = self._mixture(utt, cond, exact=True)
            if enh.inner is None:
                return self._enhance_keeping_snr(enh, ident, noisy, nkey)[0]
            # a wrapper: its inner enhancer's output comes from (and goes to) the cache
            return pcm16(enh.enhance(noisy, lambda want_snr: self.inner_output(enh, cond.enhancer, noisy, nkey,
                                                                               want_snr, dataset)))

        return self._kept("enhanced", ekey, make, (dataset, cond.enhancer)), ekey

    def _snr_key(self, nkey: str, ident: Any) -> str:
        return self.cache.key(["enhancer-snr", nkey, ident])

    def _enhance_keeping_snr(self, enh: Enhancer, ident: Any, noisy: np.ndarray,
                             nkey: str) -> tuple[np.ndarray, float | None]:
        """Enhance; an enhancer's own SNR estimate, where it has one, is kept beside its audio (for
        ``guarded-*`` runs, which then never rerun it) and returned with it."""
        y, snr = enh.enhance_keeping_snr(noisy)
        y = pcm16(y)  # ENHANCED_FORMAT
        if snr is not None:
            self.cache.store("audio", self._snr_key(nkey, ident), np.array([snr], np.float64))
        return y, snr

    def inner_output(self, wrapper: Enhancer, name: str, noisy: np.ndarray, nkey: str,
                     want_snr: bool, dataset: str = "?") -> tuple[np.ndarray, float | None]:
        """A wrapper enhancer's inner output for the mixture ``nkey`` (cached under the inner
        enhancer's identity, so runs of the inner enhancer itself share it) and, if ``want_snr``,
        the mean of the inner enhancer's own SNR estimate (kept beside it)."""
        inner = wrapper.inner
        key = ("inner", name)
        if key not in self._idents:
            self._idents[key] = inner.identity()
        ident = self._idents[key]
        ekey = self.cache.key(["enhanced", nkey, ident])
        stored = self.cache.load("audio", self._snr_key(nkey, ident)) if want_snr else None
        if want_snr and stored is None:  # (re)compute: audio cached without its estimate, or neither
            y, snr = self._enhance_keeping_snr(inner, ident, noisy, nkey)
            if self.keeps_audio("enhanced"):
                self.cache.store_audio(ekey, y, (dataset, inner.name))
            return y, snr
        y = self._kept("enhanced", ekey, lambda: self._enhance_keeping_snr(inner, ident, noisy, nkey)[0],
                       (dataset, inner.name))
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
        # uncached utterances go to each model's featurize_batch (an SSL encoder batches them by
        # length), at most FEATURIZE_BATCH at a time so that memory stays flat in len(ids)
        todo: dict[str, list[tuple[int, str, np.ndarray]]] = {m: [] for m in model_names}

        def flush(m: str) -> None:
            items, todo[m] = todo[m], []
            for (i, fkey, _), val in zip(items, models[m].featurize_batch([a for _, _, a in items]), strict=True):
                out[m][i] = np.asarray(val)
                self.cache.store("features", fkey, out[m][i], (dataset, cond.enhancer))

        for uid in ids:
            utt = utts[uid]
            audio = None
            for m, model in models.items():
                if not model.cache_features:
                    if audio is None:
                        audio = self.audio(utt, cond, dataset)[0]
                    out[m].append(audio)
                    continue
                # feature key first: a hit needs no audio at all
                fkey = self.feature_key(utt, cond, m)
                val = self.cache.load("features", fkey)
                if val is None:
                    if audio is None:
                        audio = self.audio(utt, cond, dataset)[0]
                    todo[m].append((len(out[m]), fkey, audio))  # its slot (None for now) is filled by flush
                out[m].append(val)  # type: ignore[arg-type]
                if len(todo[m]) >= FEATURIZE_BATCH:
                    flush(m)
        for m in models:
            if todo[m]:
                flush(m)
        return out

    def feature_key(self, utt: Utterance, cond: Condition, model_name: str) -> str:
        model = self.plugin("ser_model", model_name)
        key = (model_name, "fk")
        if key not in self._idents:
            self._idents[key] = model.feature_key()
        return self.cache.key(["feat", self._signal_key(utt, cond), self._idents[key]])

    def data_key(self, utt: Utterance, cond: Condition, model_name: str) -> str:
        """Content key of what ``model_name`` is fitted on for ``utt`` (its features, or its audio)."""
        if self.plugin("ser_model", model_name).cache_features:
            return self.feature_key(utt, cond, model_name)
        return self._signal_key(utt, cond)

    def _signal_key(self, utt: Utterance, cond: Condition) -> str:
        """Content key of the signal a SER model reads for ``utt`` under ``cond``: the audio's key,
        with :data:`ENHANCED_FORMAT` for enhanced audio; for a pooled condition, its members'."""
        if cond.kind == "pooled":
            return self.cache.key(["pooled", [self._signal_key(utt, m) for m in cond.pool]])
        key = self._audio_key(utt, cond)
        return self.cache.key([key, ENHANCED_FORMAT]) if cond.kind == "enhanced" else key

    def _audio_key(self, utt: Utterance, cond: Condition) -> str:
        """Where the audio of ``utt`` under ``cond`` is kept (unchanged by :data:`ENHANCED_FORMAT`:
        what the cache kept before is 16-bit already)."""
        if cond.kind == "clean":
            return "clean:" + utt.content_key()
        nkey = self.cache.key(self._noisy_parts(utt, cond))
        if cond.kind == "noisy":
            return nkey
        return self.cache.key(["enhanced", nkey, self.identity("enhancer", cond.enhancer)])

    def condition_features(self, dataset: str, model_name: str, cond: Condition,
                           ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Features of ``ids`` under ``cond`` (kept in a small per-process LRU, which grows as
        cells ask for more utterances of the same condition). The LRU holds at most 8 conditions
        and :data:`FEATURE_LRU_BYTES`: a model fitted on audio (whose "features" are signals)
        keeps the one condition it is reading, so no process holds a whole corpus's audio."""
        key = (dataset, model_name, cond)
        have = self._feats.get(key)
        if have is None:
            have = self._feats[key] = {}
        self._feats.move_to_end(key)
        missing = [i for i in dict.fromkeys(ids) if i not in have]
        if missing:
            have.update(zip(missing, self.features(dataset, model_name, cond, missing)))
        size = lambda d: sum(getattr(v, "nbytes", 0) for v in d.values())  # noqa: E731
        while len(self._feats) > 1 and (len(self._feats) > 8 or sum(map(size, self._feats.values())) > FEATURE_LRU_BYTES):
            self._feats.popitem(last=False)
        return have


_LOCAL = threading.local()  # one context per worker thread (Dask workers may run several threads)


def remote_config(config: RunConfig, registry: Registry) -> str:
    """The run config as JSON for workers that do not share this process's working directory (a
    Dask cluster's): every relative path option (a ``Path`` field of the plugin's Config, such as
    ``--data-root``, ``folder.root``, a corruption's ``babble.root`` / ``rir.root``, or an
    enhancer's calibration roots) made absolute from here, where the user meant it."""
    kinds = {n: k for k, names in (("dataset", config.datasets), ("ser_model", config.ser_models),
                                   ("enhancer", config.enhancers), ("noise_source", config.noise_sources),
                                   ("corruption", corruptions.names(config)))
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


def worker_context(payload: dict) -> Context:
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



def per_cell_seed(registry: Registry, model_name: str) -> bool:
    """Whether a SER model takes the runner's per-cell seed (an attribute ``seed_``)."""
    return hasattr(registry.get("ser_model", model_name), "seed_")

