"""``guarded-NAME``: apply enhancer NAME only as much as it helps (any registered enhancer NAME).

For each utterance, ``output = noisy + w * (enhanced - noisy)`` with ``w`` in [0, 1] taken from
a blind estimate ``e`` (dB; no clean reference) through a calibrated ramp::

    w = clip((hi - e) / (hi - lo), 0, 1)      # 1 below lo (noisy: keep the enhancement),
                                               # 0 above hi (clean: keep the input)

raised, where the calibration finds it pays, by a second ramp on another estimate (the
*backstop*, below).

Estimates (``estimator``):

* ``wada``: WADA-SNR of the noisy input (Kim & Stern 2008: the waveform-amplitude distribution
  of speech as Gamma(0.4) plus Gaussian noise; the lookup table is simulated, seeded).
* ``removed``: the SNR as the inner enhancer sees it, ``10 log10(E[enhanced^2] / E[(noisy -
  enhanced)^2])``: the energy it kept over the energy it removed.
* ``inner``: the inner enhancer's own SNR estimate, the mean of ``enhance_with_snr(x) -> (y,
  snr_per_frame)`` over frames (e.g. DeepFilterNet's local SNR); only for enhancers that have it.
* ``auto`` (default): calibrate every available estimate and keep the one with the best criterion.

**Calibration** (:func:`calibrate`) never sees SER data: it mixes the *validation* speakers of a
clean-speech corpus (``librispeech`` by default: the speakers :func:`ser_bench.training.split_speakers`
holds out for validation, which rescnn never trains on) with the validation clips of a noise
source's *train* part (never its test part, which SER evaluation uses), at -5..30 dB. For every
mixture it scores ``w`` on a grid by a clean-reference criterion that tracks feature-based SER:
the distance of the eGeMAPS functionals of the output to those of the clean speech (squared
z-scores, features scaled by their spread over all calibration signals), as a log ratio to the
distance of the noisy input. ``(estimator, lo, hi)`` minimise the mean log ratio plus
``harm_weight`` (default 3) times the mean of its positive part: making a mixture worse than
the noisy input costs four times as much, since the guard's first duty is not to hurt (and the
feature distance is optimistic about harm: it rates full Wiener filtering at 20 dB as harmless).
Its second duty is to keep the enhancement where the input is very noisy. Writing that into the
calibration as a constraint (a ramp keeping a mean ``w`` >= 0.9 at <= 0 dB) was tried and removed:
for DeepFilterNet it moved the ramp onto the removed-energy SNR alone, which also drops on
distorted loud speech, and UAR fell 1.0-3.6 pp below noisy at 15-20 dB in three of four corpus x
feature-set cases (stop 19). The backstop below keeps that duty without giving up the first.

**Backstop** (``backstop``, on by default): one estimate may be blind where another sees. The
calibration therefore fits, after the best single ramp, a second ramp on another estimate, ``w =
max(ramp(e1), ramp(e2))``, by the same cost, and keeps it only if it lowers the cost by at least
0.01. For DeepFilterNet (version 2: the ``floor`` 16 -> 48 kHz path) the best single ramp is the
energy it removed, 6..26 dB (cost -0.793), and a WADA-SNR backstop at 1..26 dB lowers the cost to
-0.855: ``w`` = 1.0 at -5 / 0 / 5 dB, 0.83 / 0.62 / 0.41 / 0.19 at 10 / 15 / 20 / 30 dB. (Through
the earlier soxr path its own local-SNR estimate was chosen, -8..28 dB, backstopped by the removed
energy at -1..2 dB; that estimate read -5 and 0 dB input alike, about -3.5 dB.)
With ``backstop=false`` the calibration (and its key) is the single ramp, as before.

**The emotion criterion** (``criterion="emotion"``, issue 22): the eGeMAPS distance above is a
proxy that rated DeepFilterNet helpful at 20 dB where clean-trained SVMs lost UAR, and it was
fitted on read English only; on a natural-speech corpus in another language the guard fell
7.8 pp below noisy at 20 dB. The emotion criterion calibrates on the task instead: a labelled
SER corpus that is *not* the one under test (``emotion_corpus``; a run on it is refused, see
:meth:`GuardedEnhancer.calibration_corpora`) is split by speaker; one half fits clean-trained
emotion classifiers (logistic regression on eGeMAPS and on ComParE functionals), the other half
is mixed with the noise train part at -5..30 dB, and each ``w`` is scored by the classifiers'
log-loss of the true emotion. The cost is the mean change of loss from the noisy input plus
``harm_weight`` times the mean over SNRs of the worst classifier's positive mean change in that
SNR: harm is counted where the promise is made (per SNR, per SER model), since per-utterance
losses are too noisy to judge one mixture by. Proxies tried on the way and why they failed are in
:class:`ser_bench_plugins.guard_fit.EmotionModels`.

**The published alternatives**, fitted on the same data by the same cost, to compare with:
``oadd-NAME`` (observation adding: one ``w`` for every input) and ``snrswitch-NAME`` (``w`` = 1
below a threshold of a blind SNR estimate, else 0, as NRSER does). ``benchmarks/guard_heldout.py``
checks the promises of all three over noise draws, each corpus calibrated without itself.

The calibration is keyed by the inner enhancer's identity (weights digest included), the
calibration data recipe and the options (:meth:`GuardedEnhancer.calibration_key`) and stored:
first looked up in the committed ``guarded_calibration.json`` beside this module, then in the
artefact cache (``calibration_dir``, default ``$BENCH_CACHE`` / ``.bench-cache``), else computed
from ``speech_root`` / ``noise_root`` and cached. ``calibration={"estimator": ..., "lo": ...,
"hi": ...}`` fixes the ramp by hand. Recalibrate and store with::

    python -m ser_bench_plugins.guarded calibrate wiener --speech-root ../shared/data/librispeech \\
        --noise-root ../shared/data/noise --store
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from ser_bench import Enhancer, PluginConfig, hookimpl
from ser_bench.errors import ConfigError
from ser_bench.interfaces import SAMPLE_RATE, NoiseClip, stable_hash
from ser_bench_plugins.guard_fit import (  # noqa: F401 - the guard's names, re-exported
    ESTIMATORS, W_GRID, CALIB_SNRS, BACKSTOP_MIN_GAIN, POLICIES, CONSTANT_GRID, EMOTION_FEATURES,
    EMOTION_FIT_SALT, EmotionModels, _estimators_of, _zero_without_inner, egemaps,
    enhance_and_estimate, fit_ramp, functionals, has_inner_snr, ramp, removed_snr, score_mixtures,
    wada_snr, weight_of,
)

PREFIX = "guarded-"
STORE_FILE = Path(__file__).resolve().parent / "guarded_calibration.json"
CALIBRATION_VERSION = "1"

# --------------------------------------------------------------------------- the wrapper


class GuardedEnhancer(Enhancer):
    """The wrapper; ``guarded-NAME`` names a subclass bound to enhancer NAME (:meth:`wrap`)."""

    name: ClassVar[str] = PREFIX + "*"
    version: ClassVar[str] = "2"  # 2: reads its inner enhancer's output as 16-bit PCM (ENHANCED_FORMAT)
    description: ClassVar[str] = (
        "guarded-NAME for any enhancer NAME: keeps w*(enhanced-noisy), w from a blind SNR estimate "
        "calibrated on enhancer-validation speech + noise train part (never SER test data)"
    )
    applied: ClassVar[str] = "applied only as much as it helps"
    inner_name: ClassVar[str | None] = None
    inner_cls: ClassVar[type[Enhancer] | None] = None
    #: how w follows the estimate (POLICIES); the pattern classes below fix it
    policy: ClassVar[str] = "ramp"
    prefix: ClassVar[str] = PREFIX

    class Config(PluginConfig):
        inner: dict[str, Any] = Field(default_factory=dict, description="options of the inner enhancer")
        estimator: Literal["auto", "wada", "removed", "inner"] = Field(
            "auto", description="blind estimate w is computed from (auto: the best on calibration data)")
        calibration: dict[str, Any] | None = Field(
            None, description='fixed ramp {"estimator": E, "lo": dB, "hi": dB} instead of calibrating')
        speech: str = Field("librispeech", description="calibration speech corpus (its validation speakers)")
        speech_root: Path | None = Field(None, description="its root (needed only to calibrate)")
        noise: str = Field("folder", description="calibration noise source (its train part)")
        noise_root: Path | None = Field(None, description="its root (needed only to calibrate)")
        speech_options: dict[str, Any] = Field(default_factory=dict, description="more options of the speech corpus")
        noise_options: dict[str, Any] = Field(default_factory=dict, description="more options of the noise source")
        snrs: tuple[float, ...] = Field(CALIB_SNRS, description="SNRs (dB) of the calibration mixtures")
        per_snr: int = Field(16, ge=1, description="calibration utterances per SNR")
        max_seconds: float = Field(3.0, gt=0, description="utterances are cropped to this length")
        seed: int = Field(4242, description="seed of the calibration mixtures")
        harm_weight: float = Field(3.0, ge=0, description="extra cost of mixtures made worse than the noisy input")
        backstop: bool = Field(True, description="let a second blind estimate raise w where the first misses "
                               "(w = max of two ramps), if that lowers the calibration cost by >= 0.01")
        calibration_dir: Path | None = Field(None, description="artefact cache (default $BENCH_CACHE/.bench-cache)")
        criterion: Literal["egemaps", "emotion"] = Field(
            "egemaps", description="what calibration minimises: 'egemaps' (distance of eGeMAPS functionals to "
            "the clean speech's) or 'emotion' (log-loss of the true emotion under eGeMAPS and ComParE emotion "
            "classifiers fitted on clean speech of emotion_corpus; the worse change from the noisy input counts)")
        emotion_corpus: str | None = Field(
            None, description="criterion 'emotion': labelled SER corpus; half its speakers fit the classifiers, the "
            "other half's utterances are the calibration mixtures' speech. Never the corpus under test (a run refuses)")
        emotion_root: Path | None = Field(None, description="its root (needed only to calibrate)")
        emotion_options: dict[str, Any] = Field(default_factory=dict, description="more options of emotion_corpus")

    # ------------------------------------------------------------------ binding
    @classmethod
    def wrap(cls, inner_name: str, inner_cls: type[Enhancer]) -> type[GuardedEnhancer]:
        """The ``guarded-<inner_name>`` class."""
        return type(f"{cls.__name__}[{inner_name}]", (cls,), {
            "name": cls.prefix + inner_name, "inner_name": inner_name, "inner_cls": inner_cls,
            "requires_training": inner_cls.requires_training, "__module__": cls.__module__,
            "description": f"{inner_name}, {cls.applied} (see {cls.prefix}*)",
        })

    def __init__(self, **options: Any) -> None:
        if self.inner_cls is None:
            raise ConfigError("'guarded-*' is a pattern: name an enhancer, e.g. --enhancer guarded-wiener")
        super().__init__(**options)
        self.inner = self.inner_cls(**self.config.inner)
        self._calib: dict[str, Any] | None = None

    def __reduce__(self):  # dynamic classes pickle by their pattern class and inner class
        return (_rebuild, (type(self).__mro__[1], self.inner_name, self.inner_cls,
                           self.config.model_dump(mode="json")))

    def is_trained(self) -> bool:
        return self.inner.is_trained()

    def train(self, speech, noise, **kwargs: Any) -> dict[str, Any]:
        return self.inner.train(speech, noise, **kwargs)

    # ------------------------------------------------------------------ identity
    def _recipe(self) -> dict[str, Any]:
        c = self.config
        rec = {"version": CALIBRATION_VERSION, "speech": c.speech, "speech_options": c.speech_options,
               "split": "split_speakers valid, test_fraction 0", "noise": c.noise, "noise_options": c.noise_options,
               "noise_part": "train",
               "noise_clips": "split_clips valid", "snrs": list(c.snrs), "per_snr": c.per_snr,
               "max_seconds": c.max_seconds, "seed": c.seed, "w_grid": list(W_GRID),
               "criterion": "eGeMAPSv02 functionals, mean squared z distance to clean, log ratio to noisy",
               "estimator": c.estimator, "harm_weight": c.harm_weight,
               # off: the key of the calibrations made before the backstop existed
               **({"backstop_min_gain": BACKSTOP_MIN_GAIN} if c.backstop and self.policy == "ramp" else {}),
               # the defaults (ramp, eGeMAPS distance) leave the keys of earlier calibrations as they were
               **({"policy": self.policy, "w_constant_grid": list(CONSTANT_GRID)} if self.policy != "ramp" else {})}
        if c.criterion == "emotion":  # the emotion corpus's speech replaces the clean-speech corpus
            for k in ("speech", "speech_options", "split"):
                rec.pop(k)
            rec.update({
                "criterion": "emotion: log-loss of the true emotion, -log max(p, 1e-3), under clean-trained "
                             "multinomial logistic regression (StandardScaler, C=0.05, balanced) per feature set; "
                             "cost: mean change of loss from the noisy input + harm_weight x mean over SNRs of "
                             "the worst criterion's positive mean change in that SNR",
                "emotion_corpus": c.emotion_corpus, "emotion_options": c.emotion_options,
                "emotion_features": list(EMOTION_FEATURES),
                "emotion_split": f"split_speakers valid 0.5 salt {EMOTION_FIT_SALT}: train fits, valid mixes"})
        return rec

    def calibration_key(self) -> str:
        """Inner identity (weights included) + calibration data recipe + options."""
        return stable_hash({"inner": self.inner.identity(), "recipe": self._recipe()}, n=32)

    def identity(self) -> dict[str, Any]:
        ident = super().identity()
        for k in ("speech_root", "noise_root", "emotion_root", "calibration_dir", "inner"):
            ident["config"].pop(k, None)  # where data lies is not what it is; inner: below
        ident["inner"] = self.inner.identity()
        ident["calibration"] = self.config.calibration or self.calibration_key()
        return ident

    # ------------------------------------------------------------------ calibration
    def estimators(self) -> list[str]:
        if self.config.estimator != "auto":
            return [self.config.estimator]
        return [e for e in ESTIMATORS if e != "inner" or has_inner_snr(self.inner)]

    def calibration_corpora(self) -> frozenset[str]:
        """The datasets whose speech this calibration uses: a run on any of them is refused
        (:func:`ser_bench.plan.plan`), since the calibration would have seen its test speakers."""
        if self.config.calibration is not None:
            return frozenset()
        c = self.config
        if c.criterion == "emotion":
            return frozenset({c.emotion_corpus} if c.emotion_corpus else set())
        return frozenset({c.speech})

    def _registry(self, registry=None):
        if registry is None:
            from ser_bench.plugins import default_registry

            registry = default_registry()
        return registry

    def _emotion_split(self, registry=None) -> dict[str, list]:
        """The emotion corpus's utterances: ``train`` (half its speakers) fits the classifiers,
        ``valid`` (the other half) joins the calibration mixtures."""
        from ser_bench.training import split_speakers

        c = self.config
        if not c.emotion_corpus or c.emotion_root is None:
            raise ConfigError(
                f"{self.name}: criterion 'emotion' needs a labelled corpus that is not the one under test: "
                f"-o {self.name}.emotion_corpus=NAME -o {self.name}.emotion_root=PATH "
                f"(no stored calibration has key {self.calibration_key()})")
        corpus = self._registry(registry).create("dataset", c.emotion_corpus,
                                                 {**c.emotion_options, "root": str(c.emotion_root)})
        return split_speakers(corpus.utterances(), valid_fraction=0.5, test_fraction=0.0, salt=EMOTION_FIT_SALT)

    def calibration_data(self, registry=None):
        """(calibration utterances, validation noise clips of the train part, noise source name).

        Utterances: the validation speakers of ``speech``; with criterion ``emotion``, a dict
        ``{emotion_corpus: its mixing half}`` (labelled speech, which the criterion needs). Only
        these and the noise *train* part are loaded: no test-part clip and no utterance of the SER
        corpus under test is touched."""
        from ser_bench.training import cache_clips, split_clips, split_speakers

        c = self.config
        emotion = c.criterion == "emotion"
        if (c.speech_root is None and not emotion) or c.noise_root is None:
            raise ConfigError(
                f"{self.name}: no stored calibration for this inner enhancer (key {self.calibration_key()}); "
                f"give the calibration data: -o {self.name}.speech_root=PATH -o {self.name}.noise_root=PATH "
                f"(or run: python -m ser_bench_plugins.guarded calibrate {self.inner_name} --speech-root PATH --noise-root PATH)")
        registry = self._registry(registry)
        noise = registry.create("noise_source", c.noise, {**c.noise_options, "root": str(c.noise_root)})
        _, clips = split_clips(cache_clips(noise.clips("train")))  # as the rescnn trainer splits them
        if emotion:
            return {c.emotion_corpus: self._emotion_split(registry)["valid"]}, clips, noise.name
        speech = registry.create("dataset", c.speech, {**c.speech_options, "root": str(c.speech_root)})
        utts = split_speakers(speech.utterances(), valid_fraction=0.1, test_fraction=0.0)["valid"]
        return utts, clips, noise.name

    def calibration_mixtures(self, utterances, clips: Sequence[NoiseClip], source: str):
        """(speech pools, mixtures) of the calibration recipe: ``per_snr`` utterances of each
        group of ``utterances`` (a list, or a dict of corpus -> list) at each SNR."""
        from ser_bench.training import SpeechPool, fixed_mixtures

        c = self.config
        groups = utterances if isinstance(utterances, dict) else {c.speech: utterances}
        pools, exs = {}, []
        for name, utts in groups.items():
            pools[name] = SpeechPool.load(utts)
            exs += fixed_mixtures(pools[name], clips, c.snrs, seed=c.seed, source=source, per_snr=c.per_snr,
                                  max_seconds=c.max_seconds)
        return pools, exs

    @staticmethod
    def _labels(utterances) -> dict[str, Any] | None:
        """Speech id -> label of dict-grouped (emotion criterion) calibration utterances."""
        if not isinstance(utterances, dict):
            return None
        return {u.id: u.label for utts in utterances.values() for u in utts}

    def criteria(self, registry=None) -> list | None:
        """The ``emotion`` criterion's maps (classifiers fitted on the corpus's fitting half), else None."""
        if self.config.criterion != "emotion":
            return None
        return EmotionModels(self._emotion_split(registry)["train"]).criteria()

    def calibrate_on(self, utterances, clips: Sequence[NoiseClip], source: str, scores=None) -> dict[str, Any]:
        """Calibrate on these utterances and clips (which must hold no SER test data). ``scores``:
        :func:`score_mixtures` of exactly these mixtures, if already computed."""
        pools, exs = self.calibration_mixtures(utterances, clips, source)
        if scores is None:
            scores = score_mixtures(self.inner, exs, criteria=self.criteria(), labels=self._labels(utterances))
        elif len(scores["snrs"]) != len(exs):
            raise ConfigError(f"scores of {len(scores['snrs'])} mixtures given for {len(exs)}")
        fit = fit_ramp(scores, self.estimators(), harm_weight=self.config.harm_weight, backstop=self.config.backstop,
                       policy=self.policy)
        fit.update({"key": self.calibration_key(), "inner": self.inner_name, "recipe": self._recipe(),
                    "utterances": sorted({i for p in pools.values() for i in p.ids}),
                    "speakers": sorted({s for p in pools.values() for s in p.speakers}),
                    "noise_clips": sorted({e.clip_id for e in exs}), "n_mixtures": len(exs)})
        if self.policy != "ramp":
            fit["name"] = self.name
        return fit

    def _check_fixed(self, cal: dict[str, Any]) -> None:
        """A calibration given by hand must be complete for this wrapper's policy."""
        def ramp_ok(r) -> bool:
            return isinstance(r, dict) and {"estimator", "lo", "hi"} <= set(r) and r["estimator"] in ESTIMATORS

        policy = cal.get("policy")
        if policy == "constant":
            ok, want = isinstance(cal.get("w"), int | float) and 0 <= cal["w"] <= 1, "{'w': 0..1}"
        elif policy == "switch":
            ok = cal.get("estimator") in ESTIMATORS and isinstance(cal.get("threshold"), int | float)
            want = f"{{'estimator': one of {ESTIMATORS}, 'threshold': dB}}"
        else:
            b = cal.get("backstop")
            ok = policy == "ramp" and ramp_ok(cal) and (b is None or ramp_ok(b))
            want = f"{{'estimator': one of {ESTIMATORS}, 'lo': dB, 'hi': dB[, 'backstop': {{'estimator': ..., 'lo': dB, 'hi': dB}}]}}"
        if not ok or policy != self.policy:
            raise ConfigError(f"{self.name}: calibration must be {want}, not {self.config.calibration}")

    def _cache(self):
        from ser_bench.cache import Cache

        return Cache(self.config.calibration_dir)

    def calibration(self) -> dict[str, Any]:
        """The ramp: fixed by option, stored (committed file, then cache), else computed and cached."""
        if self._calib is not None:
            return self._calib
        if self.config.calibration is not None:
            cal = {"policy": self.policy, **self.config.calibration}
            self._check_fixed(cal)
            self._calib = cal
            return cal
        key = self.calibration_key()
        stored = load_store().get(key)
        if stored is None:
            cache = self._cache()
            blob = cache.load("guarded-calibration", key)
            if blob is not None:
                stored = json.loads(bytes(blob).decode())
            else:
                stored = self.calibrate_on(*self.calibration_data())
                cache.store("guarded-calibration", key, np.frombuffer(json.dumps(stored).encode(), np.uint8))
        self._calib = stored
        return stored

    # ------------------------------------------------------------------ inference
    def weight(self, noisy: np.ndarray, enhanced: np.ndarray, inner_snr: float | None = None) -> float:
        cal = self.calibration()
        est: dict[str, float] = {}
        for name in _estimators_of(cal):
            if name == "wada":
                est[name] = wada_snr(noisy)
            elif name == "removed":
                est[name] = removed_snr(noisy, enhanced)
            else:
                if inner_snr is None:
                    raise ConfigError(f"{self.name}: calibrated on the inner SNR estimate, which "
                                      f"{self.inner_name!r} does not provide")
                est[name] = inner_snr
        return weight_of(cal, est)

    def run_inner(self, noisy: np.ndarray, want_snr: bool) -> tuple[np.ndarray, float | None]:
        """The inner enhancer's output for ``noisy`` and, if ``want_snr``, the mean of its own SNR
        estimate (:meth:`Enhancer.enhance_keeping_snr`)."""
        return self.inner.enhance_keeping_snr(noisy) if want_snr else (self.inner.enhance(noisy), None)

    def enhance_with_weight(self, noisy: np.ndarray, inner_output=None) -> tuple[np.ndarray, float]:
        """``(output, w)``. ``inner_output(want_snr)`` supplies the inner output (e.g. from the
        run's audio cache, see :meth:`enhance_from_inner`); default: run the inner enhancer."""
        cal = self.calibration()  # fail before enhancing if there is none
        x = np.asarray(noisy, np.float32)
        if _zero_without_inner(cal, x):
            return x.copy(), 0.0  # w = 0 whatever the inner output: skip the inner enhancer
        if inner_output is None:
            def inner_output(want_snr: bool) -> tuple[np.ndarray, float | None]:
                return self.run_inner(x, want_snr)
        y, inner_snr = inner_output("inner" in _estimators_of(cal))
        y = np.asarray(y, np.float32)
        w = self.weight(x, y, inner_snr)
        return (x + np.float32(w) * (y - x)).astype(np.float32), w

    def enhance_signal(self, noisy: np.ndarray) -> np.ndarray:
        return self.enhance_with_weight(noisy)[0]

    def enhance_from_inner(self, noisy: np.ndarray, inner_output) -> np.ndarray:
        return self.enhance_with_weight(noisy, inner_output)[0]


