"""``check_corruption``: the :class:`ser_bench.Corruption` contract (same length, aligned, deterministic)."""
from __future__ import annotations

import json
from typing import Any

import numpy as np

from ..corruptions import StepContext, Step, chain_label, parse_chain, validate_params
from ..interfaces import SAMPLE_RATE, Corruption, PluginConfig
from .common import ConformanceError, _call, _check_identity, _instantiate, _who, check_metadata
from .fakes import FakeNoise
from .signals import speech_like

#: Largest delay (samples) between input and output the "keeps the timing" rule accepts: 1 ms.
MAX_LAG = SAMPLE_RATE // 1000


def _lag(y: np.ndarray, x: np.ndarray, max_lag: int = SAMPLE_RATE // 20) -> int:
    """The lag (samples, within +-``max_lag``) maximising the cross-correlation of ``y`` and ``x``."""
    from scipy.signal import correlate

    c = correlate(y, x, mode="full", method="fft")
    mid = len(x) - 1
    lo, hi = max(0, mid - max_lag), mid + max_lag + 1
    return int(np.argmax(c[lo:hi]) + lo - mid)


def check_corruption(
    corruption: Corruption | type[Corruption],
    *,
    params: dict[str, Any] | str | None = None,
    options: dict[str, Any] | None = None,
    aligned: bool = True,
) -> Corruption:
    """Check a corruption plugin on a speech-like signal.

    ``params``: the step's parameters (a dict, or a step such as ``"reverb(rt60=0.6)"``); default:
    the ``Params`` defaults. ``aligned=False`` for a corruption that may move the signal in time
    on purpose (none of the built-ins). A ``source`` parameter is served by a small fake noise
    source. Rules: valid metadata and a strict ``Params`` (pydantic, extra="forbid") that names its
    ``severity`` parameter; ``apply`` returns ``(signal, info)`` with a float numpy array of the
    input's length, finite, within [-1, 1], without modifying its input; ``info`` a JSON-able dict;
    the same random stream gives the same output on a second instance; the output is time-aligned
    with the input (cross-correlation peak within 1 ms); and the harness's step-parameter
    validation accepts the parameters.
    """
    inst = _instantiate(corruption, "corruption", options)
    who = _who(inst, "corruption")
    check_metadata(inst, "corruption")
    _check_identity(inst, who)
    cls = type(inst)
    if not (isinstance(cls.Params, type) and issubclass(cls.Params, PluginConfig)
            and cls.Params.model_config.get("extra") == "forbid"):
        raise ConformanceError(who, "has strict Params", f"{cls.__name__}.Params must subclass ser_bench.PluginConfig "
                               "(extra='forbid'), so a misspelt step parameter is an error")
    if cls.severity and cls.severity not in cls.Params.model_fields:
        raise ConformanceError(who, "names its severity", f"severity = {cls.severity!r} is not a parameter of "
                               f"{cls.__name__}.Params ({', '.join(cls.Params.model_fields) or 'none'})")
    if isinstance(params, str):
        steps = parse_chain(params)
        if len(steps) != 1 or steps[0].name != cls.name:
            raise TypeError(f"params={params!r} must be one step of {cls.name!r}")
        step = steps[0]
    else:
        step = Step(cls.name, tuple(sorted((params or {}).items())))
    p = _call(who, "accepts its parameters", f"validating {chain_label([step])!r}", lambda: validate_params(inst, step))
    noise = FakeNoise()

    def ctx() -> StepContext:
        return StepContext(key="conformance", seed=0, speech_name="speech_like(1.5 s)",
                           noise_source=lambda name: noise, extra={"datasets": ()})

    x = (0.3 * speech_like(1.5, seed=3)).astype(np.float32)
    x0 = x.copy()
    out = _call(who, "returns a signal and info", "apply()", lambda: inst.apply(x, p, np.random.default_rng(7), ctx()))
    if not (isinstance(out, tuple) and len(out) == 2):
        raise ConformanceError(who, "returns a signal and info", f"apply() returned {type(out).__name__}; return (y, info)")
    y, info = out
    if not isinstance(y, np.ndarray) or y.dtype.kind != "f":
        raise ConformanceError(who, "returns a signal and info", f"the signal is {type(y).__name__} "
                               f"{getattr(y, 'dtype', '')}; return a float numpy array")
    if not np.array_equal(x, x0):
        raise ConformanceError(who, "does not modify its input", "apply() changed the array it was given; copy it first")
    if y.shape != x.shape:
        raise ConformanceError(who, "keeps length", f"returned shape {y.shape} for an input of shape {x.shape}; crop "
                               "or pad to the input's length (aligned)")
    if not np.all(np.isfinite(y)):
        raise ConformanceError(who, "returns finite samples", "the output holds NaN or inf")
    if float(np.max(np.abs(y))) > 1.0:
        raise ConformanceError(who, "stays in range", f"peak {float(np.max(np.abs(y))):.3f} > 1; scale the output down "
                               "only when it would clip (ser_bench.corruptions.peak_limit)")
    try:
        json.dumps(info)
    except (TypeError, ValueError) as exc:
        raise ConformanceError(who, "returns a signal and info", f"info is not JSON-able ({exc}); it is stored in the "
                               "registry: use numbers, strings, lists, dicts") from exc
    if not isinstance(info, dict):
        raise ConformanceError(who, "returns a signal and info", f"info is a {type(info).__name__}; return a dict")
    other = cls(**inst.config.model_dump())
    y2, _ = other.apply(x.copy(), p, np.random.default_rng(7), ctx())
    if not np.array_equal(np.asarray(y2), y):
        raise ConformanceError(who, "is deterministic", "the same random stream gave another output on a second "
                               "instance; draw every random choice from the rng apply() is given")
    if aligned:  # on white noise: its autocorrelation is a spike, so the cross-correlation peaks at the
        # delay even through dense reverberation (speech's wide autocorrelation blurs it)
        w = (0.1 * np.random.default_rng(5).standard_normal(SAMPLE_RATE)).astype(np.float32)
        yw, _ = _call(who, "keeps the timing", "apply() on white noise", lambda: inst.apply(w, p, np.random.default_rng(7), ctx()))
        lag = _lag(np.asarray(yw, dtype=np.float64), w.astype(np.float64))
        if abs(lag) > MAX_LAG:
            raise ConformanceError(who, "keeps the timing", f"the output lags the input by {lag} samples; remove the "
                                   "delay (e.g. convolve from a RIR's direct path) so intrusive measures stay valid")
    return inst
