"""The ``none`` enhancer: passes noisy audio through. The baseline row of every leaderboard."""
from __future__ import annotations

import numpy as np

from ser_bench import Enhancer, hookimpl


class Identity(Enhancer):
    name = "none"
    description = "No enhancement (passthrough): the noisy baseline."

    def enhance_signal(self, noisy: np.ndarray) -> np.ndarray:
        return noisy


@hookimpl
def register_enhancers(register):
    register("none", Identity)
