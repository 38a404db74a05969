"""The four plugin interfaces: datasets, noise sources, enhancers and SER models.

Every plugin class:

* has a unique, short, lowercase ``name``, the same it is registered under (the registry
  refuses a class registered under another name);
* has a ``version`` string that is part of every cache key and cell key: bump it when the
  plugin's output changes, so stale artefacts are never reused;
* has a nested ``Config`` (a pydantic model with ``extra="forbid"``) validating its options.
  ``Plugin(**options)`` validates them and stores the result in ``self.config``.

Audio handed between the harness and plugins is always mono float32 numpy at 16 kHz
(:data:`SAMPLE_RATE`), values nominally in [-1, 1].
"""
from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from .audio import SAMPLE_RATE, check_signal, load_audio  # noqa: F401  (SAMPLE_RATE: re-exported)
from .errors import ConfigError, PluginError
Task = Literal["classification", "regression"]


def _jsonable(v: Any) -> Any:
    return str(v) if not isinstance(v, (str, int, float, bool, type(None), list, dict)) else v


class PluginConfig(BaseModel):
    """Base for plugin option models: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


class Plugin:
    """Common base: name, version, validated options."""

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    #: One line shown by ``bench plugins``.
    description: ClassVar[str] = ""

    class Config(PluginConfig):
        pass

    def __init__(self, **options: Any) -> None:
        try:
            self.config = self.Config(**options)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(options)'}: {e['msg']}" for e in exc.errors()
            )
            allowed = ", ".join(self.Config.model_fields) or "none"
            raise ConfigError(
                f"invalid options for {type(self).__name__} {self.name!r}: {problems}. "
                f"Allowed options: {allowed} (`bench plugins {self.name}` describes them)."
            ) from None

    def identity(self) -> dict[str, Any]:
        """What determines this plugin's output: name, version and options (for cache keys)."""
        opts = {k: _jsonable(v) for k, v in self.config.model_dump(mode="json").items()}
        return {"name": self.name, "version": self.version, "config": opts}

    def identity_hash(self) -> str:
        return stable_hash(self.identity())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"


def mean_frame_snr(snr_per_frame: Any) -> float:
    """An enhancer's per-frame SNR estimate (dB) as one number: the mean, 100 dB if no frame."""
    a = np.asarray(snr_per_frame, dtype=np.float64)
    return float(np.mean(a)) if a.size else 100.0


def stable_hash(obj: Any, n: int = 16) -> str:
    """A short hex digest of ``obj`` serialised canonically as JSON."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:n]


# --------------------------------------------------------------------------- datasets


@dataclass(frozen=True)
class TimeSeries:
    """A continuous label sampled every ``hop_s`` seconds (e.g. RECOLA arousal: 0.04 s)."""

    values: np.ndarray
    hop_s: float = 0.04

    def __len__(self) -> int:
        return len(self.values)


Label = str | TimeSeries


@dataclass(frozen=True, eq=False)
class Utterance:
    """One recording of a dataset.

    Attributes:
        id: unique within the dataset, stable across runs (used in cache keys and reports).
        speaker: speaker id; leave-one-speaker-out folds group by it.
        label: a class name (classification) or a :class:`TimeSeries` (regression).
        partition: the official partition ("train", "dev", "test") or None.
        path: the audio file, if there is one (used in error messages and fingerprints).
        loader: a zero-argument callable returning mono float32 audio at 16 kHz; if None,
            :func:`ser_bench.audio.load_audio` reads ``path``.
        fingerprint: identifies the audio content for cache keys. Defaults to the path, size
            and modification time of ``path``; generated audio should give its generator
            version and parameters.
        fold: the corpus's own cross-validation fold this utterance is tested in (e.g. IEMOCAP's
            "Session3", an EmoBox fold "emobox2"), or None. When every utterance has one,
            ``cv = "auto"`` (and ``"dataset"``) tests each fold on a model trained on the others.
    """

    id: str
    speaker: str
    label: Label
    partition: str | None = None
    path: Any = None
    loader: Callable[[], np.ndarray] | None = field(default=None, repr=False)
    fingerprint: str | None = None
    fold: str | None = None

    def load(self) -> np.ndarray:
        """Return the audio: mono float32 at 16 kHz, validated (raises AudioError naming the file)."""
        if self.loader is not None:
            return check_signal(self.loader(), source=str(self.path or self.id))
        if self.path is None:
            raise PluginError(f"utterance {self.id!r} has neither a path nor a loader")
        return load_audio(self.path)

    def content_key(self) -> str:
        """A stable key for the audio content: ``fingerprint`` if set, else the file's content
        digest (:func:`file_fingerprint`), else the id."""
        if self.fingerprint:
            return self.fingerprint
        if self.path is not None:
            try:
                return file_fingerprint(self.path)
            except OSError:
                return str(self.path)
        return self.id


def _label_key(label: Any) -> Any:
    """A label as hashable JSON: class names as they are, time series by their values' digest."""
    if isinstance(label, TimeSeries):
        values = np.ascontiguousarray(label.values, dtype=np.float64)
        return ["ts", label.hop_s, hashlib.sha256(values.tobytes()).hexdigest()[:32]]
    return label


