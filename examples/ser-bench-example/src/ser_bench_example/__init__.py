"""ser-bench-example: a complete third-party ser-bench plugin package.

This module is what the entry point names (``[project.entry-points.ser_bench] example =
"ser_bench_example"``). ser-bench imports it when it builds its plugin registry and calls its
``@hookimpl`` functions, which register plugin classes under their names (the same as the
classes' ``name``). Targets are lazy ``"module:Class"`` strings, so importing this package stays
cheap (a plugin with torch models would import torch only when the model is selected); the
``description`` lets ``bench plugins`` list them without importing them.
"""
from __future__ import annotations

from ser_bench import hookimpl

__version__ = "0.1.0"


@hookimpl
def register_enhancers(register):
    """Offer the ``example-gate`` enhancer."""
    register("example-gate", "ser_bench_example.gate:SpectralGate",
             description="spectral gate: attenuates STFT bins near a per-frequency noise floor (example plugin)")


@hookimpl
def register_datasets(register):
    """Offer the ``example-tones`` dataset."""
    register("example-tones", "ser_bench_example.tones:ToneCorpus",
             description="tiny generated tone corpus: angry / neutral / sad by pitch, level, brightness (example plugin)")
