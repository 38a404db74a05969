"""ser_bench.testing: the fakes pass, and deliberately broken plugins fail with clear messages."""
from __future__ import annotations

import types

import numpy as np
import pytest
from pydantic import BaseModel

from ser_bench import Dataset, Enhancer, FeatureSet, NoiseClip, PluginConfig, SERModel, TimeSeries, Utterance, hookimpl
from ser_bench.audio import write_audio
from ser_bench.testing import (
    CentroidSER,
    ConformanceError,
    FakeNoise,
    ToneDataset,
    ToneTraceDataset,
    check_dataset,
    check_enhancer,
    check_hooks,
    check_noise_source,
    check_plugin,
    check_ser_model,
    speech_like,
    testing_plugin,
)


# --------------------------------------------------------------------------- good plugins


class Passthrough(Enhancer):
    name = "passthrough"
    description = "returns its input"

    def enhance_signal(self, noisy: np.ndarray) -> np.ndarray:
        return noisy.copy()


class Gain(Enhancer):
    """Configurable, stateless: a good plugin with an option."""

    name = "gain"
    description = "scales the signal"

    class Config(PluginConfig):
        gain: float = 0.5

    def enhance_signal(self, noisy: np.ndarray) -> np.ndarray:
        return noisy * self.config.gain


class EnergyTrace(SERModel):
    """A working regression model: frame loudness -> trace, linear least squares."""

    name = "energy-trace"
    description = "linear map from frame RMS to the label trace"
    task = "regression"

    def featurize(self, audio: np.ndarray) -> np.ndarray:
        hop = 640
        n = len(audio) // hop
        rms = np.sqrt(np.mean(audio[: n * hop].reshape(n, hop) ** 2, axis=1))
        return np.convolve(rms, np.ones(6) / 6, mode="same").astype(np.float32)  # smooth over syllables

    def fit(self, train: FeatureSet, valid: FeatureSet | None = None) -> EnergyTrace:
        x = np.concatenate(train.X)
        y = np.concatenate([t.values[: len(f)] for t, f in zip(train.y, train.X)])
        self.coef_ = np.polyfit(x, y, 1)
        return self

    def predict(self, test: FeatureSet) -> list:
        return [TimeSeries(np.polyval(self.coef_, f), 0.04) for f in test.X]


@pytest.mark.parametrize(
    ("plugin", "kwargs"),
    [
        (Passthrough, {}),
        (Gain, {"options": {"gain": 0.25}}),
        (CentroidSER, {"min_score": 0.9}),
        (EnergyTrace, {"min_score": 0.5}),
        (ToneDataset, {}),
        (ToneDataset, {"options": {"partitions": True, "n_speakers": 4}}),
        (ToneTraceDataset, {}),
        (FakeNoise, {}),
    ],
)
def test_good_plugins_pass(plugin, kwargs):
    inst = check_plugin(plugin, **kwargs)
    assert isinstance(inst, plugin)


def test_check_accepts_a_configured_instance():
    assert check_enhancer(Gain(gain=2.0)).config.gain == 2.0


def test_check_hooks_lists_what_a_module_registers():
    found = check_hooks(testing_plugin)
    assert found == {
        ("dataset", "tones"): ToneDataset,
        ("dataset", "tone-traces"): ToneTraceDataset,
        ("noise_source", "fake-noise"): FakeNoise,
        ("ser_model", "centroid"): CentroidSER,
    }


# --------------------------------------------------------------------------- broken enhancers


class Shortener(Passthrough):
    name = "shortener"

    def enhance_signal(self, noisy):
        return noisy[:-1]


class NanOnSilence(Passthrough):
    name = "nan-on-silence"

    def enhance_signal(self, noisy):
        with np.errstate(invalid="ignore"):
            return noisy / np.max(np.abs(noisy)) * 0.5  # 0/0 on silence


class CrashOnShort(Passthrough):
    name = "crash-on-short"

    def enhance_signal(self, noisy):
        if len(noisy) < 400:
            raise ValueError("input shorter than one frame")
        return noisy.copy()


class Unseeded(Passthrough):
    name = "unseeded"

    def enhance_signal(self, noisy):
        return noisy + np.random.default_rng().normal(0, 1e-3, len(noisy)).astype(np.float32)


class InPlace(Passthrough):
    name = "in-place"

    def enhance_signal(self, noisy):
        noisy *= 0.5
        return noisy


