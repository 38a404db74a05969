"""Conformance checks and small fakes for plugin authors.

Call the checks from your plugin package's own tests, like scikit-learn's ``check_estimator``::

    from harness.testing import check_dataset, check_enhancer

    def test_my_enhancer_conforms():
        check_enhancer(MyEnhancer)                       # a class (default options) or an instance

    def test_my_dataset_conforms(tmp_path):
        check_dataset(MyCorpus, options={"root": make_fake_corpus(tmp_path)})

Each check raises :class:`ConformanceError` (an ``AssertionError``, so pytest shows it as a
test failure) naming the plugin, the rule it breaks and what was observed, e.g.::

    enhancer 'shortener' (mypkg.Shortener) breaks rule 'keeps length': returned 15999 samples
    for a 16000-sample input (noisy speech-like signal, 1 s) ...

The fakes (:class:`ToneDataset`, :class:`ToneTraceDataset`, :class:`FakeNoise`,
:class:`CentroidSER`) are tiny, fast, deterministic plugins to test against; register them all
at once with ``make_plugin_manager(extra=[testing_plugin])``.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import pluggy

from . import hookspecs
from .audio import SILENCE_PEAK, is_silent
from .errors import BenchError, ConfigError, PluginError
from .hookspecs import hookimpl
from .interfaces import (
    SAMPLE_RATE,
    Dataset,
    Enhancer,
    FeatureSet,
    Label,
    NoiseClip,
    NoiseSource,
    Plugin,
    PluginConfig,
    SERModel,
    TimeSeries,
    Utterance,
)
from .registry import HOOKS, KINDS, LABEL, Entry

PARTITIONS = ("train", "dev", "test")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


class ConformanceError(AssertionError):
    """A plugin breaks a rule of its interface.

    Attributes:
        plugin: who broke it, e.g. ``"enhancer 'gate' (mypkg.Gate)"``.
        rule: the short rule name, e.g. ``"keeps length"``.
        detail: what was observed and how to fix it.
    """

    def __init__(self, plugin: str, rule: str, detail: str) -> None:
        self.plugin, self.rule, self.detail = plugin, rule, detail
        super().__init__(f"{plugin} breaks rule {rule!r}: {detail}")


# --------------------------------------------------------------------------- signals


def syllable_envelope(n: int, sr: int = SAMPLE_RATE, on_s: float = 0.16, off_s: float = 0.09) -> np.ndarray:
    """0..1 envelope of syllable-like bursts (``on_s`` on, ``off_s`` off, 20 ms cosine ramps)."""
    period, on, ramp = int((on_s + off_s) * sr), int(on_s * sr), int(0.02 * sr)
    one = np.zeros(period)
    one[:on] = 1.0
    r = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
    one[:ramp], one[on - ramp : on] = r, r[::-1]
    return np.tile(one, n // period + 1)[:n]


def speech_like(
    duration_s: float = 1.0, *, f0: float = 150.0, seed: int = 0, level: float = 0.3,
    brightness: float = 0.7, sr: int = SAMPLE_RATE,
) -> np.ndarray:
    """A deterministic speech-like signal: harmonic bursts with vibrato, peak ``level``.

    Args:
        f0: fundamental frequency in Hz.
        brightness: amplitude ratio between successive harmonics (higher: brighter timbre).
    """
    rng = np.random.default_rng(seed)
    n = max(1, int(round(duration_s * sr)))
    t = np.arange(n) / sr
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.03 * np.sin(2 * np.pi * 5 * t))) / sr
    x = sum(brightness ** (k - 1) * np.sin(k * phase + rng.uniform(0, 2 * np.pi)) for k in range(1, 9) if k * f0 < sr / 2)
    x = np.asarray(x) * syllable_envelope(n, sr)
    x = level * x / max(float(np.max(np.abs(x))), 1e-9)
    x += 1e-4 * rng.standard_normal(n)  # a floor, so that no utterance is digitally silent
    return x.astype(np.float32)


def tone_bursts(freq: float = 1000.0, duration_s: float = 1.0, level: float = 0.3, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Bursts of a pure tone: the probe for 'keeps the sample rate' (its frequency must not move)."""
    n = int(round(duration_s * sr))
    x = level * np.sin(2 * np.pi * freq * np.arange(n) / sr) * syllable_envelope(n, sr)
    return x.astype(np.float32)


def add_white_noise(x: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    """``x`` plus seeded white noise at ``snr_db`` (mean power over the whole signal)."""
    rng = np.random.default_rng(seed)
    n = rng.standard_normal(len(x))
    n *= np.sqrt(np.mean(np.square(x, dtype=np.float64)) / (np.mean(n**2) * 10 ** (snr_db / 10)))
    return (x + n).astype(np.float32)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(np.asarray(x, dtype=np.float64))))) if len(x) else 0.0


