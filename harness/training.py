"""Generic pieces for training and evaluating speech enhancers (numpy only, no torch).

* :func:`split_speakers` -- deterministic train / valid / test split *by speaker*, so held-out
  figures come from voices the enhancer never heard.
* :class:`SpeechPool`, :func:`cache_clips` -- speech and noise loaded once into memory.
* :class:`OnTheFlyMixer` -- training examples mixed on the fly with :func:`ser_bench.mixing.mix`:
  a fresh random speech segment, SNR, noise clip and noise segment per example, all derived
  from ``(seed, example index)`` so a run (or a resumed run) sees the same stream.
* :func:`fixed_mixtures` -- deterministic whole-utterance mixtures for validation / evaluation.
* :func:`si_sdr`, :func:`stoi`, :func:`evaluate_enhancer` -- the held-out table (per SNR: noisy
  vs enhanced SI-SDR and STOI).
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .audio import is_silent
from .errors import AudioError, ConfigError
from .interfaces import SAMPLE_RATE, NoiseClip, Utterance
from .mixing import SNR_DEFINITION, mix

#: The paper's training SNRs (dB).
PAPER_SNRS: tuple[float, ...] = (0, 5, 10, 15, 20, 25)
#: SNRs of the held-out evaluation table.
EVAL_SNRS: tuple[float, ...] = (-5, 0, 5, 10, 15, 20)
#: SNR used for the "clean" training examples (noise ~inaudible; teaches a ~0 mask).
CLEAN_SNR = 60.0


def _rank(key: str, salt: str) -> str:
    return hashlib.sha256(f"{salt}:{key}".encode()).hexdigest()


def split_speakers(
    utterances: Sequence[Utterance], *, valid_fraction: float = 0.1, test_fraction: float = 0.2,
    salt: str = "enhancer-split",
) -> dict[str, list[Utterance]]:
    """Split utterances into ``train`` / ``valid`` / ``test`` parts with disjoint speakers.

    Speakers are ordered by a stable hash of their id (independent of listing order); the first
    ``round(test_fraction * n)`` go to test, the next ``round(valid_fraction * n)`` to valid
    (each at least one; with only two speakers, or ``test_fraction=0``, test is empty), the rest
    to train. ``test_fraction=0`` trains on every speaker but the validation ones (the held-out
    evaluation then uses another corpus).
    """
    speakers = sorted({u.speaker for u in utterances}, key=lambda s: _rank(s, salt))
    n = len(speakers)
    if n < 2:
        raise ConfigError(f"need at least 2 speakers for a train/valid split by speaker, got {n}")
    # 2 speakers (or test_fraction 0): train + valid only
    n_test = max(1, round(test_fraction * n)) if n >= 3 and test_fraction > 0 else 0
    n_valid = max(1, round(valid_fraction * n))
    if n_test + n_valid >= n:
        raise ConfigError(f"{n} speakers leave none for training (valid {n_valid}, test {n_test})")
    part = {s: "test" for s in speakers[:n_test]}
    part.update({s: "valid" for s in speakers[n_test : n_test + n_valid]})
    out: dict[str, list[Utterance]] = {"train": [], "valid": [], "test": []}
    for u in utterances:
        out[part.get(u.speaker, "train")].append(u)
    return out


def split_clips(clips: Sequence[NoiseClip], valid_fraction: float = 0.1, salt: str = "enhancer-valid"
                ) -> tuple[list[NoiseClip], list[NoiseClip]]:
    """Split a noise source's *train* part into clips to train on and clips to validate on."""
    ranked = sorted(clips, key=lambda c: _rank(c.id, salt))
    n_valid = max(1, round(valid_fraction * len(ranked))) if len(ranked) > 1 else 0
    valid_ids = {c.id for c in ranked[:n_valid]}
    return [c for c in clips if c.id not in valid_ids], [c for c in clips if c.id in valid_ids]