class Delayed(Passthrough):
    name = "delayed"

    def enhance_signal(self, noisy):
        d = min(800, len(noisy))  # 50 ms latency, not compensated
        return np.concatenate([np.zeros(d, np.float32), noisy[: len(noisy) - d]])


class WrongRate(Passthrough):
    """Plays the input twice as fast (as if resampled 16 -> 8 kHz and read as 16 kHz), padded to length."""

    name = "wrong-rate"

    def enhance_signal(self, noisy):
        return np.tile(noisy[::2], 2)[: len(noisy)]


class Stateful(Passthrough):
    name = "stateful"
    calls = 0

    def enhance_signal(self, noisy):
        self.calls += 1
        return noisy * (1.0 if self.calls < 3 else 0.9)


class BadName(Passthrough):
    name = "My Enhancer"


class LooseConfig(Passthrough):
    name = "loose-config"

    class Config(BaseModel):  # not a PluginConfig: typos in options would pass silently
        level: float = 1.0


class NeedsTraining(Passthrough):
    name = "needs-training"
    requires_training = True


class Int16Out(Passthrough):
    name = "int16-out"

    def enhance_signal(self, noisy):
        return (noisy * 32767).astype(np.int16)


@pytest.mark.parametrize(
    ("plugin", "rule", "words"),
    [
        (Shortener, "keeps length", "returned shape (15999,) for an input of shape (16000,)"),
        (NanOnSilence, "handles silence", "NaN/inf samples for silence (all zeros)"),
        (CrashOnShort, "handles short inputs", "raised ValueError: input shorter than one frame"),
        (Unseeded, "is deterministic", "a second call on the same instance gave a different output"),
        (InPlace, "does not modify its input", "changed its input array"),
        (Delayed, "keeps the timing", "shifted by +50 ms"),
        (WrongRate, "keeps the sample rate", "a 1000 Hz tone came out with its peak at 2000 Hz"),
        (Stateful, "is deterministic", "keep no state between signals"),
        (BadName, "has a valid name", "'My Enhancer'"),
        (LooseConfig, "has a strict Config", "must subclass ser_bench.PluginConfig"),
        (NeedsTraining, "is ready to enhance", "is_trained() is False"),
        (Int16Out, "returns float samples", "got dtype int16"),
    ],
)
def test_broken_enhancers_fail_with_clear_messages(plugin, rule, words):
    with pytest.raises(ConformanceError) as info:
        check_enhancer(plugin)
    err = info.value
    assert err.rule == rule
    assert words in str(err)
    # The message names the kind, the registered name and the class.
    assert str(err).startswith(f"enhancer {plugin.name!r} ({__name__}.{plugin.__qualname__}) breaks rule {rule!r}")
    assert isinstance(err, AssertionError)  # pytest reports it as a failed assertion


class LearnsGain(Passthrough):
    """Needs training: learns a gain from the speech it is given."""

    name = "learns-gain"
    requires_training = True
    gain_ = None

    def is_trained(self):
        return self.gain_ is not None

    def train(self, speech, noise, **kwargs):
        assert noise.clips("train") and all(isinstance(u, Utterance) for u in speech)
        self.gain_ = kwargs.get("gain", 1.0)
        return {"n": len(speech)}

    def enhance_signal(self, noisy):
        return noisy * self.gain_


def test_trainable_enhancer_is_trained_on_fakes_when_asked():
    inst = check_enhancer(LearnsGain, train=True, train_kwargs={"gain": 0.5})
    assert inst.gain_ == 0.5
    trained = LearnsGain()
    trained.gain_ = 1.0
    check_enhancer(trained)  # an already trained instance needs nothing


def test_unbuildable_class_says_to_pass_options():
    class NeedsRoot(ToneDataset):
        name = "needs-root"

        class Config(PluginConfig):
            root: str

    with pytest.raises(ConformanceError, match=r"constructs from its options.*Pass the options it needs"):
        check_dataset(NeedsRoot)


def test_wrong_kind_is_rejected():
    with pytest.raises(ConformanceError, match="does not subclass ser_bench.Enhancer"):
        check_enhancer(ToneDataset)
    with pytest.raises(ConformanceError, match="subclasses none of"):
        check_plugin(int)


# --------------------------------------------------------------------------- broken SER models


class UnknownLabel(CentroidSER):
    name = "unknown-label"

    def predict(self, test):
        return ["surprise"] * len(test)


class FitReturnsNone(CentroidSER):
    name = "fit-returns-none"

    def fit(self, train, valid=None):
        super().fit(train, valid)


