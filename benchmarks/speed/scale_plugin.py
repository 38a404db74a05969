"""Plugins of the scale benchmark (benchmarks/speed/scale.py), loaded as an extra plugin
(``"scale_plugin:PLUGIN"``, this folder on the path of the driver and of every worker).

- dataset ``scaled-corpus``: ``n`` utterances cycled over a base corpus (EMO-DB files when
  ``root`` is given, else the embedded synthetic corpus), copy ``k`` of a file scaled by a gain of
  its own, so every utterance is distinct content (its own cache entries, its own noise draw);
- SER model ``logspec-centroid``: 20 log band energies (mean and std over 25 ms frames) and a
  nearest-centroid classifier on standardised features: linear time, so the benchmark measures
  the harness (audio path, cache, scheduling, memory), not an SVM's superlinear fit.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import Field

from ser_bench import Dataset, FeatureSet, PluginConfig, SERModel, Utterance, hookimpl
from ser_bench.audio import load_audio


class ScaledCorpus(Dataset):
    name = "scaled-corpus"
    version = "1"
    description = "n utterances cycled over EMO-DB (or the synthetic corpus), each copy with its own gain"
    location_options = ("root",)

    class Config(PluginConfig):
        n: int = Field(800, ge=1)
        root: str = ""

    def load_utterances(self) -> list[Utterance]:
        base = self._base()
        out = []
        for i in range(self.config.n):
            k, (uid, speaker, label, load) = divmod(i, len(base))[0], base[i % len(base)]
            gain = float(0.5 + 0.5 * ((k * 0.618034) % 1.0))
            out.append(Utterance(id=f"{k}-{uid}", speaker=speaker, label=label,
                                 loader=lambda load=load, gain=gain: (load() * np.float32(gain)).astype(np.float32),
                                 fingerprint=f"scaled:{k}:{gain!r}:{uid}"))
        return out

    def _base(self) -> list[tuple]:
        if self.config.root:
            files = sorted(Path(self.config.root, "wav").glob("*.wav"))
            labels = {"W": "anger", "F": "happiness", "T": "sadness", "N": "neutral", "A": "fear", "L": "boredom"}
            return [(f.stem, f.name[:2], labels[f.name[5]], lambda f=f: load_audio(f)) for f in files
                    if f.name[5] in labels]
        from ser_bench_plugins.synthetic import SyntheticEmotion

        syn = SyntheticEmotion(per_class=10)
        return [(u.id, u.speaker, u.label, u.load) for u in syn.utterances()]


def log_bands(x: np.ndarray, n_bands: int = 20) -> np.ndarray:
    n, hop = 400, 160
    x = np.asarray(x, dtype=np.float32)
    if len(x) < n:
        x = np.pad(x, (0, n - len(x)))
    frames = np.lib.stride_tricks.sliding_window_view(x, n)[::hop]
    p = np.abs(np.fft.rfft(frames * np.hanning(n).astype(np.float32), axis=1)) ** 2
    edges = np.linspace(0, p.shape[1], n_bands + 1).astype(int)[:-1]
    b = np.log(np.add.reduceat(p, edges, axis=1) + 1e-10)
    return np.concatenate([b.mean(0), b.std(0)]).astype(np.float32)


class LogSpecCentroid(SERModel):
    name = "logspec-centroid"
    version = "1"
    description = "log band energies (mean, std) + nearest centroid (scale benchmark)"

    def featurize(self, audio: np.ndarray) -> np.ndarray:
        return log_bands(audio)

    def fit(self, train: FeatureSet, valid: FeatureSet | None = None) -> LogSpecCentroid:
        X = train.stacked()
        self.mu_, self.sd_ = X.mean(0), X.std(0) + 1e-6
        Z = (X - self.mu_) / self.sd_
        y = np.asarray(train.y)
        self.classes_ = sorted(set(train.y))
        self.centroids_ = np.stack([Z[y == c].mean(0) for c in self.classes_])
        return self

    def predict(self, test: FeatureSet) -> list:
        Z = (test.stacked() - self.mu_) / self.sd_
        d = ((Z[:, None, :] - self.centroids_[None]) ** 2).sum(-1)
        return [self.classes_[i] for i in d.argmin(1)]


class _Plugin:
    @hookimpl
    def register_datasets(self, register):  # noqa: ANN001, ANN201
        register("scaled-corpus", ScaledCorpus)

    @hookimpl
    def register_ser_models(self, register):  # noqa: ANN001, ANN201
        register("logspec-centroid", LogSpecCentroid)


PLUGIN = _Plugin()
