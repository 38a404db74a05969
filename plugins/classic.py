"""A classic single-channel enhancer: Wiener filtering with a minimum-statistics noise estimate.

Noise power per bin is tracked as the minimum of the recursively smoothed periodogram over a
sliding window (~1.5 s; Martin 2001, simplified, with a fixed bias compensation), the a priori
SNR follows the decision-directed rule (Ephraim & Malah 1984), and the Wiener gain
``xi / (1 + xi)`` is floored. Where speech dominates (high SNR) the gain is close to 1, so the
enhancer leaves clean-ish speech nearly untouched.
"""
from __future__ import annotations

import numpy as np
from pydantic import Field

from ser_bench import Enhancer, PluginConfig, hookimpl
from ser_bench.dsp import istft, stft


class Wiener(Enhancer):
    name = "wiener"
    version = "1"
    description = "Wiener filter, decision-directed a priori SNR, minimum-statistics noise estimate."

    class Config(PluginConfig):
        window_s: float = Field(1.5, gt=0.1, le=10, description="minimum-tracking window (s)")
        smoothing: float = Field(0.85, ge=0, lt=1, description="periodogram smoothing factor")
        bias: float = Field(1.8, ge=1, le=5, description="minimum-statistics bias compensation")
        dd_alpha: float = Field(0.98, ge=0, lt=1, description="decision-directed weight")
        gain_floor_db: float = Field(-15.0, le=0, ge=-60, description="lowest gain (dB)")

    def enhance_signal(self, noisy: np.ndarray) -> np.ndarray:
        from scipy.ndimage import minimum_filter1d, uniform_filter1d

        c = self.config
        spec = stft(noisy)
        power = np.abs(spec) ** 2
        n_frames = power.shape[0]
        # recursive smoothing over time, then a sliding minimum (centred; offline processing)
        smooth = np.empty_like(power)
        acc = power[0]
        for t in range(n_frames):
            acc = c.smoothing * acc + (1 - c.smoothing) * power[t]
            smooth[t] = acc
        win = max(3, int(c.window_s * 100))
        noise = c.bias * minimum_filter1d(smooth, size=min(win, n_frames), axis=0, mode="nearest")
        noise = uniform_filter1d(noise, size=5, axis=1, mode="nearest") + 1e-12
        gmin = 10 ** (c.gain_floor_db / 20)
        gains = np.empty_like(power)
        prev = np.ones(power.shape[1])  # |S_hat|^2 / noise of the previous frame
        for t in range(n_frames):
            post = power[t] / noise[t]
            xi = c.dd_alpha * prev + (1 - c.dd_alpha) * np.maximum(post - 1, 0)
            g = np.maximum(xi / (1 + xi), gmin)
            gains[t] = g
            prev = g**2 * post
        return istft(spec * gains, len(noisy))


@hookimpl
def register_enhancers(register):
    register("wiener", Wiener)
