"""``example-tones``: a tiny generated corpus of "emotional" tones (no download, instant).

Each utterance is a harmonic tone in syllable-like bursts. The class sets pitch, loudness and
brightness (as acted emotions do: anger is high, loud and bright; sadness low, soft and dark),
the speaker shifts the pitch a little. Audio is generated on demand by each utterance's
``loader``; its ``fingerprint`` names the generator version and parameters, so the harness's
cache knows when audio changes.
"""
from __future__ import annotations

import numpy as np
from pydantic import Field

from ser_bench import Dataset, PluginConfig, Utterance

SR = 16_000
#: class -> (pitch multiplier, peak level, harmonic roll-off)
STYLES = {"angry": (1.6, 0.5, 0.8), "neutral": (1.0, 0.3, 0.6), "sad": (0.75, 0.15, 0.4)}


def tone(f0: float, level: float, rolloff: float, duration_s: float, seed: int) -> np.ndarray:
    """One utterance: 8 harmonics of ``f0`` with vibrato, in 180 ms bursts, seeded phase/noise."""
    rng = np.random.default_rng(seed)
    n = int(duration_s * SR)
    t = np.arange(n) / SR
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.04 * np.sin(2 * np.pi * 4.5 * t))) / SR
    x = sum(rolloff ** (k - 1) * np.sin(k * phase + rng.uniform(0, 2 * np.pi)) for k in range(1, 9))
    bursts = (np.sin(2 * np.pi * t / 0.36 + rng.uniform(0, 1)) > -0.3).astype(float)
    bursts = np.convolve(bursts, np.hanning(321) / np.hanning(321).sum(), mode="same")  # 20 ms ramps
    x = x * bursts
    x = level * x / np.max(np.abs(x)) + 3e-4 * rng.standard_normal(n)
    return x.astype(np.float32)


class ToneCorpus(Dataset):
    """Three classes (angry, neutral, sad) x n_speakers x per_class generated utterances."""

    name = "example-tones"
    version = "1"
    description = "tiny generated tone corpus: angry / neutral / sad by pitch, level, brightness (example plugin)"
    # task = "classification" and has_partitions = False are the Dataset defaults.

    class Config(PluginConfig):
        n_speakers: int = Field(4, ge=2, le=50, description="speakers (folds are leave-one-speaker-out)")
        per_class: int = Field(3, ge=1, le=100, description="utterances per speaker and class")
        duration_s: float = Field(0.8, ge=0.2, le=10.0, description="utterance length in seconds")
        seed: int = 0

    def load_utterances(self) -> list[Utterance]:
        c = self.config
        utts = []
        for s in range(c.n_speakers):
            base_f0 = 110.0 + 25.0 * s
            for ci, (label, (pitch, level, rolloff)) in enumerate(STYLES.items()):
                for k in range(c.per_class):
                    seed = c.seed * 1_000_003 + (s * len(STYLES) + ci) * 1_000 + k  # distinct per utterance
                    params = (base_f0 * pitch, level, rolloff, c.duration_s, seed)
                    utts.append(Utterance(
                        id=f"spk{s}-{label}-{k}",
                        speaker=f"spk{s}",
                        label=label,
                        loader=lambda p=params: tone(*p),
                        fingerprint=f"example-tones:{self.version}:" + ",".join(map(str, params)),
                    ))
        return utts