@dataclass
class SpeechPool:
    """Utterances loaded into memory (silent ones dropped). ``ids``, ``signals``, ``speakers``."""

    ids: list[str]
    signals: list[np.ndarray]
    speakers: list[str]

    @classmethod
    def load(cls, utterances: Sequence[Utterance], max_seconds: float | None = None,
             progress: bool = False) -> SpeechPool:
        ids, sigs, spk, total = [], [], [], 0.0
        it: Any = utterances
        if progress:
            from tqdm import tqdm

            it = tqdm(utterances, desc="loading speech", unit="utt", leave=False)
        for u in it:
            x = u.load()
            if is_silent(x):
                continue
            ids.append(u.id)
            sigs.append(x)
            spk.append(u.speaker)
            total += len(x) / SAMPLE_RATE
            if max_seconds is not None and total >= max_seconds:
                break
        if not sigs:
            raise ConfigError("no usable (non-silent) speech utterances")
        return cls(ids, sigs, spk)

    @property
    def seconds(self) -> float:
        return sum(len(s) for s in self.signals) / SAMPLE_RATE

    def describe(self) -> dict[str, Any]:
        return {"utterances": len(self.ids), "speakers": sorted(set(self.speakers)),
                "hours": round(self.seconds / 3600, 3)}


def cache_clips(clips: Sequence[NoiseClip]) -> list[NoiseClip]:
    """Load every clip once; drop silent ones. Returns clips whose loaders return the cached audio."""
    out = []
    for c in clips:
        x = np.asarray(c.load(), dtype=np.float32)
        if is_silent(x) or float(np.mean(x.astype(np.float64) ** 2)) == 0.0:
            continue
        out.append(NoiseClip(id=c.id, loader=lambda x=x: x, fingerprint=c.fingerprint, path=c.path))
    if not out:
        raise ConfigError("no usable (non-silent) noise clips")
    return out


@dataclass(frozen=True)
class Example:
    noisy: np.ndarray
    clean: np.ndarray
    snr: float
    speech_id: str
    clip_id: str


