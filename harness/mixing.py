"""Deterministic mixing of speech and noise at a target SNR.

SNR definition (written into every run): ``10 log10(P_speech / P_noise)`` where P is the mean
power (RMS squared) over the whole utterance, of the speech and of the noise segment actually
added. The noise segment is cropped from a random offset of the clip, or the clip is looped
(with a random start) when shorter than the speech. If the mixture would clip (peak > 1), the
mixture (speech and noise alike) is scaled down, which leaves the SNR unchanged; the scale is
returned. Every random choice derives from (utterance key, SNR, seed, noise source), so the same
inputs give the same mixture in any process and any order.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .audio import is_silent
from .errors import AudioError
from .interfaces import NoiseClip, stable_hash

SNR_DEFINITION = (
    "SNR = 10*log10(mean(s^2)/mean(n^2)) over the whole utterance, s = clean speech, n = the noise "
    "segment added (random offset crop, or looped from a random start); mixture peak-normalised to "
    "<= 0.99 only when it would clip (scales s and n alike, SNR unchanged)"
)
MIXING_VERSION = "1"
PEAK_LIMIT = 0.99


@dataclass(frozen=True)
class Mixture:
    noisy: np.ndarray
    clean: np.ndarray  # the speech as it sits in the mixture (after any anti-clipping gain)
    noise: np.ndarray  # the noise as it sits in the mixture
    gain: float  # anti-clipping scale applied to both (1.0 if none)
    clip_id: str
    offset: int


def mix_seed(*parts: object) -> int:
    """A 63-bit seed from any stable parts (strings, numbers)."""
    return int(stable_hash([str(p) for p in parts], n=16), 16) & ((1 << 63) - 1)


def power(x: np.ndarray) -> float:
    return float(np.mean(np.asarray(x, dtype=np.float64) ** 2))


def snr_db(speech: np.ndarray, noise: np.ndarray) -> float:
    """The SNR of a (speech, noise) pair under :data:`SNR_DEFINITION`."""
    return 10.0 * np.log10(power(speech) / power(noise))


def noise_segment(clip: np.ndarray, length: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """``length`` samples of ``clip``: a random crop, or the clip looped from a random start."""
    n = len(clip)
    if n >= length:
        off = int(rng.integers(0, n - length + 1))
        return clip[off : off + length], off
    off = int(rng.integers(0, n))
    reps = int(np.ceil((length + off) / n))
    return np.tile(clip, reps)[off : off + length], off


def mix(
    speech: np.ndarray,
    clips: list[NoiseClip],
    snr: float,
    *,
    key: str,
    seed: int,
    source: str,
    speech_name: str = "speech",
) -> Mixture:
    """Mix ``speech`` with a clip drawn from ``clips`` at ``snr`` dB, deterministically.

    Args:
        key: identifies the utterance (its content key or id).
        seed: the run seed.
        source: the noise source name (part of the random stream's identity).
        speech_name: used in error messages (the file or utterance id).
    """
    speech = np.asarray(speech, dtype=np.float64)
    if is_silent(speech) or power(speech) == 0.0:
        raise AudioError(f"{speech_name}: the speech is silent, so no SNR can be set; remove the utterance")
    rng = np.random.default_rng(mix_seed(MIXING_VERSION, key, float(snr), seed, source))
    clip = clips[int(rng.integers(0, len(clips)))]
    raw = np.asarray(clip.load(), dtype=np.float64)
    seg, off = noise_segment(raw, len(speech), rng)
    if power(seg) == 0.0 or is_silent(seg):
        raise AudioError(
            f"noise clip {clip.path or clip.id} (source {source!r}): the segment is silent, so no SNR can "
            "be set; remove the clip from the noise source"
        )
    noise = seg * np.sqrt(power(speech) / (power(seg) * 10.0 ** (snr / 10.0)))
    noisy = speech + noise
    peak = float(np.max(np.abs(noisy)))
    gain = PEAK_LIMIT / peak if peak > PEAK_LIMIT else 1.0
    return Mixture(
        noisy=(noisy * gain).astype(np.float32),
        clean=(speech * gain).astype(np.float32),
        noise=(noise * gain).astype(np.float32),
        gain=gain,
        clip_id=clip.id,
        offset=off,
    )
