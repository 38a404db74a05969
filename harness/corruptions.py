"""Corruptions as a test-condition axis: chains of corruption steps, their keys and their audio.

A *corruption condition* is a chain of steps written ``NAME(param=value, ...)`` joined by ``+``
and applied left to right, e.g. ``reverb(rt60=0.6)+noise(snr=5)``: reverberation, then additive
noise at 5 dB SNR measured against the reverberant speech. Each ``NAME`` is a
:class:`~ser_bench.interfaces.Corruption` plugin (hook ``register_corruptions``); its ``Params``
validate the step's parameters. Additive noise at an SNR with a noise source is itself a
corruption (``noise``): a run's ``snrs`` x ``noise_sources`` conditions keep their old
representation, cell keys and cache keys; ``noise(snr=S, source=N)`` as a step draws the very
same segment as the plain condition at S dB with N (same mixing stream).

Determinism and keys. Every step draws from its own random stream, seeded by (the corruption's
name and version, the step's full parameters, the utterance's content key, the run seed), so a
step's output does not depend on the steps before it in the chain (the same room for
``reverb(rt60=0.6)`` alone and followed by noise). Each prefix of a chain is cached under a
content key of (the clean audio, the run seed, every step's plugin identity, full parameters and
extra key parts), so ``reverb(rt60=0.6)`` and ``reverb(rt60=0.6)+noise(snr=5)`` share the
reverberant audio. What a step drew for an utterance (room size, distance, DRR, measured RT60,
talkers) is cached beside its audio and recorded in the registry (table ``corruption_draws``).

Scores (:func:`corruption_scores`): ROBUSER / ImageNet-C corruption error, with error = 1 - UAR.
For a model f and a corruption family c with severities s: ``CE_c = sum_s E(f, c, s) / sum_s E(ref,
c, s)``; relative ``rCE_c = sum_s (E(f, c, s) - E(f, clean)) / sum_s (E(ref, c, s) - E(ref, clean))``;
``mCE`` and ``relative mCE`` are their means over the families. The reference is the same SER
model, trained clean, without enhancement.
"""
from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import ValidationError

from .errors import ConfigError
from .interfaces import SAMPLE_RATE, Corruption
from .mixing import PEAK_LIMIT, mix_seed, power

CORRUPTION_VERSION = "1"
STEP_RE = re.compile(r"^\s*([A-Za-z][\w.-]*)\s*(?:\((.*)\))?\s*$")


@dataclass(frozen=True)
class Step:
    """One step of a chain: a corruption name and the parameters the user gave (sorted)."""

    name: str
    params: tuple[tuple[str, Any], ...] = ()

    def label(self) -> str:
        if not self.params:
            return self.name
        return f"{self.name}(" + ",".join(f"{k}={_fmt(v)}" for k, v in self.params) + ")"

    def get(self, key: str, default: Any = None) -> Any:
        return dict(self.params).get(key, default)

    def without(self, key: str) -> Step:
        return Step(self.name, tuple((k, v) for k, v in self.params if k != key))


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _value(raw: str) -> Any:
    raw = raw.strip()
    for conv in (int, float):
        try:
            return float(conv(raw)) if conv is float else conv(raw)
        except ValueError:
            pass
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    return raw.strip("'\"")


def parse_chain(text: str) -> list[Step]:
    """``"reverb(rt60=0.6)+noise(snr=5)"`` -> its steps. Raises ConfigError naming the bad part."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"corruption {text!r} is empty; write NAME(param=value, ...), e.g. reverb(rt60=0.6)")
    steps = []
    for part in _split_plus(text):
        m = STEP_RE.match(part)
        if not m:
            raise ConfigError(f"corruption step {part!r} (in {text!r}) must look like NAME(param=value, ...), "
                              "e.g. reverb(rt60=0.6) or babble(snr=0,talkers=5)")
        params: dict[str, Any] = {}
        for item in filter(None, (p.strip() for p in (m.group(2) or "").split(","))):
            k, eq, v = item.partition("=")
            if not eq or not k.strip():
                raise ConfigError(f"corruption step {part!r}: parameter {item!r} must be KEY=VALUE")
            params[k.strip()] = _value(v)
        steps.append(Step(m.group(1), tuple(sorted(params.items()))))
    return steps


def _split_plus(text: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        if ch == "+" and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return parts + [cur]


def chain_label(steps: Sequence[Step]) -> str:
    return "+".join(s.label() for s in steps)


def canonical(text: str, noise_sources: Sequence[str] = ()) -> str:
    """The canonical label of a chain: parameters sorted, numbers as ``%g``; a ``noise`` step
    without ``source`` gets the run's first noise source."""
    steps = []
    for s in parse_chain(text):
        if s.name == "noise" and s.get("source") is None and noise_sources:
            s = Step(s.name, tuple(sorted(s.params + (("source", noise_sources[0]),))))
        steps.append(s)
    return chain_label(steps)