_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_fingerprint(path: Any) -> str:
    """The content digest of a file (BLAKE2b of its bytes): where the file lies and when it was
    copied do not matter, so a corpus moved or copied elsewhere keeps its cache entries and stored
    results, and an edited file gets new ones. Computed once per process and file version
    (path, size, mtime); RAVDESS's 1,440 files (52 MB) take 0.38 s. Raises OSError for a missing file."""
    import os

    st = os.stat(path)
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    digest = _DIGESTS.get(key)
    if digest is None:
        with open(path, "rb") as f:
            digest = _DIGESTS[key] = "b2:" + hashlib.file_digest(f, "blake2b").hexdigest()[:32]
    return digest


class Dataset(Plugin, ABC):
    """A speech-emotion corpus.

    Subclasses implement :meth:`load_utterances`. Set ``task`` to "regression" when labels
    are :class:`TimeSeries`, and ``has_partitions`` when utterances carry official partitions
    (then protocols may use ``cv = "partition"``).
    """

    task: ClassVar[Task] = "classification"
    has_partitions: ClassVar[bool] = False
    #: Free text shown beside results from this dataset (e.g. "degraded copy: 2 s cuts").
    notes: ClassVar[str] = ""

    @abstractmethod
    def load_utterances(self) -> list[Utterance]:
        """Return every utterance of the corpus, in a deterministic order."""

    def utterances(self) -> list[Utterance]:
        """Template method: :meth:`load_utterances`, checked and cached on the instance."""
        cached = getattr(self, "_utterances", None)
        if cached is None:
            cached = self.load_utterances()
            if cached and getattr(getattr(self, "config", None), "emobox", None):
                from .emobox import apply_emobox  # EmoBox's published folds, option ``emobox``

                cached = apply_emobox(self, cached)
            if not cached:
                raise PluginError(f"dataset {self.name!r} yielded no utterances; check its root/options")
            seen: set[str] = set()
            for u in cached:
                if u.id in seen:
                    raise PluginError(f"dataset {self.name!r}: duplicate utterance id {u.id!r}")
                seen.add(u.id)
            self._utterances = cached
        return cached

    #: Options that say where the data lies, not what it is: left out of :meth:`identity`,
    #: whose content digest stands for them (a corpus moved, copied or named by another path
    #: keeps its cached artefacts and stored results).
    location_options: ClassVar[tuple[str, ...]] = ("root",)

    def identity(self) -> dict[str, Any]:
        """Name, version, options (but not where the data lies) and the digest of every
        utterance's id, speaker, label and audio content: editing, adding or relabelling a file
        changes every key that depends on the corpus, so stale results are never reused."""
        ident = super().identity()
        for k in self.location_options:
            ident["config"].pop(k, None)
        ident["content"] = stable_hash([[u.id, u.speaker, _label_key(u.label), u.partition, u.content_key()]
                                        for u in self.utterances()], n=32)
        return ident

    def classes(self) -> list[str]:
        """Sorted class names (classification datasets)."""
        return sorted({u.label for u in self.utterances() if isinstance(u.label, str)})