def _frame_rms(x: np.ndarray, hop: int = 160) -> np.ndarray:
    n = len(x) // hop
    return np.sqrt(np.mean(np.asarray(x[: n * hop], dtype=np.float64).reshape(n, hop) ** 2, axis=1))


def _lag_frames(x: np.ndarray, y: np.ndarray, max_lag: int = 10) -> int:
    """The delay of y relative to x in 10 ms frames, from the cross-correlation of their envelopes."""
    ex, ey = _frame_rms(x), _frame_rms(y)
    ex, ey = ex - ex.mean(), ey - ey.mean()
    lags = range(-max_lag, max_lag + 1)
    scores = [float(np.dot(ex[max(0, -k) : len(ex) - max(0, k)], ey[max(0, k) : len(ey) - max(0, -k)])) for k in lags]
    return list(lags)[int(np.argmax(scores))]


def _dominant_hz(x: np.ndarray, sr: int = SAMPLE_RATE) -> float:
    spec = np.abs(np.fft.rfft(np.asarray(x, dtype=np.float64) * np.hanning(len(x))))
    return float(np.argmax(spec) * sr / len(x))


# --------------------------------------------------------------------------- common rules


def _who(obj: Plugin | type[Plugin], kind: str) -> str:
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{LABEL[kind]} {getattr(cls, 'name', '?')!r} ({cls.__module__}.{cls.__qualname__})"


def _instantiate(obj: Any, kind: str, options: dict[str, Any] | None) -> Plugin:
    """An instance of the plugin: ``obj`` itself, or ``obj(**options)`` for a class."""
    base = KINDS[kind]
    if isinstance(obj, type):
        if not issubclass(obj, base):
            raise ConformanceError(repr(obj), f"subclasses harness.{base.__name__}", "it does not")
        try:
            return obj(**(options or {}))
        except Exception as exc:
            hint = " Pass the options it needs: options={...}." if isinstance(exc, ConfigError) else ""
            raise ConformanceError(
                _who(obj, kind), "constructs from its options",
                f"{obj.__name__}(**{options or {}!r}) raised {type(exc).__name__}: {exc}.{hint}",
            ) from exc
    if not isinstance(obj, base):
        raise ConformanceError(repr(obj), f"is a harness.{base.__name__}", f"got a {type(obj).__name__}")
    if options:
        raise TypeError("options= is only for plugin classes; configure the instance instead")
    return obj


def _fresh(inst: Plugin) -> Plugin:
    """A second instance with the same options (for determinism checks)."""
    return type(inst)(**inst.config.model_dump())


def check_metadata(obj: Plugin | type[Plugin], kind: str) -> None:
    """Rules every plugin class follows: name, version, description, a strict ``Config``."""
    cls = obj if isinstance(obj, type) else type(obj)
    who = _who(cls, kind)
    name = getattr(cls, "name", "")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ConformanceError(
            who, "has a valid name",
            f"name is {name!r}; use a short lowercase name of letters, digits, '-', '_' or '.' (e.g. 'my-gate')",
        )
    if not isinstance(cls.version, str) or not cls.version.strip():
        raise ConformanceError(who, "has a version", f"version is {cls.version!r}; use a non-empty string such as '1'")
    if not isinstance(cls.description, str) or not cls.description.strip() or "\n" in cls.description:
        raise ConformanceError(who, "has a description", "set `description` to one line; `bench plugins` shows it")
    if not (isinstance(cls.Config, type) and issubclass(cls.Config, PluginConfig)):
        raise ConformanceError(
            who, "has a strict Config",
            f"{cls.__name__}.Config must subclass harness.PluginConfig (pydantic, extra='forbid')",
        )
    if cls.Config.model_config.get("extra") != "forbid":
        raise ConformanceError(
            who, "has a strict Config",
            f"{cls.__name__}.Config accepts unknown options (extra={cls.Config.model_config.get('extra')!r}); "
            "subclass harness.PluginConfig and keep extra='forbid' so that typos in options are errors",
        )


def _check_identity(inst: Plugin, who: str) -> None:
    try:
        h1, h2 = inst.identity_hash(), _fresh(inst).identity_hash()
    except Exception as exc:
        raise ConformanceError(who, "has a stable identity", f"identity()/re-construction failed: {exc}") from exc
    if h1 != h2:
        raise ConformanceError(
            who, "has a stable identity",
            "two instances with the same options hash differently; identity() must depend only on name, version and options",
        )


def _call(who: str, rule: str, what: str, fn: Callable[[], Any]) -> Any:
    """Run a plugin method, turning any exception into a ConformanceError for ``rule``."""
    try:
        return fn()
    except ConformanceError:
        raise
    except Exception as exc:
        raise ConformanceError(who, rule, f"{what} raised {type(exc).__name__}: {exc}") from exc


# --------------------------------------------------------------------------- enhancers