class PeeksAtLabels(CentroidSER):
    name = "peeks"

    def predict(self, test):
        return list(test.y)  # y is None at predict time


class WrongCount(CentroidSER):
    name = "wrong-count"

    def predict(self, test):
        return super().predict(test)[:-1]


class RandomGuess(CentroidSER):
    name = "random-guess"

    def predict(self, test):
        rng = np.random.default_rng()
        return [str(rng.choice(self.classes_)) for _ in range(len(test))]


class ListFeatures(CentroidSER):
    name = "list-features"

    def featurize(self, audio):
        return list(super().featurize(audio))


class ShortTraces(EnergyTrace):
    name = "short-traces"

    def predict(self, test):
        return [TimeSeries(p.values[:-5], 0.04) for p in super().predict(test)]


class Constant(CentroidSER):
    name = "constant"

    def predict(self, test):
        return [self.classes_[0]] * len(test)


@pytest.mark.parametrize(
    ("plugin", "rule", "words"),
    [
        (UnknownLabel, "predicts training classes", "predicted 'surprise'"),
        (FitReturnsNone, "fit() returns self", "fit() returned NoneType"),
        (PeeksAtLabels, "predicts without labels", "(test.y is None: predictions must not use labels) raised TypeError"),
        (WrongCount, "predicts one label per entry", "returned 5 labels for 6 entries"),
        (ListFeatures, "featurizes audio", "featurize() returned list"),
        (ShortTraces, "predicts time series", "for a reference of 25 frames"),
    ],
)
def test_broken_ser_models_fail(plugin, rule, words):
    with pytest.raises(ConformanceError) as info:
        check_ser_model(plugin)
    assert info.value.rule == rule
    assert words in str(info.value)
    assert f"SER model {plugin.name!r}" in str(info.value)


def test_nondeterministic_ser_model_fails():
    # Random guesses on 6 test entries agree by chance with probability 1/64 per try.
    with pytest.raises(ConformanceError, match="is deterministic"):
        for _ in range(3):
            check_ser_model(RandomGuess)


def test_min_score_catches_a_model_that_does_not_learn():
    check_ser_model(Constant)  # conforms...
    with pytest.raises(ConformanceError, match=r"learns the tone data.*scored 0.500"):
        check_ser_model(Constant, min_score=0.9)  # ...but learns nothing


# --------------------------------------------------------------------------- broken datasets


def _bad_dataset(name: str, make, **flags):
    cls = type(name.title().replace("-", ""), (Dataset,), {
        "name": name, "description": "broken on purpose", "load_utterances": lambda self: make(), "__module__": __name__, **flags,
    })
    return cls


def _utt(i: int, **kw) -> Utterance:
    base = dict(id=f"u{i}", speaker=f"s{i % 2}", label="ab"[i % 2],
                loader=lambda i=i: speech_like(0.3, seed=i), fingerprint=f"gen:{i}")
    base.update(kw)
    return Utterance(**base)


def test_dataset_rules(tmp_path):
    cases = [
        (_bad_dataset("dup-ids", lambda: [_utt(0), _utt(1), _utt(2, id="u0")]), "has unique ids", "'u0' occurs twice"),
        (_bad_dataset("silent", lambda: [_utt(0), _utt(1, loader=lambda: np.zeros(8000, np.float32))]),
         "has audible audio", "utterance 'u1' is silent"),
        (_bad_dataset("same-key", lambda: [_utt(i, fingerprint="gen") for i in range(4)]),
         "has unique content keys", "give each utterance a `fingerprint`"),
        (_bad_dataset("missing-file", lambda: [_utt(0), _utt(1, loader=None, path=tmp_path / "nope.wav", fingerprint=None)]),
         "has readable audio", "nope.wav: file not found"),
        (_bad_dataset("no-test", lambda: [_utt(i, partition="train") for i in range(4)], has_partitions=True),
         "has complete partitions", "partitions are ['train']"),
        (_bad_dataset("bad-partition", lambda: [_utt(0, partition="valid"), _utt(1)]),
         "uses known partitions", "partition 'valid'"),
        (_bad_dataset("one-class", lambda: [_utt(i, label="a") for i in range(4)]), "has several classes", "only one class"),
        (_bad_dataset("one-speaker", lambda: [_utt(i, speaker="x") for i in range(4)]), "has several speakers", "one speaker only"),
        (_bad_dataset("empty", lambda: []), "lists utterances", "(empty)"),
        (_bad_dataset("ts-in-classification", lambda: [_utt(0, label=TimeSeries(np.zeros(3)))]), "has valid labels", "non-empty strings"),
        (_bad_dataset("unstable-order", lambda: [_utt(i) for i in np.random.default_rng().permutation(12)]),
         "is deterministic", "another order"),
    ]
    for cls, rule, words in cases:
        with pytest.raises(ConformanceError) as info:
            check_dataset(cls)
        assert (info.value.rule, cls.name) == (rule, cls.name)
        assert words in str(info.value), str(info.value)
        assert f"dataset {cls.name!r}" in str(info.value)


