"""``check_noise_source``: the :class:`ser_bench.NoiseSource` contract (disjoint train/test parts)."""
from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from ..audio import is_silent
from ..interfaces import NoiseClip, NoiseSource
from .common import ConformanceError, _call, _check_identity, _fresh, _instantiate, _sample, _who, check_metadata


def check_noise_source(
    source: NoiseSource | type[NoiseSource],
    *,
    options: dict[str, Any] | None = None,
    max_audio: int = 50,
) -> NoiseSource:
    """Check a noise source: stable clips with disjoint, non-empty train and test parts.

    Rules: valid metadata; a non-empty list of :class:`NoiseClip` in a stable order with unique
    ids and unique non-empty fingerprints (they key the mixture cache); every clip in exactly
    one part, "train" or "test", the same in any order and on a second instance; both parts
    non-empty; and for up to ``max_audio`` clips, audio that loads as finite, non-silent mono,
    with no identical audio in both parts.
    """
    inst = _instantiate(source, "noise_source", options)
    who = _who(inst, "noise_source")
    check_metadata(inst, "noise_source")
    _check_identity(inst, who)
    clips = _call(who, "lists clips", "load_clips()", inst.load_clips)
    if not isinstance(clips, list) or not clips or not all(isinstance(c, NoiseClip) for c in clips):
        raise ConformanceError(who, "lists clips", "load_clips() must return a non-empty list of ser_bench.NoiseClip")
    ids = [c.id for c in clips]
    if len(set(ids)) != len(ids):
        raise ConformanceError(who, "has unique clip ids", f"clip id {next(i for i in ids if ids.count(i) > 1)!r} occurs twice")
    fps = [c.fingerprint for c in clips]
    if any(not isinstance(f, str) or not f for f in fps) or len(set(fps)) != len(fps):
        raise ConformanceError(
            who, "has unique fingerprints",
            "every clip needs a non-empty fingerprint of its own (e.g. path:size:mtime, or generator parameters); "
            "mixtures are cached under it",
        )
    parts = {c.id: _call(who, "splits train/test", f"part_of({c.id!r})", lambda c=c: inst.part_of(c)) for c in clips}
    bad = {p for p in parts.values() if p not in ("train", "test")}
    if bad:
        raise ConformanceError(who, "splits train/test", f"part_of() returned {sorted(map(str, bad))}; return 'train' or 'test'")
    for part in ("train", "test"):
        if part not in parts.values():
            raise ConformanceError(
                who, "has disjoint train and test parts",
                f"the {part!r} part is empty ({len(clips)} clips); enhancers train on 'train', SER is tested on 'test' noise",
            )
    if {c.id: inst.part_of(c) for c in reversed(clips)} != parts:
        raise ConformanceError(who, "is deterministic", "part_of() depends on call order; derive the part from the clip alone")
    other = _fresh(inst)
    other_clips = other.load_clips()
    if [c.id for c in other_clips] != ids or {c.id: other.part_of(c) for c in other_clips} != parts:
        raise ConformanceError(who, "is deterministic", "a second instance listed other clips, another order or other parts")
    train_ids = {c.id for c in _call(who, "splits train/test", "clips('train')", lambda: inst.clips("train"))}
    test_ids = {c.id for c in _call(who, "splits train/test", "clips('test')", lambda: inst.clips("test"))}
    if train_ids & test_ids or train_ids | test_ids != set(ids):
        raise ConformanceError(who, "has disjoint train and test parts", "clips('train') and clips('test') overlap or miss clips")

    seen: dict[str, str] = {}
    for c in _sample(clips, max_audio):
        x = _call(who, "has readable audio", f"loading clip {c.id!r} ({c.path or 'loader'})", c.load)
        if x.ndim != 1 or is_silent(x):
            raise ConformanceError(who, "has audible audio", f"clip {c.id!r} is silent or not mono; no SNR can be set with it")
        digest = hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()
        if digest in seen and parts[seen[digest]] != parts[c.id]:
            raise ConformanceError(
                who, "has disjoint train and test parts",
                f"clips {seen[digest]!r} ({parts[seen[digest]]}) and {c.id!r} ({parts[c.id]}) hold identical audio",
            )
        seen.setdefault(digest, c.id)
    return inst

