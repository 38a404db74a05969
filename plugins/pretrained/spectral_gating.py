"""``spectral-gating``: noise reduction by spectral gating (the ``noisereduce`` package, Sainburg 2020).

A per-frequency threshold is estimated from the signal itself (non-stationary by default: a
running noise floor with time constant ``time_constant_s``; or one stationary threshold from
the whole utterance's statistics), and a smoothed binary-ish mask gates the STFT. noisereduce
runs at any sample rate; it is called at 16 kHz on the whole utterance (zero-phase: no delay,
same length), single-threaded (``n_jobs=1``), with the library's default settings unless the
options below change them.
"""
from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from ser_bench.interfaces import SAMPLE_RATE, Enhancer, PluginConfig

from .common import require


def _reduce_noise() -> Any:
    return require("noisereduce", enhancer="spectral-gating", dist="noisereduce").reduce_noise


class SpectralGating(Enhancer):
    """noisereduce's spectral gate on mono 16 kHz audio."""

    name: ClassVar[str] = "spectral-gating"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = (
        "Spectral gating (noisereduce; non-stationary noise threshold by default); extra: enhancers"
    )

    class Config(PluginConfig):
        stationary: bool = Field(False, description="one noise threshold for the whole utterance")
        prop_decrease: float = Field(1.0, ge=0, le=1, description="how far gated bins are reduced (1: fully)")
        time_constant_s: float = Field(2.0, gt=0, description="non-stationary noise floor time constant (s)")
        thresh_n_mult_nonstationary: float = Field(2.0, gt=0, description="non-stationary threshold multiple")
        n_std_thresh_stationary: float = Field(1.5, gt=0, description="stationary threshold in std devs")
        n_fft: int = Field(1024, ge=64, le=8192, description="FFT size (samples at 16 kHz)")

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._reduce = _reduce_noise()

    def identity(self) -> dict[str, Any]:
        """Name, version, options and the noisereduce version (its algorithm may change)."""
        from importlib.metadata import PackageNotFoundError, version

        ident = super().identity()
        try:
            ident["noisereduce"] = version("noisereduce")
        except PackageNotFoundError:
            ident["noisereduce"] = "?"
        return ident

    def enhance_signal(self, noisy: np.ndarray) -> np.ndarray:
        c = self.config
        if not np.any(noisy):
            return np.zeros_like(noisy)  # nothing to gate (and no statistics to estimate)
        n = len(noisy)
        x = np.asarray(noisy, np.float32)
        if n < 2 * c.n_fft:  # its STFT needs a few frames: zero-pad short inputs, cut back below
            x = np.concatenate([x, np.zeros(2 * c.n_fft - n, np.float32)])
        y = self._reduce(
            y=x, sr=SAMPLE_RATE, stationary=c.stationary, prop_decrease=c.prop_decrease,
            time_constant_s=c.time_constant_s, thresh_n_mult_nonstationary=c.thresh_n_mult_nonstationary,
            n_std_thresh_stationary=c.n_std_thresh_stationary, n_fft=c.n_fft, n_jobs=1, use_tqdm=False,
        )
        y = np.asarray(y, np.float32).reshape(-1)
        return y[:n] if len(y) >= n else np.concatenate([y, np.zeros(n - len(y), np.float32)])
