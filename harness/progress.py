"""One switch for every progress bar of a run.

``bench run -q`` (or a stderr that is not a terminal) turns bars off for the whole run: the
harness's own, the plugins' (e.g. the end-to-end models' training bar) and the libraries'. A
plugin makes its bars obey by creating them with :func:`bar`. The switch lives in the
environment, so the worker processes a run starts inherit it.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

ENV = "BENCH_PROGRESS"


def enabled() -> bool:
    """False while a run is quiet (``BENCH_PROGRESS=0``)."""
    return os.environ.get(ENV, "1") != "0"


def bar(*args: Any, disable: bool = False, **kwargs: Any) -> Any:
    """A ``tqdm.auto`` bar that is off while the run is quiet (and when ``disable``)."""
    from tqdm.auto import tqdm

    return tqdm(*args, disable=disable or not enabled(), **kwargs)


@contextlib.contextmanager
def switch(on: bool) -> Iterator[None]:
    """Within the block (and in processes started in it), bars are on or off. Off also sets
    ``TQDM_DISABLE=1``, which silences library bars in the worker processes (tqdm reads it when
    first imported)."""
    names = (ENV, "TQDM_DISABLE")
    before = {k: os.environ.get(k) for k in names}
    if not on:
        os.environ.update({ENV: "0", "TQDM_DISABLE": "1"})
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_bar(enabled: bool, total: int, desc: str) -> Any:
    """A bar of one of a run's stages (off when ``enabled`` is False or the run is quiet)."""
    return bar(total=total, desc=desc, disable=not enabled, unit="it", leave=False, dynamic_ncols=True)