# --------------------------------------------------------------------------- noise


@dataclass(frozen=True, eq=False)
class NoiseClip:
    """One noise recording. ``loader`` returns mono float32 at 16 kHz."""

    id: str
    loader: Callable[[], np.ndarray] = field(repr=False)
    fingerprint: str = ""
    path: Any = None

    def load(self) -> np.ndarray:
        return check_signal(self.loader(), source=str(self.path or self.id))


def split_part(key: str, test_fraction: float, salt: str = "") -> Literal["train", "test"]:
    """Deterministic train/test assignment from a stable hash of ``key`` (order-independent)."""
    h = int(hashlib.sha256(f"{salt}:{key}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "test" if h < test_fraction else "train"


class NoiseSource(Plugin, ABC):
    """A collection of noise clips split into disjoint, deterministic train and test parts.

    Enhancers are trained on the ``train`` part; SER protocols mix with the ``test`` part so
    that evaluation uses noise the enhancer never saw.
    """

    @abstractmethod
    def load_clips(self) -> list[NoiseClip]:
        """Return all clips, in a deterministic order."""

    def part_of(self, clip: NoiseClip) -> Literal["train", "test"]:
        """Which part a clip belongs to. Default: a stable hash of its id, 25 % test."""
        return split_part(clip.id, 0.25, salt=self.name)

    #: As :attr:`Dataset.location_options`: where the clips lie is not part of the identity.
    location_options: ClassVar[tuple[str, ...]] = ("root",)

    def identity(self) -> dict[str, Any]:
        """Name, version, options (but not where the clips lie) *and* the clips' fingerprints:
        adding, removing or editing a clip changes every cache key that depends on this source, so
        stale mixtures are never reused."""
        ident = super().identity()
        for k in self.location_options:
            ident["config"].pop(k, None)
        all_clips = getattr(self, "_clips", None)
        if all_clips is None:
            all_clips = self._clips = self.load_clips()
        ident["clips"] = stable_hash([[c.id, c.fingerprint, self.part_of(c)] for c in all_clips])
        return ident

    def clips(self, part: Literal["train", "test", "all"] = "test") -> list[NoiseClip]:
        """The clips of one part (cached). Raises if the part is empty."""
        if part not in ("train", "test", "all"):
            raise ConfigError(f"noise part must be 'train', 'test' or 'all', not {part!r}")
        all_clips = getattr(self, "_clips", None)
        if all_clips is None:
            all_clips = self._clips = self.load_clips()
        chosen = all_clips if part == "all" else [c for c in all_clips if self.part_of(c) == part]
        if not chosen:
            raise PluginError(f"noise source {self.name!r} has no clips in part {part!r}")
        return chosen


# --------------------------------------------------------------------------- corruptions


class Corruption(Plugin, ABC):
    """One way of corrupting clean speech (reverberation, babble, a channel...) at a severity.

    A test condition is a chain of corruption *steps*, each ``NAME(param=value, ...)``, applied in
    order (``reverb(rt60=0.6)+noise(snr=5)``). The plugin's options (``Config``) hold what is fixed
    for a run (a folder of RIRs, a speech corpus); the step's parameters (``Params``) hold the
    severity and its kind of variation. ``apply`` gets the signal, the validated parameters and a
    random generator seeded from (the utterance, the step, the run seed) alone, so every step is
    deterministic and content-keyed (see :mod:`ser_bench.corruptions`).
    """

    #: The parameter that sets the severity (``"rt60"``, ``"snr"``), or "" for a fixed corruption.
    severity: ClassVar[str] = ""
    #: Whether a larger severity value is a *milder* corruption (SNR) or a harsher one (RT60).
    milder_when_larger: ClassVar[bool] = False
    #: What it does to speech, matched against :attr:`Enhancer.built_for` in the report:
    #: "additive-noise", "competing-speech", "reverberation" or "channel".
    category: ClassVar[str] = "channel"

    class Params(PluginConfig):
        pass

    @abstractmethod
    def apply(self, x: np.ndarray, params: Any, rng: np.random.Generator, ctx: Any) -> tuple[np.ndarray, dict[str, Any]]:
        """Corrupt ``x`` (mono float32, 16 kHz) -> ``(y, info)``: ``y`` the same length, time-aligned
        with ``x``; ``info`` what was drawn for this utterance (JSON-able: room size, DRR, talkers).
        ``ctx`` (:class:`ser_bench.corruptions.StepContext`) names the utterance and the run's noise
        sources."""

    def key_parts(self, params: Any, ctx: Any) -> list[Any]:
        """Extra cache-key parts of a step beyond the plugin identity and parameters (e.g. the
        identity of the noise source it draws from)."""
        return []


# --------------------------------------------------------------------------- enhancers


class Enhancer(Plugin, ABC):
    """Maps noisy speech to enhanced speech: same length, mono, 16 kHz.

    Set ``requires_training = True`` if the enhancer cannot run before :meth:`train` (or a
    checkpoint) has given it weights; the harness then refuses to use it untrained with a
    message saying how to train it.
    """

    #: The corruptions it was built to undo (categories of :class:`Corruption`): the report says
    #: plainly where it is applied to another (a denoiser on reverberant speech).
    built_for: ClassVar[tuple[str, ...]] = ("additive-noise",)
    requires_training: ClassVar[bool] = False

    @abstractmethod
    def enhance_signal(self, noisy: np.ndarray) -> np.ndarray:
        """Enhance one mono float32 signal at 16 kHz; return an array of the same length."""

    #: A *wrapper* enhancer (e.g. ``guarded-NAME``) sets ``inner`` to the enhancer whose output
    #: it derives its own from, and implements :meth:`enhance_from_inner`. The runner then takes
    #: the inner output from the audio cache (computing and caching it at most once, shared with
    #: runs of the inner enhancer itself) instead of running the inner enhancer again.
    inner: Enhancer | None = None

    def calibration_corpora(self) -> frozenset[str]:
        """Datasets whose speech this enhancer's parameters were fitted on (e.g. a guard's
        calibration). A run on any of them is refused before any work starts: the fit would
        have seen its test speakers."""
        return frozenset()

    def enhance_from_inner(self, noisy: np.ndarray,
                           inner_output: Callable[[bool], tuple[np.ndarray, float | None]]) -> np.ndarray:
        """Wrappers only: the output of :meth:`enhance_signal`, given ``inner_output(want_snr)``,
        which returns the inner enhancer's output for ``noisy`` and, if ``want_snr``, the mean of
        its own SNR estimate (``enhance_with_snr``; else None)."""
        raise NotImplementedError(f"enhancer {self.name!r} is not a wrapper")

    def enhance_keeping_snr(self, noisy: np.ndarray) -> tuple[np.ndarray, float | None]:
        """:meth:`enhance`, plus the mean over frames of the enhancer's own SNR estimate (dB) when
        it has one (a method ``enhance_with_snr(x) -> (y, snr_per_frame)``, e.g. DeepFilterNet's
        local SNR; 100 dB where it gives no frame), else None. One run of the enhancer: the runner
        keeps the estimate beside the cached audio, so ``guarded-NAME`` never reruns NAME for it."""
        with_snr = getattr(self, "enhance_with_snr", None)
        if not callable(with_snr):
            return self.enhance(noisy), None
        y, lsnr = with_snr(np.asarray(noisy, dtype=np.float32))
        return self._checked(noisy, y), mean_frame_snr(lsnr)

    def enhance(self, noisy: np.ndarray,
                inner_output: Callable[[bool], tuple[np.ndarray, float | None]] | None = None) -> np.ndarray:
        """Template method: :meth:`enhance_signal` with the output contract checked.

        ``inner_output``: wrappers only, see :meth:`enhance_from_inner`."""
        noisy = np.asarray(noisy, dtype=np.float32)
        if noisy.ndim != 1:
            raise PluginError(f"enhancer {self.name!r} needs mono 1-D input, got shape {noisy.shape}")
        if inner_output is not None:
            return self._checked(noisy, self.enhance_from_inner(noisy, inner_output))
        return self._checked(noisy, self.enhance_signal(noisy))

    def _checked(self, noisy: np.ndarray, out: np.ndarray) -> np.ndarray:
        """The output contract: float32, the input's shape, finite."""
        noisy = np.asarray(noisy)
        out = np.asarray(out, dtype=np.float32)
        if out.shape != noisy.shape:
            raise PluginError(
                f"enhancer {self.name!r} returned shape {out.shape} for input {noisy.shape}: "
                "enhancers must keep the length"
            )
        if not np.all(np.isfinite(out)):
            raise PluginError(f"enhancer {self.name!r} returned NaN or inf samples")
        return out

    def is_trained(self) -> bool:
        """Whether the enhancer can run now. Override together with ``requires_training``."""
        return not self.requires_training

    def train(self, speech: Sequence[Any], noise: NoiseSource, **kwargs: Any) -> dict[str, Any]:
        """Train on clean speech mixed with ``noise`` (train part). Returns training figures."""
        raise PluginError(f"enhancer {self.name!r} is not trainable")


# --------------------------------------------------------------------------- SER models


@dataclass
class FeatureSet:
    """What an SER model is fitted on or predicts: one entry per utterance.

    ``X[i]`` is whatever the model's :meth:`SERModel.featurize` returned for utterance i
    (a functional vector, a raw waveform...). ``y`` holds labels (None at predict time if
    unknown); ``groups`` speaker ids; ``ids`` utterance ids.
    """

    X: list[np.ndarray]
    y: list[Label] | None
    groups: list[str]
    ids: list[str]

    def __len__(self) -> int:
        return len(self.X)

    def stacked(self) -> np.ndarray:
        """X as a 2-D matrix (for fixed-length feature vectors)."""
        return np.stack(self.X).astype(np.float64)


class SERModel(Plugin, ABC):
    """A speech emotion recogniser: featurize audio, fit on training features, predict.

    :meth:`featurize` runs once per audio signal and its output is cached on disk by the
    harness under ``feature_key()``; models sharing a feature key (e.g. two classifiers on
    eGeMAPS) share that cache. ``fit`` must not look at test data. ``task`` decides the metric:
    classification is scored by UAR, regression by CCC.
    """

    task: ClassVar[Task] = "classification"
    #: Whether featurize() output is worth caching on disk (False for raw-audio models).
    cache_features: ClassVar[bool] = True

    def featurize(self, audio: np.ndarray) -> np.ndarray:
        """Features of one mono 16 kHz signal. Default: the waveform itself."""
        return audio

    def featurize_batch(self, audios: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Features of several signals (the harness hands over those of one preparation job whose
        features are not cached yet). Default: :meth:`featurize` on each. Models that run faster on
        batches (a neural encoder on a GPU) override it; the result must equal featurize's."""
        return [self.featurize(a) for a in audios]

    def feature_key(self) -> str:
        """Identifies what :meth:`featurize` computes (cache key). Default: name+version+options."""
        return self.identity_hash()

    @abstractmethod
    def fit(self, train: FeatureSet, valid: FeatureSet | None = None) -> SERModel:
        """Fit on ``train`` (``valid``: an official development partition, if any). Return self."""

    @abstractmethod
    def predict(self, test: FeatureSet) -> list[Label]:
        """One label per test entry: a class name, or a TimeSeries for regression."""