def check_enhancer(
    enhancer: Enhancer | type[Enhancer],
    *,
    options: dict[str, Any] | None = None,
    short_lengths: Sequence[int] = (80, 400, 1601),
    train: bool = False,
    train_kwargs: dict[str, Any] | None = None,
    atol: float = 1e-5,
    max_lag_ms: float = 20.0,
) -> Enhancer:
    """Check an enhancer against the :class:`harness.Enhancer` contract.

    Rules: valid metadata and a strict ``Config``; trained (or trainable with ``train=True``)
    before use; for speech-like, noisy, silent and short inputs (``short_lengths`` samples)
    returns a finite float array of exactly the input's length without touching the input;
    keeps the sample rate (a 1 kHz tone stays at 1 kHz) and the timing (no delay above
    ``max_lag_ms``); deterministic: the same input gives the same output (within ``atol``)
    on a second call and on a second instance with the same options.

    Args:
        enhancer: the class (built with ``options``) or a ready instance (e.g. trained).
        train: if the enhancer needs training, train it on tiny fakes first: ``train(utterances,
            FakeNoise(), **train_kwargs)`` (e.g. ``train_kwargs={"out": tmp_path / "ck.pt"}``).

    Returns:
        The instance that was checked.
    """
    inst = _instantiate(enhancer, "enhancer", options)
    who = _who(inst, "enhancer")
    check_metadata(inst, "enhancer")
    _check_identity(inst, who)
    if not inst.is_trained():
        if not train:
            raise ConformanceError(
                who, "is ready to enhance",
                "is_trained() is False; pass a trained instance (or one loaded from a checkpoint), "
                "or call check_enhancer(..., train=True) to train it on tiny fakes first",
            )
        speech = make_tone_dataset(n_speakers=2, per_class=2).utterances()
        _call(who, "trains on tiny data", "train(speech, noise)", lambda: inst.train(speech, FakeNoise(), **(train_kwargs or {})))
        if not inst.is_trained():
            raise ConformanceError(who, "is ready to enhance", "is_trained() is still False after train()")

    speech = speech_like(1.0, seed=1)
    noisy = add_white_noise(speech, 5.0, seed=2)
    cases: list[tuple[str, str, np.ndarray]] = [
        ("keeps length", "speech-like signal, 1 s", speech),
        ("keeps length", "noisy speech-like signal, 1 s at 5 dB SNR", noisy),
        ("handles silence", "silence (all zeros), 1 s", np.zeros(SAMPLE_RATE, np.float32)),
        ("handles silence", "near-silence (peak 1e-6), 1 s", (noisy * (1e-6 / np.max(np.abs(noisy)))).astype(np.float32)),
    ]
    cases += [("handles short inputs", f"short noisy input, {n} samples ({1000 * n / SAMPLE_RATE:g} ms)", noisy[:n])
              for n in short_lengths]
    outputs: dict[str, np.ndarray] = {}
    for rule, desc, x in cases:
        outputs[desc] = _enhance_checked(inst, who, rule, desc, x)

    # Sample rate and timing: judged only when the output is not (near) silent.
    tone = tone_bursts(1000.0)
    y = _enhance_checked(inst, who, "keeps length", "1 kHz tone bursts, 1 s", tone)
    if _rms(y) > 0.01 * _rms(tone):
        hz = _dominant_hz(y)
        if abs(hz - 1000.0) > 30.0:
            raise ConformanceError(
                who, "keeps the sample rate",
                f"a 1000 Hz tone came out with its peak at {hz:.0f} Hz; input and output are both mono at "
                f"{SAMPLE_RATE} Hz (resample back if the model runs at another rate)",
            )
    y = outputs["noisy speech-like signal, 1 s at 5 dB SNR"]
    if _rms(y) > 0.01 * _rms(noisy):
        lag_ms = 10.0 * _lag_frames(speech, y)
        if abs(lag_ms) > max_lag_ms:
            raise ConformanceError(
                who, "keeps the timing",
                f"the output is shifted by {lag_ms:+.0f} ms relative to the input (allowed: {max_lag_ms:g} ms); "
                "compensate the model's latency / padding so output sample i belongs to input sample i",
            )

    # Determinism: again on the same instance (after other signals), and on a fresh instance.
    desc = "noisy speech-like signal, 1 s at 5 dB SNR"
    again = _enhance_checked(inst, who, "is deterministic", desc, noisy)
    _same(who, outputs[desc], again, atol, "a second call on the same instance")
    other = _fresh(inst)
    if other.is_trained():
        _same(who, outputs[desc], _enhance_checked(other, who, "is deterministic", desc, noisy), atol,
              "a second instance with the same options")
    _call(who, "passes the harness's own checks", "enhance()", lambda: inst.enhance(noisy))
    return inst