class OnTheFlyMixer:
    """Random training mixtures, reproducible from ``(seed, index)``.

    Args:
        speech: the training speech.
        clips: the noise clips (cached, see :func:`cache_clips`).
        snrs: SNRs (dB) drawn uniformly per example.
        p_clean: probability of a "clean" example (SNR :data:`CLEAN_SNR`).
        segment_s: length of the speech segment (a random crop; shorter utterances whole).
        seed: the stream's seed.
        source: the noise source name (part of the mixing key).
        speed: ``(low, high)``: with probability ``p_speed`` the speech segment is sped up (or
            slowed down) by a factor drawn uniformly from this range, which raises (lowers) its
            pitch and formants together, as raised vocal effort and higher voices do. The clean
            target is the perturbed speech.
        p_speed: share of examples that get the speed perturbation.
        tilt: with probability ``p_tilt`` the segment is pre-emphasised, ``x[n] - a x[n-1]`` with
            ``a`` uniform in ``[0, tilt]``: the flatter spectrum of shouted speech.
        p_tilt: share of examples that get the tilt.

    Without augmentation (the defaults) the stream is the same as before these options existed:
    augmentation draws from its own random stream.
    """

    def __init__(self, speech: SpeechPool, clips: Sequence[NoiseClip], *, snrs: Sequence[float] = PAPER_SNRS,
                 p_clean: float = 0.0, segment_s: float = 2.0, seed: int = 0, source: str = "noise",
                 speed: tuple[float, float] = (1.0, 1.0), p_speed: float = 0.0, tilt: float = 0.0,
                 p_tilt: float = 0.0) -> None:
        self.speech, self.clips = speech, list(clips)
        self.snrs, self.p_clean = [float(s) for s in snrs], p_clean
        self.segment = int(round(segment_s * SAMPLE_RATE))
        self.seed, self.source = seed, source
        lo, hi = (float(v) for v in speed)
        if not 0.5 <= lo <= hi <= 2.0:
            raise ConfigError(f"speed range {speed!r}: give 0.5 <= low <= high <= 2.0, e.g. (0.9, 1.4)")
        if not 0.0 <= tilt < 1.0:
            raise ConfigError(f"tilt {tilt!r}: give a pre-emphasis coefficient in [0, 1), e.g. 0.7")
        for name, p in (("p_speed", p_speed), ("p_tilt", p_tilt)):
            if not 0.0 <= p <= 1.0:
                raise ConfigError(f"{name} {p!r}: give a probability in [0, 1]")
        self.speed, self.p_speed, self.tilt, self.p_tilt = (lo, hi), float(p_speed), float(tilt), float(p_tilt)

    def _augment_draw(self, index: int, attempt: int) -> tuple[float, float]:
        """(speed factor, pre-emphasis coefficient) of example ``index`` (1, 0: none)."""
        if not (self.p_speed or self.p_tilt):
            return 1.0, 0.0
        rng = np.random.default_rng([self.seed, index, attempt, 7])
        f = float(rng.uniform(*self.speed)) if rng.random() < self.p_speed else 1.0
        a = float(rng.uniform(0.0, self.tilt)) if rng.random() < self.p_tilt else 0.0
        return f, a

    def example(self, index: int) -> Example:
        """Example ``index`` of the stream (retries deterministically past silent segments)."""
        for attempt in range(20):
            rng = np.random.default_rng([self.seed, index, attempt])
            j = int(rng.integers(0, len(self.speech.signals)))
            x = self.speech.signals[j]
            f, a = self._augment_draw(index, attempt)
            need = int(round(self.segment * f))  # source samples that make one segment after the speed change
            start = int(rng.integers(0, len(x) - need + 1)) if len(x) > need else 0
            seg = x[start : start + need]
            if f != 1.0:
                seg = change_speed(seg, f)
            if a:
                seg = np.append(seg[:1], seg[1:] - np.float32(a) * seg[:-1]).astype(np.float32)
            snr = CLEAN_SNR if rng.random() < self.p_clean else self.snrs[int(rng.integers(0, len(self.snrs)))]
            try:
                m = mix(seg, self.clips, snr, key=f"{self.speech.ids[j]}@{start}#{index}.{attempt}",
                        seed=self.seed, source=self.source, speech_name=self.speech.ids[j])
            except AudioError:
                continue  # a silent speech segment or noise segment: draw another
            return Example(m.noisy, m.clean, snr, self.speech.ids[j], m.clip_id)
        raise AudioError(f"could not draw a non-silent training example at index {index}")

    def describe(self) -> dict[str, Any]:
        out = {"snrs_db": self.snrs, "p_clean": self.p_clean, "clean_snr_db": CLEAN_SNR,
               "segment_s": self.segment / SAMPLE_RATE, "seed": self.seed, "noise_source": self.source,
               "noise_clips": len(self.clips), "snr_definition": SNR_DEFINITION}
        if self.p_speed or self.p_tilt:
            out["augment"] = {"speed": list(self.speed), "p_speed": self.p_speed, "tilt": self.tilt,
                              "p_tilt": self.p_tilt}
        return out


def change_speed(x: np.ndarray, factor: float) -> np.ndarray:
    """``x`` played ``factor`` times faster (pitch and formants scale by ``factor``), length
    ``len(x) / factor``: :func:`ser_bench.audio.resample` from ``factor`` x the sample rate."""
    from .audio import resample

    return resample(np.asarray(x, np.float32), int(round(SAMPLE_RATE * factor)), SAMPLE_RATE)