def _rebuild(pattern: type[GuardedEnhancer], inner_name: str, inner_cls: type[Enhancer],
             options: dict[str, Any]) -> GuardedEnhancer:
    return pattern.wrap(inner_name, inner_cls)(**options)


def load_store(path: Path = STORE_FILE) -> dict[str, Any]:
    """The committed calibrations, by key."""
    if not path.exists():
        return {}
    return json.loads(path.read_text())


def save_to_store(cal: dict[str, Any], path: Path = STORE_FILE) -> None:
    data = load_store(path)
    data[cal["key"]] = cal
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


class ObservationAdding(GuardedEnhancer):
    """``oadd-NAME``: observation adding, ``output = noisy + w * (enhanced - noisy)`` with one
    ``w`` for every input (i.e. ``(1 - a) * enhanced + a * noisy``, ``a = 1 - w``), ``w`` chosen on
    the same calibration data by the same cost as ``guarded-NAME``. The published baseline the
    guard is compared with."""

    name: ClassVar[str] = "oadd-*"
    prefix: ClassVar[str] = "oadd-"
    policy: ClassVar[str] = "constant"
    applied: ClassVar[str] = "mixed with the noisy input at one calibrated ratio (observation adding)"
    description: ClassVar[str] = (
        "oadd-NAME for any enhancer NAME: observation adding, noisy + w*(enhanced-noisy) with one w "
        "calibrated like guarded-NAME")


