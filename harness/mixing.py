"""Deterministic mixing of speech and noise at a target SNR.

SNR definition (written into every run): ``10 log10(P_speech / P_noise)`` where P is the mean
power (RMS squared) over the whole utterance, of the speech and of the noise segment actually
added. The noise segment is cropped from a random offset of the clip, or the clip is looped
(with a random start) when shorter than the speech. If the mixture would clip (peak > 1), the
mixture (speech and noise alike) is scaled down, which leaves the SNR unchanged; the scale is
returned. A segment that is digitally silent (a quiet stretch of a clip) is drawn again, clip and
offset, from the same random stream. Every random choice derives from (utterance key, SNR, seed,
noise source), so the same inputs give the same mixture in any process and any order.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from .audio import is_silent
from .errors import AudioError
from .interfaces import NoiseClip, stable_hash

#: Bytes of decoded noise clips each process keeps (a run remakes mixtures rather than storing
#: them, so the same few clips are read again for every utterance).
CLIP_CACHE_BYTES = 64 * 2**20
_CLIPS: OrderedDict[tuple, np.ndarray] = OrderedDict()
_CLIPS_LOCK = threading.Lock()


def _clip_audio(clip: NoiseClip) -> np.ndarray:
    """A clip's audio as float64, from a small per-process LRU keyed by its content identity
    (clips without a fingerprint are loaded every time)."""
    if not clip.fingerprint:
        return np.asarray(clip.load(), dtype=np.float64)
    key = (clip.id, clip.fingerprint, str(clip.path))
    with _CLIPS_LOCK:
        hit = _CLIPS.get(key)
        if hit is not None:
            _CLIPS.move_to_end(key)
            return hit
    raw = np.asarray(clip.load(), dtype=np.float64)
    raw.setflags(write=False)  # shared by every mixture that uses it
    with _CLIPS_LOCK:
        _CLIPS[key] = raw
        while sum(a.nbytes for a in _CLIPS.values()) > CLIP_CACHE_BYTES and len(_CLIPS) > 1:
            _CLIPS.popitem(last=False)
    return raw


SNR_DEFINITION = (
    "SNR = 10*log10(mean(s^2)/mean(n^2)) over the whole utterance, s = clean speech, n = the noise "
    "segment added (random offset crop, or looped from a random start; a digitally silent segment is "
    "drawn again, clip and offset); mixture peak-normalised to <= 0.99 only when it would clip (scales s "
    "and n alike, SNR unchanged)"
)
MIXING_VERSION = "1"
#: Draws of (clip, offset) tried before a silent noise segment is an error. The first draw is
#: what it always was: only mixtures that used to fail are affected by the redraws.
MAX_DRAWS = 16
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
    first = None
    for _draw in range(MAX_DRAWS):  # a silent stretch of a clip: draw clip and offset again, same stream
        clip = clips[int(rng.integers(0, len(clips)))]
        raw = _clip_audio(clip)
        seg, off = noise_segment(raw, len(speech), rng)
        if power(seg) > 0.0 and not is_silent(seg):
            break
        first = first or clip
    else:
        raise AudioError(
            f"noise clip {first.path or first.id} (source {source!r}): the segment is silent, so no SNR can "
            f"be set, and so were {MAX_DRAWS - 1} more draws of clip and offset; remove the clip from the noise source"
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
