"""Small, fast, deterministic fake plugins to test against (and to test the checks with).

:class:`ToneDataset` (classes by pitch, optional partitions), :class:`ToneTraceDataset`
(regression), :class:`FakeNoise` (coloured noise, every 4th clip in "test") and
:class:`CentroidSER` (an instant classifier). ``make_plugin_manager(extra=[testing_plugin])``
registers them all under their names.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Literal

import numpy as np

from ..hookspecs import hookimpl
from ..interfaces import SAMPLE_RATE, Dataset, FeatureSet, Label, NoiseClip, NoiseSource, PluginConfig, SERModel, TimeSeries, Utterance
from .signals import _rms, speech_like


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

    __name__ = "ser_bench.testing"

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

