"""The example's own tests: ser-bench's conformance checks, plus what is specific to the plugins."""
from __future__ import annotations

import numpy as np
import pytest

import ser_bench_example
from ser_bench.testing import add_white_noise, check_dataset, check_enhancer, check_hooks, speech_like
from ser_bench_example.gate import SpectralGate
from ser_bench_example.tones import ToneCorpus


def test_the_entry_point_module_registers_both_plugins():
    assert check_hooks(ser_bench_example) == {
        ("enhancer", "example-gate"): SpectralGate,
        ("dataset", "example-tones"): ToneCorpus,
    }


@pytest.mark.parametrize("options", [{}, {"threshold_db": 12.0, "reduction_db": -40.0, "smooth_frames": 1}])
def test_gate_conforms(options):
    check_enhancer(SpectralGate, options=options)


def test_dataset_conforms():
    check_dataset(ToneCorpus)
    check_dataset(ToneCorpus, options={"n_speakers": 2, "per_class": 1, "duration_s": 0.3, "seed": 7})


def test_gate_reduces_stationary_noise():
    clean = speech_like(1.0, seed=3)
    noisy = add_white_noise(clean, 5.0, seed=4)
    out = SpectralGate().enhance(noisy)

    def snr(x):
        return 10 * np.log10(np.sum(clean**2) / np.sum((x - clean) ** 2))

    assert snr(out) > snr(noisy) + 1.0  # a real improvement, not just "runs"