class SNRSwitch(GuardedEnhancer):
    """``snrswitch-NAME``: enhance fully where a blind SNR estimate is below a threshold, pass the
    input through above it (as NRSER does); estimator and threshold calibrated like ``guarded-NAME``."""

    name: ClassVar[str] = "snrswitch-*"
    prefix: ClassVar[str] = "snrswitch-"
    policy: ClassVar[str] = "switch"
    applied: ClassVar[str] = "applied only below a calibrated estimated-SNR threshold (NRSER-style switch)"
    description: ClassVar[str] = (
        "snrswitch-NAME for any enhancer NAME: enhance below a calibrated blind-SNR threshold, else pass "
        "the input through")


@hookimpl
def register_enhancers(register):
    for cls in (GuardedEnhancer, ObservationAdding, SNRSwitch):
        register(cls.name, cls, cls.description)


def main(argv: Sequence[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m ser_bench_plugins.guarded", description="Calibrate guarded-NAME.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("calibrate", help="calibrate guarded-NAME; print (and with --store, commit) the ramp")
    p.add_argument("inner")
    p.add_argument("--speech-root", default=None, help="clean-speech corpus (not needed with -o criterion=emotion)")
    p.add_argument("--noise-root", required=True)
    p.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE",
                   help="guarded option (JSON value), e.g. inner={\"checkpoint\": \"x.pt\"}")
    p.add_argument("--store", action="store_true", help=f"add the result to {STORE_FILE.name}")
    p.add_argument("--scores", help="a pickle of score_mixtures() for exactly these mixtures (skips the scoring)")
    p.add_argument("--save-scores", help="write the score_mixtures() pickle here (for --scores later)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--as", dest="policy_prefix", choices=("guarded-", "oadd-", "snrswitch-"), default=None,
                   help="which wrapper to calibrate: guarded- (ramp, default), oadd- (one w), snrswitch- (threshold)")
    a = ap.parse_args(argv)
    try:
        import torch

        torch.set_num_threads(a.threads)
    except ImportError:  # pragma: no cover
        pass
    from ser_bench.plugins import default_registry

    opts: dict[str, Any] = {"speech_root": a.speech_root, "noise_root": a.noise_root}
    for kv in a.option:
        k, _, v = kv.partition("=")
        try:
            opts[k] = json.loads(v)
        except json.JSONDecodeError:
            opts[k] = v
    enh = default_registry().create("enhancer", (a.policy_prefix or PREFIX) + a.inner, opts)
    scores = None
    if a.scores:
        import pickle

        with open(a.scores, "rb") as f:
            scores = pickle.load(f)
    data = enh.calibration_data()
    if scores is None and a.save_scores:
        import pickle

        scores = score_mixtures(enh.inner, enh.calibration_mixtures(*data)[1], criteria=enh.criteria(),
                                labels=enh._labels(data[0]))
        with open(a.save_scores, "wb") as f:
            pickle.dump(scores, f)
    cal = enh.calibrate_on(*data, scores=scores)
    print(json.dumps({k: v for k, v in cal.items() if k not in ("utterances", "noise_clips")}, indent=1))
    if a.store:
        save_to_store(cal)


if __name__ == "__main__":
    main()