def _enhance_checked(inst: Enhancer, who: str, rule: str, desc: str, x: np.ndarray) -> np.ndarray:
    given = np.array(x, dtype=np.float32)
    arg = given.copy()
    out = _call(who, rule, f"enhance_signal() on {desc}", lambda: inst.enhance_signal(arg))
    if not np.array_equal(arg, given):
        raise ConformanceError(who, "does not modify its input", f"enhance_signal() changed its input array ({desc}); work on a copy")
    try:
        y = np.asarray(out)
    except Exception as exc:
        raise ConformanceError(who, "returns a numpy array", f"got {type(out).__name__} for {desc}") from exc
    if y.dtype.kind != "f":
        raise ConformanceError(who, "returns float samples", f"got dtype {y.dtype} for {desc}; return float32")
    if y.shape != given.shape:
        raise ConformanceError(
            who, "keeps length",
            f"returned shape {y.shape} for an input of shape {given.shape} ({desc}); an enhancer must return "
            "exactly as many samples as it is given, mono, at 16 kHz (crop or pad STFT/model output to the input length)",
        )
    bad = int(np.sum(~np.isfinite(y)))
    if bad:
        raise ConformanceError(
            who, rule if rule != "keeps length" else "returns finite samples",
            f"returned {bad} NaN/inf samples for {desc}; guard divisions and logs with an epsilon",
        )
    peak = float(np.max(np.abs(y), initial=0.0))
    if peak > 4.0:
        raise ConformanceError(who, "stays in range", f"output peak {peak:.3g} for {desc}; audio is nominally in [-1, 1]")
    return y


def _same(who: str, a: np.ndarray, b: np.ndarray, atol: float, how: str) -> None:
    diff = float(np.max(np.abs(a - b), initial=0.0))
    if diff > atol:
        raise ConformanceError(
            who, "is deterministic",
            f"{how} gave a different output (max difference {diff:.3g} > {atol:g}); seed every random generator "
            "from the options (e.g. a `seed` option) and keep no state between signals",
        )


# --------------------------------------------------------------------------- SER models


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


# --------------------------------------------------------------------------- datasets


def _sample(items: Sequence[Any], k: int) -> list[Any]:
    """Up to ``k`` items spread evenly (deterministic)."""
    if len(items) <= k:
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, k).round().astype(int)]


