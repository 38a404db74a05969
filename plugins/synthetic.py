"""Embedded default data: a synthetic emotional-speech corpus and a synthetic noise source.

Nothing is downloaded or stored: audio is generated deterministically on demand from
(generator version, speaker, class, index). The speech is a source-filter model: a
band-limited glottal pulse train whose F0 contour, spectral tilt, jitter/shimmer and
breathiness depend on the class and speaker, shaped by vowel formants in syllables whose rate
and loudness also depend on the class. Classes thus differ the way acted emotions do (pitch
level and range, loudness, tempo, voice quality), so a real SER model learns them well above
chance, and noise at low SNR masks the cues.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import Field

from ser_bench import Dataset, NoiseClip, NoiseSource, PluginConfig, Utterance, hookimpl
from ser_bench.interfaces import SAMPLE_RATE, stable_hash

GENERATOR_VERSION = "3"
SR = SAMPLE_RATE


@dataclass(frozen=True)
class Style:
    f0_mult: float  # pitch level relative to the speaker
    f0_range: float  # relative pitch excursion
    loud_db: float  # level
    rate: float  # syllables per second
    breath: float  # aspiration noise share
    tilt: float  # harmonic roll-off exponent (lower = brighter / pressed)
    jitter: float


STYLES: dict[str, Style] = {
    "neutral": Style(1.00, 0.10, 0.0, 4.0, 0.08, 1.6, 0.005),
    "happy": Style(1.30, 0.40, 3.0, 5.0, 0.06, 1.3, 0.008),
    "angry": Style(1.20, 0.22, 8.0, 5.6, 0.03, 0.9, 0.015),
    "sad": Style(0.85, 0.05, -6.0, 3.0, 0.35, 2.1, 0.010),
}
# speaker: (base F0 Hz, formant scale)
SPEAKERS: dict[str, tuple[float, float]] = {
    "m1": (105.0, 1.00), "m2": (120.0, 0.97), "m3": (135.0, 1.04),
    "f1": (190.0, 1.15), "f2": (210.0, 1.18), "f3": (230.0, 1.12),
}
VOWELS = [(730, 1090, 2440), (530, 1840, 2480), (270, 2290, 3010), (570, 840, 2410), (300, 870, 2240)]


def lfilter(b, a, x):  # noqa: ANN001, ANN201 - scipy is imported on first use, not with the CLI
    from scipy.signal import lfilter as _lfilter

    return _lfilter(b, a, x)


def _resonator(freq: float, bw: float) -> tuple[np.ndarray, np.ndarray]:
    r = np.exp(-np.pi * bw / SR)
    theta = 2 * np.pi * freq / SR
    a = np.array([1.0, -2 * r * np.cos(theta), r * r])
    return np.array([1 - r]), a


def synth_utterance(speaker: str, emotion: str, index: int, *, seed: int = 0) -> np.ndarray:
    """Generate one utterance (float32, 16 kHz). Deterministic in its arguments."""
    base_f0, fscale = SPEAKERS[speaker]
    st = STYLES[emotion]
    rng = np.random.default_rng(int(stable_hash([GENERATOR_VERSION, speaker, emotion, index, seed]), 16))
    rate = st.rate * rng.uniform(0.9, 1.1)
    n_syl = int(rng.integers(4, 7))
    syl_len = int(SR / rate)
    n = n_syl * syl_len + int(0.15 * SR)
    t = np.arange(n) / SR
    dur = n / SR
    # F0: declining phrase contour with class-dependent excursions and jitter
    f0 = base_f0 * st.f0_mult * rng.uniform(0.95, 1.05)
    accents = sum(
        rng.uniform(0.3, 1.0) * np.exp(-0.5 * ((t - c) / (0.08 + 0.05 * rng.random())) ** 2)
        for c in rng.uniform(0.1, dur - 0.1, size=n_syl // 2 + 1)
    )
    contour = f0 * (1 + st.f0_range * (accents - 0.3) - 0.08 * t / dur)
    contour *= 1 + st.jitter * rng.standard_normal(n).cumsum() / np.sqrt(np.arange(1, n + 1))
    contour = np.clip(contour, 50, 600)
    phase = 2 * np.pi * np.cumsum(contour) / SR
    n_harm = int(7000 / contour.max())
    k = np.arange(1, n_harm + 1)[:, None]
    amps = k.astype(float) ** (-st.tilt)
    source = (amps * np.sin(k * phase[None, :])).sum(axis=0)
    source *= 1 + 3 * st.jitter * rng.standard_normal(n)  # shimmer
    source /= np.max(np.abs(source)) + 1e-9
    source += st.breath * rng.standard_normal(n) * (1 + 0.5 * np.sin(phase))  # aspiration
    # syllables: vowel formants + raised-cosine envelopes
    out = np.zeros(n)
    for s in range(n_syl):
        a0 = s * syl_len
        seg = source[a0 : a0 + syl_len]
        f1, f2, f3 = (f * fscale for f in VOWELS[int(rng.integers(0, len(VOWELS)))])
        y = np.zeros_like(seg)
        for f, bw, g in ((f1, 80, 1.0), (f2, 100, 0.6), (f3, 140, 0.3)):
            b, a = _resonator(f, bw)
            y += g * lfilter(b, a, seg)
        on = int(0.9 * len(seg))
        env = np.zeros(len(seg))
        env[:on] = np.sin(np.pi * np.arange(on) / on) ** 0.7
        out[a0 : a0 + syl_len] = y * env * rng.uniform(0.7, 1.0)
    out /= np.sqrt(np.mean(out**2)) + 1e-12
    level = 0.05 * 10 ** ((st.loud_db + rng.uniform(-1.5, 1.5)) / 20)
    # a recording noise floor (room + microphone, pinkish, fixed level 25 dB below neutral speech):
    # real corpora have one, and without it pauses are digital silence whose features explode
    # under any added noise
    floor = _colored(rng, n, 1.0)
    floor *= 0.05 * 10 ** (-25 / 20) / (np.sqrt(np.mean(floor**2)) + 1e-12)
    return (out * level + floor).astype(np.float32)


class SyntheticEmotion(Dataset):
    name = "synthetic"
    version = GENERATOR_VERSION
    description = "Embedded synthetic emotional speech: 6 speakers x 4 emotions, generated on demand."

    class Config(PluginConfig):
        per_class: int = Field(6, ge=1, le=100, description="utterances per speaker and class")
        speakers: list[str] = Field(default_factory=lambda: list(SPEAKERS), description="subset of the 6 speakers")
        classes: list[str] = Field(default_factory=lambda: list(STYLES), description="subset of the 4 emotions")
        seed: int = Field(0, description="generator seed (other utterances, same design)")

    def load_utterances(self) -> list[Utterance]:
        c = self.config
        bad = [s for s in c.speakers if s not in SPEAKERS] + [e for e in c.classes if e not in STYLES]
        if bad:
            from ser_bench.errors import ConfigError

            raise ConfigError(f"synthetic: unknown speakers/classes {bad} (options synthetic.speakers / synthetic.classes); "
                              f"choose from {list(SPEAKERS)} / {list(STYLES)}")
        utts = []
        for spk in c.speakers:
            for emo in c.classes:
                for i in range(c.per_class):
                    utts.append(
                        Utterance(
                            id=f"{spk}_{emo}_{i:02d}",
                            speaker=spk,
                            label=emo,
                            loader=lambda s=spk, e=emo, j=i: synth_utterance(s, e, j, seed=c.seed),
                            fingerprint=f"synthetic:v{GENERATOR_VERSION}:{spk}:{emo}:{i}:{c.seed}",
                        )
                    )
        return utts


# ----------------------------------------------------------------------------- noise

NOISE_TYPES = ("white", "pink", "brown", "babble", "hum", "clicks", "machine")


def _colored(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.maximum(np.fft.rfftfreq(n, 1 / SR), 20.0)
    return np.fft.irfft(spec / f ** (exponent / 2), n)


def synth_noise(kind: str, index: int, seconds: float = 4.0) -> np.ndarray:
    """One noise clip of a given kind (float32 16 kHz, RMS 0.05). Deterministic."""
    rng = np.random.default_rng(int(stable_hash(["noise", GENERATOR_VERSION, kind, index]), 16))
    n = int(seconds * SR)
    t = np.arange(n) / SR
    if kind == "white":
        x = rng.standard_normal(n)
    elif kind == "pink":
        x = _colored(rng, n, 1.0)
    elif kind == "brown":
        x = _colored(rng, n, 2.0)
    elif kind == "babble":
        spk = list(SPEAKERS)
        emo = list(STYLES)
        x = np.zeros(n)
        for v in range(6):
            pos = int(rng.integers(0, SR // 2))
            while pos < n:
                u = synth_utterance(spk[int(rng.integers(len(spk)))], emo[int(rng.integers(len(emo)))],
                                    int(rng.integers(1000, 10**6)), seed=index)
                seg = u[: n - pos]
                x[pos : pos + len(seg)] += seg / (np.std(u) + 1e-9)
                pos += len(u) + int(rng.integers(0, SR // 4))
    elif kind == "hum":
        f = rng.choice([50.0, 60.0]) * rng.uniform(0.99, 1.01)
        x = sum((0.6**h) * np.sin(2 * np.pi * f * h * t + rng.uniform(0, 6.28)) for h in range(1, 8))
        x = x + 0.05 * rng.standard_normal(n)
    elif kind == "clicks":
        x = 0.02 * rng.standard_normal(n)
        for pos in rng.integers(0, n - 400, size=int(seconds * rng.uniform(3, 8))):
            L = int(rng.integers(50, 400))
            x[pos : pos + L] += rng.uniform(2, 6) * rng.standard_normal(L) * np.exp(-np.arange(L) / (L / 5))
    elif kind == "machine":
        x = lfilter(*_resonator(rng.uniform(300, 1500), 200), rng.standard_normal(n))
        x *= 1 + 0.6 * np.sin(2 * np.pi * rng.uniform(2, 12) * t)
    else:  # pragma: no cover - guarded by the Config
        raise ValueError(kind)
    x = x - np.mean(x)
    return (0.05 * x / (np.sqrt(np.mean(x**2)) + 1e-12)).astype(np.float32)


class SyntheticNoise(NoiseSource):
    name = "synthetic-noise"
    version = GENERATOR_VERSION
    description = "Embedded synthetic noise: white, pink, brown, babble, hum, clicks, machine (4 s clips)."

    class Config(PluginConfig):
        kinds: list[str] = Field(default_factory=lambda: list(NOISE_TYPES), description="noise types to generate")
        clips_per_kind: int = Field(4, ge=2, le=50, description="clips per noise type (split train/test)")
        seconds: float = Field(4.0, gt=0.5, le=60, description="length of each clip (s)")

    def load_clips(self) -> list[NoiseClip]:
        c = self.config
        bad = [k for k in c.kinds if k not in NOISE_TYPES]
        if bad:
            from ser_bench.errors import ConfigError

            raise ConfigError(f"synthetic-noise: unknown kinds {bad} (option synthetic-noise.kinds); choose from {list(NOISE_TYPES)}")
        return [
            NoiseClip(
                id=f"{k}_{i}",
                loader=lambda k=k, i=i: synth_noise(k, i, c.seconds),
                fingerprint=f"synthetic-noise:v{GENERATOR_VERSION}:{k}:{i}:{c.seconds}",
            )
            for k in c.kinds
            for i in range(c.clips_per_kind)
        ]

    def part_of(self, clip: NoiseClip):
        # every kind appears in both parts: clip 0 of each kind is test, the rest train
        return "test" if clip.id.endswith("_0") else "train"


@hookimpl
def register_datasets(register):
    register("synthetic", SyntheticEmotion)


@hookimpl
def register_noise_sources(register):
    register("synthetic-noise", SyntheticNoise)
