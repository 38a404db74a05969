"""End-to-end raw-audio CNN-LSTM SER models (Trigeorgis et al. 2016), registered lazily.

* ``e2e-arousal``: continuous arousal every 40 ms, CCC loss, post-processing (the paper's model);
* ``e2e-cls``: the utterance-level variant for categorical corpora (beyond the paper).

torch is imported only by :mod:`ser_bench_plugins.e2e.network` and :mod:`ser_bench_plugins.e2e.model`, when one of
the models is selected; :mod:`ser_bench_plugins.e2e.postprocess` is numpy/scipy only.
"""
from __future__ import annotations

from ser_bench.hookspecs import hookimpl


@hookimpl
def register_ser_models(register) -> None:
    register("e2e-arousal", "ser_bench_plugins.e2e.model:E2EArousalModel")
    register("e2e-cls", "ser_bench_plugins.e2e.model:E2EClassifierModel")