def test_dataset_with_files_passes(tmp_path):
    paths = []
    for i in range(4):
        p = tmp_path / f"{i}.wav"
        write_audio(p, speech_like(0.3, seed=i))
        paths.append(p)

    class Files(Dataset):
        name = "files"
        description = "wav files"

        def load_utterances(self):
            return [Utterance(id=p.stem, speaker=f"s{i % 2}", label="ab"[i // 2], path=p) for i, p in enumerate(paths)]

    check_dataset(Files)


def test_regression_labels_must_match_the_audio():
    class LongTraces(ToneTraceDataset):
        name = "long-traces"

        def load_utterances(self):
            return [Utterance(id=u.id, speaker=u.speaker, label=TimeSeries(np.zeros(50), 0.04), loader=u.loader,
                              fingerprint=u.fingerprint) for u in super().load_utterances()]

    with pytest.raises(ConformanceError, match=r"has labels matching the audio.*50 frames x 0.04 s = 2.00 s of labels for 1.00 s"):
        check_dataset(LongTraces)


# --------------------------------------------------------------------------- broken noise sources


class AllTrain(FakeNoise):
    name = "all-train"

    def part_of(self, clip):
        return "train"


class CopiedClips(FakeNoise):
    """The same audio under two ids, one in each part (e.g. a file copied into two folders)."""

    name = "copied-clips"

    def load_clips(self):
        clips = super().load_clips()
        return clips + [NoiseClip(id="007-white", loader=clips[0].loader, fingerprint="copy")]


class OrderDependent(FakeNoise):
    name = "order-dependent"
    _n = 0

    def part_of(self, clip):
        self._n += 1
        return "test" if self._n % 4 == 0 else "train"


class NoFingerprints(FakeNoise):
    name = "no-fingerprints"

    def load_clips(self):
        return [NoiseClip(id=c.id, loader=c.loader) for c in super().load_clips()]


@pytest.mark.parametrize(
    ("plugin", "rule", "words"),
    [
        (AllTrain, "has disjoint train and test parts", "the 'test' part is empty (8 clips)"),
        (CopiedClips, "has disjoint train and test parts", "clips '000-white' (train) and '007-white' (test) hold identical audio"),
        (OrderDependent, "is deterministic", "part_of() depends on call order"),
        (NoFingerprints, "has unique fingerprints", "mixtures are cached under it"),
    ],
)
def test_broken_noise_sources_fail(plugin, rule, words):
    with pytest.raises(ConformanceError) as info:
        check_noise_source(plugin)
    assert info.value.rule == rule
    assert words in str(info.value)
    assert f"noise source {plugin.name!r}" in str(info.value)


# --------------------------------------------------------------------------- hooks


def test_check_hooks_catches_a_misspelled_hook():
    mod = types.ModuleType("typo_plugin")

    @hookimpl
    def register_enhancer(register):  # missing "s": pluggy would ignore it without check_pending
        register("x", Passthrough)

    mod.register_enhancer = register_enhancer
    with pytest.raises(ConformanceError, match=r"implements known hooks.*register_enhancer.*Known hooks: .*register_enhancers"):
        check_hooks(mod)


def test_check_hooks_catches_a_wrong_base_class_and_a_bad_lazy_target():
    mod = types.ModuleType("wrong_plugin")
    mod.register_enhancers = hookimpl(lambda register: register("tones-as-enhancer", ToneDataset))
    with pytest.raises(ConformanceError, match="not a subclass of ser_bench.Enhancer"):
        check_hooks(mod)
    mod.register_enhancers = hookimpl(lambda register: register("lazy", "no_such_module_xyz:Thing"))
    with pytest.raises(ConformanceError, match=r"registers importable plugin classes.*No module named 'no_such_module_xyz'"):
        check_hooks(mod)
