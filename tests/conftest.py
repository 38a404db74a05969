"""Shared fixtures: an isolated database and cache per test, tiny synthetic audio, fake plugins."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ser_bench import Dataset, Enhancer, FeatureSet, NoiseClip, NoiseSource, SERModel, Utterance, hookimpl

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    """Every test gets its own registry.db and cache; third-party plugins stay out unless a test asks."""
    monkeypatch.setenv("BENCH_DB", str(tmp_path / "registry.db"))
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)


def tone(freq: float, seconds: float = 0.25, sr: int = 16_000, amp: float = 0.3, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(seed)
    return (amp * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


class ToneDataset(Dataset):
    """2 classes (low/high tone) x 3 speakers x 2 utterances, 0.25 s each."""

    name = "tones"

    def load_utterances(self):
        out = []
        for s in range(3):
            for label, f in (("low", 220.0), ("high", 880.0)):
                for i in range(2):
                    out.append(Utterance(id=f"s{s}_{label}_{i}", speaker=f"s{s}", label=label,
                                         loader=lambda f=f, s=s, i=i: tone(f * (1 + 0.02 * s), seed=10 * s + i),
                                         fingerprint=f"tones:{s}:{label}:{i}"))
        return out


class WhiteNoise(NoiseSource):
    name = "white-test"

    def load_clips(self):
        return [NoiseClip(id=f"w{i}", loader=lambda i=i: np.random.default_rng(i).standard_normal(8000).astype(np.float32),
                          fingerprint=f"w{i}") for i in range(4)]

    def part_of(self, clip):
        return "test" if clip.id in ("w0", "w1") else "train"


class HalfGain(Enhancer):
    name = "half"

    def enhance_signal(self, noisy):
        return noisy * 0.5


class PeakModel(SERModel):
    """Classifies by the dominant FFT bin: fast, deterministic, learns the tone task."""

    name = "peak"

    def featurize(self, audio):
        return np.array([float(np.argmax(np.abs(np.fft.rfft(audio))))])

    def fit(self, train: FeatureSet, valid=None):
        X = train.stacked()[:, 0]
        y = np.asarray(train.y)
        self.centroids_ = {c: X[y == c].mean() for c in np.unique(y)}
        return self

    def predict(self, test):
        return [min(self.centroids_, key=lambda c: abs(self.centroids_[c] - x)) for x in test.stacked()[:, 0]]


class BoomModel(PeakModel):
    name = "boom"

    def fit(self, train, valid=None):
        raise RuntimeError("boom in fit")


class FakePlugin:
    @hookimpl
    def register_datasets(self, register):
        register("tones", ToneDataset)

    @hookimpl
    def register_noise_sources(self, register):
        register("white-test", WhiteNoise)

    @hookimpl
    def register_enhancers(self, register):
        register("half", HalfGain)

    @hookimpl
    def register_ser_models(self, register):
        register("peak", PeakModel)
        register("boom", BoomModel)


@pytest.fixture
def registry():
    from ser_bench.plugins import build_registry, make_plugin_manager

    return build_registry(make_plugin_manager(entry_points=False, extra=[FakePlugin()]))


@pytest.fixture
def tiny_config():
    from ser_bench.config import RunConfig

    def make(protocol="mismatched", **kw):
        base = dict(protocol=protocol, datasets=["tones"], ser_models=["peak"], enhancers=["none", "half"],
                    noise_sources=["white-test"], snrs=[0.0, 20.0])
        base.update(kw)
        return RunConfig(**base)

    return make
