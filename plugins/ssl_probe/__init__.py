"""``ssl-probe``: frozen self-supervised / Whisper encoders (transformers) + light heads.

Registered lazily: torch and transformers are imported only when the model is selected
(:mod:`ser_bench_plugins.ssl_probe.model`); :mod:`ser_bench_plugins.ssl_probe.encoder` finds
encoders offline and encodes audio.
"""
from __future__ import annotations

from ser_bench.hookspecs import hookimpl


@hookimpl
def register_ser_models(register) -> None:
    register("ssl-probe", "ser_bench_plugins.ssl_probe.model:SSLProbe")
    register("ssl-probe-reg", "ser_bench_plugins.ssl_probe.model:SSLProbeRegressor")