def check_dataset(
    dataset: Dataset | type[Dataset],
    *,
    options: dict[str, Any] | None = None,
    max_audio: int = 50,
    min_duration_s: float = 0.1,
) -> Dataset:
    """Check a dataset: well-formed utterances with readable, non-silent audio.

    Rules: valid metadata; a non-empty list of :class:`Utterance` in a stable order; unique
    non-empty ids; a speaker for each; labels that fit ``task`` (class names, at least two
    classes; or finite :class:`TimeSeries` matching the audio duration); partitions among
    train/dev/test, and with ``has_partitions`` every utterance in one, train and test
    non-empty; otherwise at least two speakers (for leave-one-speaker-out); unique, stable
    ``content_key()`` values (they key the audio cache); and for up to ``max_audio`` utterances
    audio that loads as finite, non-silent mono of at least ``min_duration_s``.
    """
    inst = _instantiate(dataset, "dataset", options)
    who = _who(inst, "dataset")
    check_metadata(inst, "dataset")
    _check_identity(inst, who)
    if inst.task not in ("classification", "regression"):
        raise ConformanceError(who, "has a valid task", f"task is {inst.task!r}; use 'classification' or 'regression'")
    utts = _call(who, "lists utterances", "load_utterances()", inst.load_utterances)
    if not isinstance(utts, list) or not utts:
        raise ConformanceError(who, "lists utterances", f"load_utterances() returned {type(utts).__name__} "
                               f"{'(empty)' if not utts else ''}; return a non-empty list of harness.Utterance")
    seen: set[str] = set()
    for u in utts:
        if not isinstance(u, Utterance):
            raise ConformanceError(who, "lists utterances", f"got a {type(u).__name__}; return harness.Utterance objects")
        if not isinstance(u.id, str) or not u.id:
            raise ConformanceError(who, "has unique ids", f"utterance id {u.id!r}; use a non-empty string")
        if u.id in seen:
            raise ConformanceError(who, "has unique ids", f"utterance id {u.id!r} occurs twice")
        seen.add(u.id)
        if not isinstance(u.speaker, str) or not u.speaker:
            raise ConformanceError(who, "names speakers", f"utterance {u.id!r} has speaker {u.speaker!r}; use a non-empty string")
        _check_label(who, inst.task, u)
        if u.partition not in (None, *PARTITIONS):
            raise ConformanceError(who, "uses known partitions", f"utterance {u.id!r} has partition {u.partition!r}; use one of {PARTITIONS} or None")
    again = [u.id for u in _fresh(inst).load_utterances()]
    if again != [u.id for u in utts]:
        raise ConformanceError(who, "is deterministic", "a second instance listed different utterances or another order; sort them")

    if inst.task == "classification" and len({u.label for u in utts}) < 2:
        raise ConformanceError(who, "has several classes", f"only one class {utts[0].label!r}; a classifier needs two or more")
    parts = {u.partition for u in utts}
    if inst.has_partitions:
        if None in parts or not {"train", "test"} <= parts:
            raise ConformanceError(
                who, "has complete partitions",
                f"has_partitions is True but the partitions are {sorted(map(str, parts))}; every utterance needs "
                "train/dev/test and train and test must be non-empty (or set has_partitions = False)",
            )
    elif len({u.speaker for u in utts}) < 2:
        raise ConformanceError(who, "has several speakers", "one speaker only: leave-one-speaker-out needs two or more (or official partitions)")

    keys = [u.content_key() for u in utts]
    if any(not isinstance(k, str) or not k for k in keys) or len(set(keys)) != len(keys):
        dup = next((k for k in keys if keys.count(k) > 1), None)
        raise ConformanceError(
            who, "has unique content keys",
            f"content key {dup!r} is shared by several utterances; the audio cache is keyed by it, so give each "
            "utterance a `fingerprint` saying what its audio is (or a distinct `path`)",
        )
    if keys != [u.content_key() for u in _fresh(inst).load_utterances()]:
        raise ConformanceError(who, "has stable content keys", "content keys differ between two instances; derive them from the audio's identity")

    for u in _sample(utts, max_audio):
        x = _call(who, "has readable audio", f"loading utterance {u.id!r} ({u.path or 'loader'})", u.load)
        if x.ndim != 1 or x.dtype != np.float32:
            raise ConformanceError(who, "has readable audio", f"utterance {u.id!r}: got {x.dtype} of shape {x.shape}; return mono float32")
        if is_silent(x):
            raise ConformanceError(who, "has audible audio", f"utterance {u.id!r} is silent (peak < {SILENCE_PEAK:g}); no SNR can be set for it")
        dur = len(x) / SAMPLE_RATE
        if dur < min_duration_s:
            raise ConformanceError(who, "has usable durations", f"utterance {u.id!r} lasts {dur:.3f} s (< {min_duration_s} s)")
        if isinstance(u.label, TimeSeries):
            lab_s = len(u.label) * u.label.hop_s
            if abs(lab_s - dur) > max(2 * u.label.hop_s, 0.05 * dur):
                raise ConformanceError(
                    who, "has labels matching the audio",
                    f"utterance {u.id!r}: {len(u.label)} frames x {u.label.hop_s} s = {lab_s:.2f} s of labels for {dur:.2f} s of audio",
                )
    _call(who, "passes the harness's own checks", "utterances()", _fresh(inst).utterances)
    return inst


def _check_label(who: str, task: str, u: Utterance) -> None:
    if task == "classification":
        if not isinstance(u.label, str) or not u.label:
            raise ConformanceError(who, "has valid labels", f"utterance {u.id!r} has label {u.label!r}; classification labels are non-empty strings")
        return
    if not isinstance(u.label, TimeSeries):
        raise ConformanceError(who, "has valid labels", f"utterance {u.id!r} has a {type(u.label).__name__} label; regression labels are TimeSeries")
    v = np.asarray(u.label.values)
    if v.ndim != 1 or not len(v) or not np.all(np.isfinite(v)) or not u.label.hop_s > 0:
        raise ConformanceError(who, "has valid labels", f"utterance {u.id!r}: a TimeSeries needs finite 1-D values and hop_s > 0")


# --------------------------------------------------------------------------- noise sources


