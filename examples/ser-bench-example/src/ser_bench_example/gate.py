"""``example-gate``: a spectral gate, the simplest useful speech enhancer.

For every frequency bin it estimates a noise floor (a low percentile of that bin's magnitude
over the whole utterance), keeps the time-frequency bins that rise ``threshold_db`` above it and
attenuates the others by ``reduction_db``. The gain mask is smoothed over a few frames against
"musical noise". Stateless and deterministic: the same input always gives the same output.
"""
from __future__ import annotations

import numpy as np
from pydantic import Field

from ser_bench import Enhancer, PluginConfig
from ser_bench.dsp import istft, stft


class SpectralGate(Enhancer):
    """Percentile noise floor per frequency bin; bins below floor + threshold are attenuated."""

    name = "example-gate"
    # Part of every cache key: bump it whenever a code change alters the output.
    version = "1"
    description = "spectral gate: attenuates STFT bins near a per-frequency noise floor (example plugin)"

    class Config(PluginConfig):
        # Each option is validated by pydantic; users set them with -o example-gate.KEY=VALUE.
        threshold_db: float = Field(6.0, ge=0.0, le=40.0, description="keep bins this far above the noise floor")
        reduction_db: float = Field(-18.0, ge=-80.0, le=0.0, description="gain for gated bins")
        noise_percentile: float = Field(15.0, gt=0.0, lt=100.0, description="percentile of a bin's magnitude taken as its noise floor")
        smooth_frames: int = Field(3, ge=1, le=15, description="moving-average length of the gain over time")

    def enhance_signal(self, noisy: np.ndarray) -> np.ndarray:
        c = self.config
        spec = stft(noisy)  # (frames, 201): 25 ms windows, 10 ms hop; handles any length >= 1
        mag = np.abs(spec)
        floor = np.percentile(mag, c.noise_percentile, axis=0, keepdims=True)
        keep = mag > floor * 10 ** (c.threshold_db / 20)
        gain = np.where(keep, 1.0, 10 ** (c.reduction_db / 20))
        if c.smooth_frames > 1 and gain.shape[0] > 1:
            kernel = np.ones(c.smooth_frames) / c.smooth_frames
            gain = np.apply_along_axis(np.convolve, 0, gain, kernel, mode="same")
        # istft crops/pads to the input length: enhancers must keep the length exactly.
        return istft(spec * gain, len(noisy))
