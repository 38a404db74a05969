"""End-to-end raw-audio CNN-LSTM SER models (Trigeorgis et al. 2016), registered lazily.

* ``e2e-arousal``: continuous arousal every 40 ms, CCC loss, post-processing (the paper's model);
* ``e2e-cls``: the utterance-level variant for categorical corpora (beyond the paper).

torch is imported only by :mod:`plugins.e2e.network` and :mod:`plugins.e2e.model`, when one of
the models is selected; :mod:`plugins.e2e.postprocess` is numpy/scipy only.
"""
from __future__ import annotations

from harness.hookspecs import hookimpl


@hookimpl
def register_ser_models(register) -> None:
    register("e2e-arousal", "plugins.e2e.model:E2EArousalModel")
    register("e2e-cls", "plugins.e2e.model:E2EClassifierModel")
