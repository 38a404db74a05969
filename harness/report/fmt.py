"""Number formatting shared by the report's pages: a value that rounds to zero never shows a sign.

``"%+.1f" % -0.04`` is ``"-0.0"`` and ``"%.2f" % -0.003`` is ``"-0.00"``: a reader takes the sign
for a real (if tiny) difference. :func:`environment` builds the report's Jinja2 environment with
:func:`no_signed_zero` as ``finalize``, so every ``{{ ... }}`` that renders such a string shows
``0.0`` / ``0.00`` instead, whichever template or helper formatted it.
"""
from __future__ import annotations

import re
from typing import Any

_SIGNED_ZERO = re.compile(r"[+\-\u2212]0+(?:\.0*)?(?:e[+-]?\d+)?%?")


def no_signed_zero(value: Any) -> Any:
    """``"-0.00"`` / ``"+0.0"`` / ``"−0"`` -> the same without the sign; anything else unchanged."""
    if isinstance(value, str) and _SIGNED_ZERO.fullmatch(value):
        return value[1:]
    if isinstance(value, float) and value == 0:
        return 0.0  # -0.0 -> 0.0
    return value


def num(value: float, spec: str) -> str:
    """``format(value, spec)`` without a sign on a result that rounds to zero."""
    return no_signed_zero(format(value, spec))


def environment() -> Any:
    """The report's Jinja2 environment: package templates, autoescape, strict, no signed zeros."""
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    return Environment(loader=PackageLoader("ser_bench", "report/templates"), autoescape=select_autoescape(["html"]),
                       undefined=StrictUndefined, finalize=no_signed_zero)