def chain_sources(label: str) -> list[str]:
    """Noise sources a chain draws from (steps' ``source`` parameters)."""
    return [str(s.get("source")) for s in parse_chain(label) if s.get("source") is not None]


def family(label: str, registry: Any = None) -> tuple[str, float | None, str]:
    """``(family, severity value, severity parameter)`` of a chain: the family is the chain with
    the severity parameter of its last step left out (``reverb(rt60=0.9)`` -> ``reverb``, 0.9)."""
    steps = parse_chain(label)
    last = steps[-1]
    sev = _severity_param(last.name, registry)
    if sev and last.get(sev) is not None:
        return chain_label(steps[:-1] + [last.without(sev)]), float(last.get(sev)), sev
    return label, None, sev


_SEVERITY = {"noise": "snr", "babble": "snr", "reverb": "rt60", "rir": "", "telephone": "", "clipping": "fraction",
             "codec": "bitrate"}


def _severity_param(name: str, registry: Any) -> str:
    if registry is not None:
        try:
            return registry.get("corruption", name).severity
        except Exception:  # an unknown / broken plugin: the built-in table, else none
            pass
    return _SEVERITY.get(name, "")


def steps_json(label: str) -> list[dict[str, Any]]:
    """The registry's record of a chain: ``[{"kind": NAME, **params}, ...]``."""
    return [{"kind": s.name, **dict(s.params)} for s in parse_chain(label)]


# ----------------------------------------------------------------------------- applying


@dataclass
class StepContext:
    """What a step may know besides the signal: the utterance and the run."""

    key: str  # the utterance's content key
    seed: int  # the run seed
    speech_name: str  # the file or utterance id, for error messages
    noise_source: Any = None  # callable name -> NoiseSource plugin instance
    dataset: str = ""  # the SER dataset under test (babble refuses it as its talker corpus)
    extra: dict[str, Any] = field(default_factory=dict)


def step_seed(plugin: Corruption, params: Any, key: str, seed: int) -> int:
    return mix_seed("corruption", CORRUPTION_VERSION, plugin.name, plugin.version,
                    sorted(params.model_dump(mode="json").items()), key, seed)


def validate_params(plugin: Corruption, step: Step) -> Any:
    try:
        return plugin.Params(**dict(step.params))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(params)'}: {e['msg']}" for e in exc.errors())
        allowed = ", ".join(plugin.Params.model_fields) or "none"
        raise ConfigError(f"corruption step {step.label()!r}: {problems}. Parameters of {plugin.name!r}: {allowed} "
                          f"(`bench plugins {plugin.name}` describes them)") from None


def step_parts(ctx: Any, step: Step) -> list[Any]:
    """Cache-key parts of one step: plugin identity, full parameters, the plugin's extra parts."""
    plugin = ctx.plugin("corruption", step.name)
    params = validate_params(plugin, step)
    return [ctx.identity("corruption", step.name), params.model_dump(mode="json"), plugin.key_parts(params, ctx)]


def chain_parts(ctx: Any, utt: Any, label: str, upto: int | None = None) -> list[Any]:
    """Cache-key parts of a chain's (first ``upto`` steps') audio for one utterance."""
    steps = parse_chain(label)[:upto]
    return ["corrupt", CORRUPTION_VERSION, utt.content_key(), ctx.config.seed, [step_parts(ctx, s) for s in steps]]


def corrupt(ctx: Any, utt: Any, label: str) -> np.ndarray:
    """The corrupted audio of ``utt`` under chain ``label`` (the runner's hook). Every proper
    prefix of the chain is cached (shared by chains that start alike); what each step drew is
    cached as ``corruption-info`` beside the full chain's key."""
    steps = parse_chain(label)
    sctx = StepContext(key=utt.content_key(), seed=ctx.config.seed, speech_name=str(utt.path or utt.id),
                       noise_source=lambda n: ctx.plugin("noise_source", n), dataset=getattr(utt, "dataset", ""),
                       extra={"registry": ctx.registry, "datasets": tuple(ctx.config.datasets)})
    x, start, infos = None, 0, []
    for i in range(len(steps) - 1, 0, -1):  # the longest cached prefix
        hit = ctx.cache.load("audio", ctx.cache.key(chain_parts(ctx, utt, label, i)))
        if hit is not None:
            x, start = hit, i
            infos = list(ctx.cache.load_object("corruption-info", ctx.cache.key(chain_parts(ctx, utt, label, i))) or [])
            break
    if x is None:
        x = np.asarray(utt.load(), dtype=np.float32)
    for i in range(start, len(steps)):
        plugin = ctx.plugin("corruption", steps[i].name)
        params = validate_params(plugin, steps[i])
        rng = np.random.default_rng(step_seed(plugin, params, sctx.key, sctx.seed))
        y, info = plugin.apply(np.asarray(x, dtype=np.float32), params, rng, sctx)
        y = np.asarray(y, dtype=np.float32)
        if y.shape != np.shape(x):
            raise ConfigError(f"corruption {steps[i].name!r} returned {y.shape} samples for {np.shape(x)}; a "
                              "corruption must keep the length (crop or pad to the input, aligned)")
        if not np.all(np.isfinite(y)):
            raise ConfigError(f"corruption {steps[i].name!r} returned NaN or inf samples for {sctx.speech_name}")
        x = y
        infos.append({"step": steps[i].label(), **info})
        pkey = ctx.cache.key(chain_parts(ctx, utt, label, i + 1))
        if i + 1 < len(steps):
            ctx.cache.store("audio", pkey, x)
        ctx.cache.store_object("corruption-info", pkey, infos)
    return x