def check_noise_source(
    source: NoiseSource | type[NoiseSource],
    *,
    options: dict[str, Any] | None = None,
    max_audio: int = 50,
) -> NoiseSource:
    """Check a noise source: stable clips with disjoint, non-empty train and test parts.

    Rules: valid metadata; a non-empty list of :class:`NoiseClip` in a stable order with unique
    ids and unique non-empty fingerprints (they key the mixture cache); every clip in exactly
    one part, "train" or "test", the same in any order and on a second instance; both parts
    non-empty; and for up to ``max_audio`` clips, audio that loads as finite, non-silent mono,
    with no identical audio in both parts.
    """
    inst = _instantiate(source, "noise_source", options)
    who = _who(inst, "noise_source")
    check_metadata(inst, "noise_source")
    _check_identity(inst, who)
    clips = _call(who, "lists clips", "load_clips()", inst.load_clips)
    if not isinstance(clips, list) or not clips or not all(isinstance(c, NoiseClip) for c in clips):
        raise ConformanceError(who, "lists clips", "load_clips() must return a non-empty list of harness.NoiseClip")
    ids = [c.id for c in clips]
    if len(set(ids)) != len(ids):
        raise ConformanceError(who, "has unique clip ids", f"clip id {next(i for i in ids if ids.count(i) > 1)!r} occurs twice")
    fps = [c.fingerprint for c in clips]
    if any(not isinstance(f, str) or not f for f in fps) or len(set(fps)) != len(fps):
        raise ConformanceError(
            who, "has unique fingerprints",
            "every clip needs a non-empty fingerprint of its own (e.g. path:size:mtime, or generator parameters); "
            "mixtures are cached under it",
        )
    parts = {c.id: _call(who, "splits train/test", f"part_of({c.id!r})", lambda c=c: inst.part_of(c)) for c in clips}
    bad = {p for p in parts.values() if p not in ("train", "test")}
    if bad:
        raise ConformanceError(who, "splits train/test", f"part_of() returned {sorted(map(str, bad))}; return 'train' or 'test'")
    for part in ("train", "test"):
        if part not in parts.values():
            raise ConformanceError(
                who, "has disjoint train and test parts",
                f"the {part!r} part is empty ({len(clips)} clips); enhancers train on 'train', SER is tested on 'test' noise",
            )
    if {c.id: inst.part_of(c) for c in reversed(clips)} != parts:
        raise ConformanceError(who, "is deterministic", "part_of() depends on call order; derive the part from the clip alone")
    other = _fresh(inst)
    other_clips = other.load_clips()
    if [c.id for c in other_clips] != ids or {c.id: other.part_of(c) for c in other_clips} != parts:
        raise ConformanceError(who, "is deterministic", "a second instance listed other clips, another order or other parts")
    train_ids = {c.id for c in _call(who, "splits train/test", "clips('train')", lambda: inst.clips("train"))}
    test_ids = {c.id for c in _call(who, "splits train/test", "clips('test')", lambda: inst.clips("test"))}
    if train_ids & test_ids or train_ids | test_ids != set(ids):
        raise ConformanceError(who, "has disjoint train and test parts", "clips('train') and clips('test') overlap or miss clips")

    seen: dict[str, str] = {}
    for c in _sample(clips, max_audio):
        x = _call(who, "has readable audio", f"loading clip {c.id!r} ({c.path or 'loader'})", c.load)
        if x.ndim != 1 or is_silent(x):
            raise ConformanceError(who, "has audible audio", f"clip {c.id!r} is silent or not mono; no SNR can be set with it")
        digest = hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()
        if digest in seen and parts[seen[digest]] != parts[c.id]:
            raise ConformanceError(
                who, "has disjoint train and test parts",
                f"clips {seen[digest]!r} ({parts[seen[digest]]}) and {c.id!r} ({parts[c.id]}) hold identical audio",
            )
        seen.setdefault(digest, c.id)
    return inst


# --------------------------------------------------------------------------- dispatch, hooks


def check_plugin(plugin: Plugin | type[Plugin], **kwargs: Any) -> Plugin:
    """Run the check for the plugin's kind (enhancer, SER model, dataset or noise source)."""
    cls = plugin if isinstance(plugin, type) else type(plugin)
    checks = {Enhancer: check_enhancer, SERModel: check_ser_model, Dataset: check_dataset, NoiseSource: check_noise_source}
    for base, check in checks.items():
        if isinstance(cls, type) and issubclass(cls, base):
            return check(plugin, **kwargs)  # type: ignore[operator]
    raise ConformanceError(repr(plugin), "is a plugin", "it subclasses none of Enhancer, SERModel, Dataset, NoiseSource")


def check_hooks(plugin: object) -> dict[tuple[str, str], type[Plugin]]:
    """Check a plugin module (what your entry point points at) and return what it registers.

    Rules: every ``@hookimpl`` function names a known hook (a typo such as
    ``register_enhancer`` would otherwise be silently ignored); registered names are valid and
    unique; every target (class or lazy ``"module:Class"``) imports and subclasses the right
    interface.

    Returns:
        ``{(kind, name): class}`` for everything the module registers.
    """
    who = f"plugin module {getattr(plugin, '__name__', plugin)!r}"
    pm = pluggy.PluginManager("ser_bench")
    pm.add_hookspecs(hookspecs)
    try:
        pm.register(plugin, name="checked")
        pm.check_pending()
    except (pluggy.PluginValidationError, ValueError) as exc:
        known = ", ".join(n for n in dir(hookspecs) if n.startswith(("register_", "result_")))
        raise ConformanceError(who, "implements known hooks", f"{exc}. Known hooks: {known}") from exc
    found: dict[tuple[str, str], type[Plugin]] = {}
    for kind, hook in HOOKS.items():
        entries: list[Entry] = []

        def register(name: str, target: object, _k: str = kind) -> None:
            entries.append(Entry(kind=_k, name=name, target=target, plugin="checked", dist="?", dist_version="?"))

        for impl in getattr(pm.hook, hook).get_hookimpls():
            _call(who, "registers cleanly", f"{hook}()", lambda impl=impl: impl.function(register=register))
        for e in entries:
            if not isinstance(e.name, str) or not _NAME_RE.match(e.name):
                raise ConformanceError(who, "registers valid names", f"{LABEL[kind]} name {e.name!r}; use a short lowercase name")
            if (kind, e.name) in found:
                raise ConformanceError(who, "registers unique names", f"{LABEL[kind]} {e.name!r} is registered twice")
            try:
                found[(kind, e.name)] = e.resolve()
            except BenchError as exc:
                raise ConformanceError(who, "registers importable plugin classes", str(exc)) from exc
    if not found:
        raise ConformanceError(who, "registers something", "no register_* hook registered any plugin")
    return found


