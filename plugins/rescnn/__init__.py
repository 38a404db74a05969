"""``rescnn``: the seed paper's residual-CNN speech enhancer (log-magnitude additive mask).

Registered lazily: torch is imported only when the enhancer is used (``model.py`` is the only
module of this package that imports it). A CPU checkpoint (reduced widths, dense model) ships in
``checkpoints/``; see ``checkpoints/MODEL_CARD.md``.
"""
from __future__ import annotations

from ser_bench import hookimpl


@hookimpl
def register_enhancers(register):
    register(
        "rescnn",
        "ser_bench_plugins.rescnn.enhancer:ResCNNEnhancer",
        description="The paper's residual CNN (additive log-magnitude mask); dense CPU checkpoint shipped, "
        "paper-exact 35-frame model trainable with `bench train rescnn`",
    )
