"""``check_dataset``: the :class:`ser_bench.Dataset` contract."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..audio import SILENCE_PEAK, is_silent
from ..interfaces import SAMPLE_RATE, Dataset, TimeSeries, Utterance
from .common import PARTITIONS, ConformanceError, _call, _check_identity, _fresh, _instantiate, _sample, _who, check_metadata


def check_dataset(
    dataset: Dataset | type[Dataset],
    *,
    options: dict[str, Any] | None = None,
    max_audio: int = 50,
    min_duration_s: float = 0.1,
) -> Dataset:
    """Check a dataset: well-formed utterances with readable, non-silent audio.

    Rules: valid metadata; a non-empty list of :class:`Utterance` in a stable order; unique
    non-empty ids; a speaker for each; labels that fit ``task`` (class names, at least two
    classes; or finite :class:`TimeSeries` matching the audio duration); partitions among
    train/dev/test, and with ``has_partitions`` every utterance in one, train and test
    non-empty; otherwise at least two speakers (for leave-one-speaker-out); unique, stable
    ``content_key()`` values (they key the audio cache); and for up to ``max_audio`` utterances
    audio that loads as finite, non-silent mono of at least ``min_duration_s``.
    """
    inst = _instantiate(dataset, "dataset", options)
    who = _who(inst, "dataset")
    check_metadata(inst, "dataset")
    if inst.task not in ("classification", "regression"):
        raise ConformanceError(who, "has a valid task", f"task is {inst.task!r}; use 'classification' or 'regression'")
    utts = _call(who, "lists utterances", "load_utterances()", inst.load_utterances)
    if not isinstance(utts, list) or not utts:
        raise ConformanceError(who, "lists utterances", f"load_utterances() returned {type(utts).__name__} "
                               f"{'(empty)' if not utts else ''}; return a non-empty list of ser_bench.Utterance")
    seen: set[str] = set()
    for u in utts:
        if not isinstance(u, Utterance):
            raise ConformanceError(who, "lists utterances", f"got a {type(u).__name__}; return ser_bench.Utterance objects")
        if not isinstance(u.id, str) or not u.id:
            raise ConformanceError(who, "has unique ids", f"utterance id {u.id!r}; use a non-empty string")
        if u.id in seen:
            raise ConformanceError(who, "has unique ids", f"utterance id {u.id!r} occurs twice")
        seen.add(u.id)
        if not isinstance(u.speaker, str) or not u.speaker:
            raise ConformanceError(who, "names speakers", f"utterance {u.id!r} has speaker {u.speaker!r}; use a non-empty string")
        _check_label(who, inst.task, u)
        if u.partition not in (None, *PARTITIONS):
            raise ConformanceError(who, "uses known partitions", f"utterance {u.id!r} has partition {u.partition!r}; use one of {PARTITIONS} or None")
    again = [u.id for u in _fresh(inst).load_utterances()]
    if again != [u.id for u in utts]:
        raise ConformanceError(who, "is deterministic", "a second instance listed different utterances or another order; sort them")

    if inst.task == "classification" and len({u.label for u in utts}) < 2:
        raise ConformanceError(who, "has several classes", f"only one class {utts[0].label!r}; a classifier needs two or more")
    parts = {u.partition for u in utts}
    if inst.has_partitions:
        if None in parts or not {"train", "test"} <= parts:
            raise ConformanceError(
                who, "has complete partitions",
                f"has_partitions is True but the partitions are {sorted(map(str, parts))}; every utterance needs "
                "train/dev/test and train and test must be non-empty (or set has_partitions = False)",
            )
    elif len({u.speaker for u in utts}) < 2:
        raise ConformanceError(who, "has several speakers", "one speaker only: leave-one-speaker-out needs two or more (or official partitions)")

    keys = [u.content_key() for u in utts]
    if any(not isinstance(k, str) or not k for k in keys):
        raise ConformanceError(who, "has unique content keys", "an utterance has an empty content key; give it a "
                               "`path` or a `fingerprint` saying what its audio is")
    by_key: dict[str, Utterance] = {}
    for u, k in zip(utts, keys):  # one key, one audio: equal keys are fine only for equal audio
        first = by_key.setdefault(k, u)
        if first is not u and not np.array_equal(first.load(), u.load()):
            raise ConformanceError(
                who, "has unique content keys",
                f"content key {k!r} is shared by utterances {first.id!r} and {u.id!r}, whose audio differs; the audio "
                "cache is keyed by it, so give each utterance a `fingerprint` saying what its audio is (or a distinct `path`)",
            )
    if keys != [u.content_key() for u in _fresh(inst).load_utterances()]:
        raise ConformanceError(who, "has stable content keys", "content keys differ between two instances; derive them from the audio's identity")
    _check_identity(inst, who)  # after the utterance rules: a dataset's identity digests its utterances

    for u in _sample(utts, max_audio):
        x = _call(who, "has readable audio", f"loading utterance {u.id!r} ({u.path or 'loader'})", u.load)
        if x.ndim != 1 or x.dtype != np.float32:
            raise ConformanceError(who, "has readable audio", f"utterance {u.id!r}: got {x.dtype} of shape {x.shape}; return mono float32")
        if is_silent(x):
            raise ConformanceError(who, "has audible audio", f"utterance {u.id!r} is silent (peak < {SILENCE_PEAK:g}); no SNR can be set for it")
        dur = len(x) / SAMPLE_RATE
        if dur < min_duration_s:
            raise ConformanceError(who, "has usable durations", f"utterance {u.id!r} lasts {dur:.3f} s (< {min_duration_s} s)")
        if isinstance(u.label, TimeSeries):
            lab_s = len(u.label) * u.label.hop_s
            if abs(lab_s - dur) > max(2 * u.label.hop_s, 0.05 * dur):
                raise ConformanceError(
                    who, "has labels matching the audio",
                    f"utterance {u.id!r}: {len(u.label)} frames x {u.label.hop_s} s = {lab_s:.2f} s of labels for {dur:.2f} s of audio",
                )
    _call(who, "passes the harness's own checks", "utterances()", _fresh(inst).utterances)
    return inst


def _check_label(who: str, task: str, u: Utterance) -> None:
    if task == "classification":
        if not isinstance(u.label, str) or not u.label:
            raise ConformanceError(who, "has valid labels", f"utterance {u.id!r} has label {u.label!r}; classification labels are non-empty strings")
        return
    if not isinstance(u.label, TimeSeries):
        raise ConformanceError(who, "has valid labels", f"utterance {u.id!r} has a {type(u.label).__name__} label; regression labels are TimeSeries")
    v = np.asarray(u.label.values)
    if v.ndim != 1 or not len(v) or not np.all(np.isfinite(v)) or not u.label.hop_s > 0:
        raise ConformanceError(who, "has valid labels", f"utterance {u.id!r}: a TimeSeries needs finite 1-D values and hop_s > 0")