# --------------------------------------------------------------------------- fakes


class ToneDataset(Dataset):
    """Fake corpus: speech-like tones whose pitch and timbre give the class. Tiny, instant, deterministic."""

    name = "tones"
    version = "1"
    description = "tiny generated corpus: one pitch/timbre per class (tests, demos)"

    class Config(PluginConfig):
        n_speakers: int = 3
        per_class: int = 3
        classes: tuple[str, ...] = ("low", "high")
        duration_s: float = 0.5
        #: Assign official partitions (last speaker: test, second last: dev, others: train).
        partitions: bool = False
        seed: int = 0

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.has_partitions = self.config.partitions  # instance-level override of the class flag

    def _partition(self, s: int) -> str | None:
        if not self.config.partitions:
            return None
        n = self.config.n_speakers
        return "test" if s == n - 1 else "dev" if s == n - 2 and n > 2 else "train"

    def load_utterances(self) -> list[Utterance]:
        c = self.config
        out = []
        for s in range(c.n_speakers):
            for ci, cls in enumerate(c.classes):
                for k in range(c.per_class):
                    f0 = 110.0 * 1.7**ci * (0.94 + 0.04 * s) * (1 + 0.01 * k)
                    params = dict(f0=round(f0, 4), seed=c.seed * 1000 + s * 100 + ci * 10 + k, dur=c.duration_s,
                                  bright=0.5 + 0.12 * ci)
                    out.append(Utterance(
                        id=f"s{s}_{cls}_{k}", speaker=f"s{s}", label=cls, partition=self._partition(s),
                        loader=lambda p=params: speech_like(p["dur"], f0=p["f0"], seed=p["seed"], brightness=p["bright"]),
                        fingerprint=f"tones:v{self.version}:" + ",".join(f"{k}={v}" for k, v in sorted(params.items())),
                    ))
        return out