def fixed_mixtures(speech: SpeechPool, clips: Sequence[NoiseClip], snrs: Sequence[float], *, seed: int,
                   source: str, per_snr: int | None = None, max_seconds: float | None = None) -> list[Example]:
    """Deterministic whole-utterance mixtures: each utterance (up to ``per_snr``) at each SNR."""
    out = []
    n = len(speech.ids) if per_snr is None else min(per_snr, len(speech.ids))
    order = sorted(range(len(speech.ids)), key=lambda i: _rank(speech.ids[i], f"fixed:{seed}"))[:n]
    for snr in snrs:
        for i in order:
            x = speech.signals[i]
            if max_seconds is not None:
                x = x[: int(max_seconds * SAMPLE_RATE)]
            m = mix(x, clips, float(snr), key=speech.ids[i], seed=seed, source=source, speech_name=speech.ids[i])
            out.append(Example(m.noisy, m.clean, float(snr), speech.ids[i], m.clip_id))
    return out


# --------------------------------------------------------------------------- metrics


def si_sdr(estimate: np.ndarray, reference: np.ndarray) -> float:
    """Scale-invariant SDR in dB (Le Roux et al. 2019), both signals made zero-mean."""
    est = np.asarray(estimate, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    est, ref = est - est.mean(), ref - ref.mean()
    alpha = np.dot(est, ref) / max(np.dot(ref, ref), 1e-20)
    target = alpha * ref
    resid = est - target
    return float(10 * np.log10(max(np.dot(target, target), 1e-20) / max(np.dot(resid, resid), 1e-20)))


def stoi(clean: np.ndarray, processed: np.ndarray) -> float:
    """Short-time objective intelligibility (pystoi, the ``quality`` extra)."""
    try:
        from pystoi import stoi as _stoi
    except ImportError as exc:  # pragma: no cover - optional dependency
        raise ConfigError("STOI needs pystoi: pip install 'ser-bench[quality]'") from exc
    return float(_stoi(np.asarray(clean, np.float64), np.asarray(processed, np.float64), SAMPLE_RATE, extended=False))


def evaluate_enhancer(enhance: Callable[[np.ndarray], np.ndarray], examples: Sequence[Example],
                      progress: bool = False) -> list[dict[str, float]]:
    """Per-SNR mean SI-SDR and STOI of the noisy input and of ``enhance(noisy)``.

    Returns rows ``{snr_db, n, sisdr_noisy, sisdr_enhanced, sisdr_delta, stoi_noisy,
    stoi_enhanced, stoi_delta}`` sorted by SNR.
    """
    per: dict[float, list[tuple[float, float, float, float]]] = {}
    it: Any = examples
    if progress:
        from tqdm import tqdm

        it = tqdm(examples, desc="evaluating", unit="mix", leave=False)
    for ex in it:
        enh = enhance(ex.noisy)
        per.setdefault(ex.snr, []).append(
            (si_sdr(ex.noisy, ex.clean), si_sdr(enh, ex.clean), stoi(ex.clean, ex.noisy), stoi(ex.clean, enh))
        )
    rows = []
    for snr in sorted(per):
        a = np.asarray(per[snr])
        m = a.mean(axis=0)
        rows.append({"snr_db": snr, "n": len(a), "sisdr_noisy": m[0], "sisdr_enhanced": m[1],
                     "sisdr_delta": m[1] - m[0], "stoi_noisy": m[2], "stoi_enhanced": m[3],
                     "stoi_delta": m[3] - m[2]})
    return rows


def format_table(rows: Sequence[dict[str, float]]) -> str:
    """The evaluation rows as a Markdown table."""
    lines = ["| SNR (dB) | n | SI-SDR noisy | SI-SDR enhanced | Δ SI-SDR | STOI noisy | STOI enhanced | Δ STOI |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['snr_db']:g} | {r['n']} | {r['sisdr_noisy']:.2f} | {r['sisdr_enhanced']:.2f} | "
                     f"{r['sisdr_delta']:+.2f} | {r['stoi_noisy']:.3f} | {r['stoi_enhanced']:.3f} | "
                     f"{r['stoi_delta']:+.3f} |")
    return "\n".join(lines)