def draws(ctx: Any, utt: Any, label: str) -> list[dict[str, Any]] | None:
    """What each step of ``label`` drew for ``utt`` (from the cache), or None if not made yet."""
    return ctx.cache.load_object("corruption-info", ctx.cache.key(chain_parts(ctx, utt, label)))


# ----------------------------------------------------------------------------- shared DSP


def peak_limit(x: np.ndarray) -> tuple[np.ndarray, float]:
    """Scale ``x`` down to peak <= 0.99 only if it would clip (as mixing does); returns the gain."""
    peak = float(np.max(np.abs(x))) if len(x) else 0.0
    gain = PEAK_LIMIT / peak if peak > PEAK_LIMIT else 1.0
    return (np.asarray(x, dtype=np.float64) * gain), gain


def match_level(y: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """``y`` scaled to the mean power of ``ref`` (the level definition of the level-preserving
    corruptions: reverberation, channel)."""
    py = power(y)
    return np.asarray(y, dtype=np.float64) * (math.sqrt(power(ref) / py) if py > 0 else 1.0)


def schroeder_rt60(h: np.ndarray, fs: int = SAMPLE_RATE, decay_db: float = 30.0, start_db: float = 5.0) -> float:
    """RT60 of an impulse response by Schroeder backward integration: the energy decay curve
    (dB) from its -``start_db`` to its -(``start_db`` + ``decay_db``) crossing, fitted by least
    squares and extrapolated to 60 dB (T30 by default)."""
    h = np.asarray(h, dtype=np.float64)
    h = h[int(np.argmax(np.abs(h))):]
    edc = np.cumsum((h**2)[::-1])[::-1]
    edc_db = 10 * np.log10(np.maximum(edc / edc[0], 1e-300))
    i0 = int(np.argmax(edc_db <= -start_db))
    i1 = int(np.argmax(edc_db <= -(start_db + decay_db)))
    if i1 <= i0 + 2:
        raise ValueError(f"the impulse response does not decay by {start_db + decay_db:g} dB")
    t = np.arange(i0, i1) / fs
    slope = np.polyfit(t, edc_db[i0:i1], 1)[0]  # dB per second (negative)
    return float(-60.0 / slope)


def direct_index(h: np.ndarray) -> int:
    """The direct path's sample: the RIR's largest absolute peak."""
    return int(np.argmax(np.abs(np.asarray(h))))


def drr_db(h: np.ndarray, fs: int = SAMPLE_RATE, window_ms: float = 2.5) -> float:
    """Direct-to-reverberant ratio: energy within +-``window_ms`` of the direct path over the rest."""
    h = np.asarray(h, dtype=np.float64)
    d = direct_index(h)
    w = int(round(window_ms * fs / 1000))
    direct = float(np.sum(h[max(0, d - w): d + w + 1] ** 2))
    rest = float(np.sum(h**2)) - direct
    return float(10 * np.log10(direct / rest)) if rest > 0 else float("inf")


def reverberate(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """``x`` convolved with ``h``, the direct path moved to time 0 (so the result is aligned with
    ``x``: the same length, no delay), level matched to ``x``."""
    from scipy.signal import fftconvolve

    d = direct_index(h)
    y = fftconvolve(np.asarray(x, dtype=np.float64), np.asarray(h, dtype=np.float64)[d:])[: len(x)]
    return match_level(y, x)


# ----------------------------------------------------------------------------- scores


#: Smallest clean - corrupted difference (UAR, 0.5 points) that a ratio over it (gap recovered,
#: relative CE) is computed for; below it the ratio is None.
MIN_GAP = 0.005


def corruption_scores(errors: dict[tuple[str, float | None], float], ref: dict[tuple[str, float | None], float],
                      clean: float, ref_clean: float) -> dict[str, Any]:
    """ROBUSER's CE, relative CE, mCE and relative mCE for one model (see the module docstring).

    Args:
        errors: (family, severity) -> error of the model (1 - UAR) under that condition.
        ref: the same for the reference (clean-trained, no enhancement).
        clean, ref_clean: the model's and the reference's clean error.
    Returns ``{"ce": {family: CE}, "rce": {family: rCE}, "mce": mean CE, "rmce": mean rCE}``; a
    family the reference lacks is left out. An rCE is None where the reference loses less than
    :data:`MIN_GAP` to the family (on average over its severities): its denominator is then
    within rounding of zero and the ratio says nothing (a multi-condition model that barely
    loses to telephone speech gave rCE 18 for a 9 pp loss).
    """
    ce, rce = {}, {}
    for fam in sorted({f for f, _ in errors}):
        keys = [k for k in errors if k[0] == fam and k in ref]
        if not keys:
            continue
        den = sum(ref[k] for k in keys)
        ce[fam] = sum(errors[k] for k in keys) / den if den > 0 else None
        rden = sum(ref[k] - ref_clean for k in keys)
        rce[fam] = (sum(errors[k] - clean for k in keys) / rden) if abs(rden) >= MIN_GAP * len(keys) else None
    vals = [v for v in ce.values() if v is not None]
    rvals = [v for v in rce.values() if v is not None]
    return {"ce": ce, "rce": rce, "mce": float(np.mean(vals)) if vals else None,
            "rmce": float(np.mean(rvals)) if rvals else None}


def gap_recovered(clean_uar: float, corrupted_uar: float, enhanced_uar: float) -> float | None:
    """Share of the clean-corrupted gap an enhancer recovers: (enh - corrupted) / (clean - corrupted);
    None when there is no gap (|gap| < :data:`MIN_GAP`)."""
    gap = clean_uar - corrupted_uar
    return (enhanced_uar - corrupted_uar) / gap if abs(gap) >= MIN_GAP else None


# ----------------------------------------------------------------------------- runner glue


def names(config: Any) -> list[str]:
    """The corruption plugins a run's chains use."""
    return list(dict.fromkeys(s.name for c in config.corruptions for s in parse_chain(c)))


def corruption_conditions(config: Any) -> list[str]:
    """The run's corruption chains, canonical (a ``noise`` step gets the first noise source)."""
    return list(dict.fromkeys(canonical(c, config.noise_sources) for c in config.corruptions))


def check(config: Any, registry: Any) -> None:
    """Before any work: every step names a registered corruption with valid parameters, and every
    ``source`` is one of the run's noise sources."""
    registry.check("corruption", names(config))
    for label in corruption_conditions(config):
        for step in parse_chain(label):
            cls = registry.get("corruption", step.name)
            params = validate_params(cls.__new__(cls), step)
            src = getattr(params, "source", None)
            if src is not None and src not in config.noise_sources:
                raise ConfigError(f"corruption step {step.label()!r} draws from noise source {src!r}, which the run "
                                  f"does not list: add it (--noise {src}) or use one of {config.noise_sources}")


def run_identities(ctx: Any) -> dict[str, str]:
    """``"corruption:NAME" -> identity hash`` of every corruption plugin the run uses (cell keys)."""
    from .interfaces import stable_hash

    return {f"corruption:{n}": stable_hash(ctx.identity("corruption", n)) for n in names(ctx.config)}


def cell_key_parts(cell: Any, ids: dict[str, str]) -> dict[str, Any]:
    """What a corrupted cell adds to its key: its corruptions' identities ({} for every other cell,
    whose key stays what it was)."""
    chains = [m.corruption for m in (*cell.train.pool, cell.train, cell.test)]
    used = [s.name for c in chains if c for s in parse_chain(c)]
    return {"corruptions": {n: ids[f"corruption:{n}"] for n in sorted(set(used))}} if used else {}


def record_draws(store: Any, run_id: int, ctx: Any, needed: Any) -> int:
    """Store what every corrupted test condition of a run drew per utterance (from the cache;
    ``needed``: the runner's ``(dataset, condition) -> (models, utterance ids)``)."""
    rows = []
    for (ds, cond), (_models, want) in needed.items():
        if cond.kind != "noisy" or not cond.corruption:
            continue
        utts = ctx.utterances(ds)
        for uid in want:
            d = draws(ctx, utts[uid], cond.corruption) if uid in utts else None
            if d is not None:
                rows.append({"dataset": ds, "utterance_id": uid, "corruption": cond.corruption, "draws": d})
    return store.record_corruption_draws(run_id, rows)