class ToneTraceDataset(Dataset):
    """Fake regression corpus: the 'arousal' trace is the signal's loudness envelope (hop 0.04 s)."""

    name = "tone-traces"
    version = "1"
    description = "tiny generated corpus with continuous labels (loudness traces; tests)"
    task: ClassVar[Literal["classification", "regression"]] = "regression"

    class Config(PluginConfig):
        n_speakers: int = 3
        per_speaker: int = 3
        duration_s: float = 1.0
        seed: int = 0

    HOP_S: ClassVar[float] = 0.04

    def _make(self, s: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        c = self.config
        rng = np.random.default_rng(c.seed * 1000 + s * 10 + k)
        x = speech_like(c.duration_s, f0=120 + 15 * s, seed=int(rng.integers(1 << 30)))
        n = int(round(c.duration_s * SAMPLE_RATE))
        t = np.arange(n) / n
        gain = 0.2 + 0.8 * (0.5 + 0.5 * np.sin(2 * np.pi * (t * rng.uniform(0.5, 2.0) + rng.uniform())))
        x = (x * gain).astype(np.float32)
        hop = int(self.HOP_S * SAMPLE_RATE)
        trace = np.array([gain[i * hop : (i + 1) * hop].mean() for i in range(n // hop)]) * 2 - 1
        return x, trace

    def load_utterances(self) -> list[Utterance]:
        c = self.config
        out = []
        for s in range(c.n_speakers):
            for k in range(c.per_speaker):
                _, trace = self._make(s, k)
                out.append(Utterance(
                    id=f"s{s}_{k}", speaker=f"s{s}", label=TimeSeries(trace, self.HOP_S),
                    loader=lambda s=s, k=k: self._make(s, k)[0],
                    fingerprint=f"tone-traces:v{self.version}:s={s},k={k},seed={c.seed},dur={c.duration_s}",
                ))
        return out


_COLOURS = ("white", "pink", "brown", "hum")


class FakeNoise(NoiseSource):
    """Fake noise source: seeded white/pink/brown noise and mains hum; every 4th clip is 'test'."""

    name = "fake-noise"
    version = "1"
    description = "generated coloured noise clips, train/test by clip index (tests)"

    class Config(PluginConfig):
        n_clips: int = 8
        duration_s: float = 1.0
        seed: int = 0

    @staticmethod
    def render(colour: str, n: int, seed: int) -> np.ndarray:
        """``n`` samples of ``colour`` noise ("white", "pink", "brown" or "hum"), peak 0.5."""
        rng = np.random.default_rng(seed)
        w = rng.standard_normal(n)
        if colour == "hum":
            t = np.arange(n) / SAMPLE_RATE
            x = sum(np.sin(2 * np.pi * 50 * h * t + rng.uniform(0, 6.3)) / h for h in (1, 2, 3, 5)) + 0.05 * w
        elif colour == "white":
            x = w
        else:
            f = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
            tilt = 1 / np.sqrt(np.maximum(f, 20.0)) if colour == "pink" else 1 / np.maximum(f, 20.0)
            x = np.fft.irfft(np.fft.rfft(w) * tilt, n)
        x = np.asarray(x, dtype=np.float64)
        return (0.5 * x / max(float(np.max(np.abs(x))), 1e-9)).astype(np.float32)

    def load_clips(self) -> list[NoiseClip]:
        c = self.config
        n = int(round(c.duration_s * SAMPLE_RATE))
        return [
            NoiseClip(
                id=f"{i:03d}-{_COLOURS[i % 4]}",
                loader=lambda i=i: self.render(_COLOURS[i % 4], n, c.seed * 1000 + i),
                fingerprint=f"fake-noise:v{self.version}:i={i},n={n},seed={c.seed}",
            )
            for i in range(c.n_clips)
        ]

    def part_of(self, clip: NoiseClip) -> Literal["train", "test"]:
        return "test" if int(clip.id[:3]) % 4 == 3 else "train"


class CentroidSER(SERModel):
    """Fake SER model: nearest class centroid on four standardised frame statistics. Instant."""

    name = "centroid"
    version = "1"
    description = "nearest-centroid classifier on energy/ZCR/spectral-centroid statistics (tests)"

    class Config(PluginConfig):
        pass

    def featurize(self, audio: np.ndarray) -> np.ndarray:
        x = np.asarray(audio, dtype=np.float64)
        spec = np.abs(np.fft.rfft(x * np.hanning(len(x)))) + 1e-12
        freqs = np.fft.rfftfreq(len(x), 1 / SAMPLE_RATE)
        centroid = float(np.sum(freqs * spec) / np.sum(spec))
        zcr = float(np.mean(np.abs(np.diff(np.signbit(x).astype(np.int8))))) if len(x) > 1 else 0.0
        peak_hz = float(freqs[int(np.argmax(spec))])
        return np.array([np.log(_rms(x) + 1e-9), zcr, np.log(centroid + 1.0), np.log(peak_hz + 1.0)], dtype=np.float32)

    def fit(self, train: FeatureSet, valid: FeatureSet | None = None) -> CentroidSER:
        X = train.stacked()
        self.mean_, self.scale_ = X.mean(0), X.std(0) + 1e-9
        y = np.asarray(train.y)
        self.classes_ = sorted(set(train.y or []))
        Z = (X - self.mean_) / self.scale_
        self.centroids_ = np.stack([Z[y == c].mean(0) for c in self.classes_])
        return self

    def predict(self, test: FeatureSet) -> list[Label]:
        Z = (test.stacked() - self.mean_) / self.scale_
        d = ((Z[:, None, :] - self.centroids_[None]) ** 2).sum(-1)
        return [self.classes_[i] for i in d.argmin(1)]


def make_tone_dataset(**options: Any) -> ToneDataset:
    """A :class:`ToneDataset` with ``options`` (n_speakers, per_class, classes, duration_s, partitions, seed)."""
    return ToneDataset(**options)


class _TestingPlugin:
    """Registers the fakes under their names: tones, tone-traces, fake-noise, centroid."""

    __name__ = "harness.testing"

    @hookimpl
    def register_datasets(self, register: Callable[..., None]) -> None:
        register("tones", ToneDataset)
        register("tone-traces", ToneTraceDataset)

    @hookimpl
    def register_noise_sources(self, register: Callable[..., None]) -> None:
        register("fake-noise", FakeNoise)

    @hookimpl
    def register_ser_models(self, register: Callable[..., None]) -> None:
        register("centroid", CentroidSER)


#: Pass to ``make_plugin_manager(extra=[testing_plugin])`` to make the fakes available by name.
testing_plugin = _TestingPlugin()

__all__ = [
    "CentroidSER", "ConformanceError", "FakeNoise", "ToneDataset", "ToneTraceDataset", "add_white_noise",
    "check_dataset", "check_enhancer", "check_hooks", "check_metadata", "check_noise_source", "check_plugin",
    "check_ser_model", "make_tone_dataset", "speech_like", "testing_plugin", "tone_bursts",
]
