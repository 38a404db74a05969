"""``check_enhancer``: the :class:`ser_bench.Enhancer` contract."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..interfaces import SAMPLE_RATE, Enhancer
from .common import ConformanceError, _call, _check_identity, _fresh, _instantiate, _who, check_metadata
from .fakes import FakeNoise, make_tone_dataset
from .signals import _dominant_hz, _lag_frames, _rms, add_white_noise, speech_like, tone_bursts


def check_enhancer(
    enhancer: Enhancer | type[Enhancer],
    *,
    options: dict[str, Any] | None = None,
    short_lengths: Sequence[int] = (80, 400, 1601),
    train: bool = False,
    train_kwargs: dict[str, Any] | None = None,
    atol: float = 1e-5,
    max_lag_ms: float = 20.0,
) -> Enhancer:
    """Check an enhancer against the :class:`ser_bench.Enhancer` contract.

    Rules: valid metadata and a strict ``Config``; trained (or trainable with ``train=True``)
    before use; for speech-like, noisy, silent and short inputs (``short_lengths`` samples)
    returns a finite float array of exactly the input's length without touching the input;
    keeps the sample rate (a 1 kHz tone stays at 1 kHz) and the timing (no delay above
    ``max_lag_ms``); deterministic: the same input gives the same output (within ``atol``)
    on a second call and on a second instance with the same options.

    Args:
        enhancer: the class (built with ``options``) or a ready instance (e.g. trained).
        train: if the enhancer needs training, train it on tiny fakes first: ``train(utterances,
            FakeNoise(), **train_kwargs)`` (e.g. ``train_kwargs={"out": tmp_path / "ck.pt"}``).

    Returns:
        The instance that was checked.
    """
    inst = _instantiate(enhancer, "enhancer", options)
    who = _who(inst, "enhancer")
    check_metadata(inst, "enhancer")
    _check_identity(inst, who)
    if not inst.is_trained():
        if not train:
            raise ConformanceError(
                who, "is ready to enhance",
                "is_trained() is False; pass a trained instance (or one loaded from a checkpoint), "
                "or call check_enhancer(..., train=True) to train it on tiny fakes first",
            )
        speech = make_tone_dataset(n_speakers=2, per_class=2).utterances()
        _call(who, "trains on tiny data", "train(speech, noise)", lambda: inst.train(speech, FakeNoise(), **(train_kwargs or {})))
        if not inst.is_trained():
            raise ConformanceError(who, "is ready to enhance", "is_trained() is still False after train()")

    speech = speech_like(1.0, seed=1)
    noisy = add_white_noise(speech, 5.0, seed=2)
    cases: list[tuple[str, str, np.ndarray]] = [
        ("keeps length", "speech-like signal, 1 s", speech),
        ("keeps length", "noisy speech-like signal, 1 s at 5 dB SNR", noisy),
        ("handles silence", "silence (all zeros), 1 s", np.zeros(SAMPLE_RATE, np.float32)),
        ("handles silence", "near-silence (peak 1e-6), 1 s", (noisy * (1e-6 / np.max(np.abs(noisy)))).astype(np.float32)),
    ]
    cases += [("handles short inputs", f"short noisy input, {n} samples ({1000 * n / SAMPLE_RATE:g} ms)", noisy[:n])
              for n in short_lengths]
    outputs: dict[str, np.ndarray] = {}
    for rule, desc, x in cases:
        outputs[desc] = _enhance_checked(inst, who, rule, desc, x)

    # Sample rate and timing: judged only when the output is not (near) silent.
    tone = tone_bursts(1000.0)
    y = _enhance_checked(inst, who, "keeps length", "1 kHz tone bursts, 1 s", tone)
    if _rms(y) > 0.01 * _rms(tone):
        hz = _dominant_hz(y)
        if abs(hz - 1000.0) > 30.0:
            raise ConformanceError(
                who, "keeps the sample rate",
                f"a 1000 Hz tone came out with its peak at {hz:.0f} Hz; input and output are both mono at "
                f"{SAMPLE_RATE} Hz (resample back if the model runs at another rate)",
            )
    y = outputs["noisy speech-like signal, 1 s at 5 dB SNR"]
    if _rms(y) > 0.01 * _rms(noisy):
        lag_ms = 10.0 * _lag_frames(speech, y)
        if abs(lag_ms) > max_lag_ms:
            raise ConformanceError(
                who, "keeps the timing",
                f"the output is shifted by {lag_ms:+.0f} ms relative to the input (allowed: {max_lag_ms:g} ms); "
                "compensate the model's latency / padding so output sample i belongs to input sample i",
            )

    # Determinism: again on the same instance (after other signals), and on a fresh instance.
    desc = "noisy speech-like signal, 1 s at 5 dB SNR"
    again = _enhance_checked(inst, who, "is deterministic", desc, noisy)
    _same(who, outputs[desc], again, atol, "a second call on the same instance")
    other = _fresh(inst)
    if other.is_trained():
        _same(who, outputs[desc], _enhance_checked(other, who, "is deterministic", desc, noisy), atol,
              "a second instance with the same options")
    _call(who, "passes the harness's own checks", "enhance()", lambda: inst.enhance(noisy))
    return inst


def _enhance_checked(inst: Enhancer, who: str, rule: str, desc: str, x: np.ndarray) -> np.ndarray:
    given = np.array(x, dtype=np.float32)
    arg = given.copy()
    out = _call(who, rule, f"enhance_signal() on {desc}", lambda: inst.enhance_signal(arg))
    if not np.array_equal(arg, given):
        raise ConformanceError(who, "does not modify its input", f"enhance_signal() changed its input array ({desc}); work on a copy")
    try:
        y = np.asarray(out)
    except Exception as exc:
        raise ConformanceError(who, "returns a numpy array", f"got {type(out).__name__} for {desc}") from exc
    if y.dtype.kind != "f":
        raise ConformanceError(who, "returns float samples", f"got dtype {y.dtype} for {desc}; return float32")
    if y.shape != given.shape:
        raise ConformanceError(
            who, "keeps length",
            f"returned shape {y.shape} for an input of shape {given.shape} ({desc}); an enhancer must return "
            "exactly as many samples as it is given, mono, at 16 kHz (crop or pad STFT/model output to the input length)",
        )
    bad = int(np.sum(~np.isfinite(y)))
    if bad:
        raise ConformanceError(
            who, rule if rule != "keeps length" else "returns finite samples",
            f"returned {bad} NaN/inf samples for {desc}; guard divisions and logs with an epsilon",
        )
    peak = float(np.max(np.abs(y), initial=0.0))
    if peak > 4.0:
        raise ConformanceError(who, "stays in range", f"output peak {peak:.3g} for {desc}; audio is nominally in [-1, 1]")
    return y


def _same(who: str, a: np.ndarray, b: np.ndarray, atol: float, how: str) -> None:
    diff = float(np.max(np.abs(a - b), initial=0.0))
    if diff > atol:
        raise ConformanceError(
            who, "is deterministic",
            f"{how} gave a different output (max difference {diff:.3g} > {atol:g}); seed every random generator "
            "from the options (e.g. a `seed` option) and keep no state between signals",
        )

