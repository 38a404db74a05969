"""The paper's protocols as cell enumerations, and cross-validation folds.

A *condition* is how the audio of one side (train or test) is made: ``clean``; ``noisy`` at an
SNR with a noise source; ``enhanced`` = noisy then passed through an enhancer. A *cell* is one
(dataset, SER model, enhancer, noise source, protocol, train condition, test condition, fold)
to fit and score. Every protocol includes the clean baseline (train clean, test clean).

- matched:    noisy(s) -> noisy(s), and enhanced(e, s) -> enhanced(e, s), for each SNR s
- mismatched: clean -> noisy(s), and clean -> enhanced(e, s)
- multi-snr:  noisy(a) -> noisy(b), and enhanced(e, a) -> enhanced(e, b), for a in train_snrs, b in test_snrs
- multi-condition: as multi-snr over the run's corruption conditions: corrupted(a) -> corrupted(b)
  for every pair of corruptions a, b (and, for the noise sources, every pair of SNRs); and
  multi-condition training proper: one model per enhancer row fitted on the *pool* of clean speech
  and every corruption condition of the run (each training utterance once per member, see
  :func:`pooled`), tested on each corruption

Corruptions (``config.corruptions``, :mod:`ser_bench.corruptions`) are further test conditions:
a ``noisy`` (corrupted) or ``enhanced`` condition whose ``corruption`` is the chain's canonical
label (``reverb(rt60=0.6)+noise(snr=5,source=folder)``), ``snr`` None and ``noise`` the noise
source its ``noise`` step draws from ("-" if none). Matched and mismatched treat them like an
SNR; multi-snr pairs each corruption with itself. Conditions without a corruption keep their
representation (and so their cell and cache keys).

Noisy cells are stored under the enhancer ``none``; the enhancer ``none`` adds no enhanced cells
(its "enhanced" audio is the noisy audio).
"""
from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

from .config import RunConfig
from .errors import ConfigError
from .interfaces import Utterance

CLEAN_NOISE = "-"


@dataclass(frozen=True)
class Condition:
    kind: str  # clean | noisy | enhanced
    snr: float | None = None
    noise: str = CLEAN_NOISE
    enhancer: str = "none"
    #: the canonical corruption chain ("" for clean and additive-noise-at-an-SNR conditions)
    corruption: str = ""
    #: kind "pooled" (a training condition only): the conditions whose audio is pooled
    pool: tuple[Condition, ...] = ()

    def label(self) -> str:
        if self.kind == "clean":
            return "clean"
        if self.kind == "pooled":  # its members' chains; each member noisy, or enhanced by the pool's enhancer
            return ("pooled[" + ", ".join(m.corruption or m.label() for m in self.pool) + "]"
                    + (f"/{self.enhancer}" if self.enhancer != "none" else ""))
        base = f"{self.kind}@{self.corruption}" if self.corruption else f"{self.kind}@{self.snr:g}dB/{self.noise}"
        return base + (f"/{self.enhancer}" if self.kind == "enhanced" else "")


CLEAN = Condition("clean")


@dataclass(frozen=True)
class Cell:
    dataset: str
    ser_model: str
    protocol: str
    enhancer: str
    noise: str
    train: Condition
    test: Condition
    fold: str

    def coords(self) -> dict:
        out = {
            "dataset": self.dataset, "ser_model": self.ser_model, "protocol": self.protocol,
            "enhancer": self.enhancer, "noise": self.noise,
            "train_condition": self.train.kind, "train_snr": self.train.snr,
            "test_condition": self.test.kind, "test_snr": self.test.snr, "fold": self.fold,
        }
        if self.train.corruption or self.test.corruption or self.train.pool:  # absent otherwise: old keys
            from .corruptions import steps_json

            out.update(train_corruption=pool_label(self.train) if self.train.pool else self.train.corruption or None,
                       test_corruption=self.test.corruption or None,
                       corruption_json=json.dumps(steps_json(self.test.corruption)) if self.test.corruption else None)
        return out

    def as_dict(self) -> dict:
        return {**self.coords(), "train": _cond_dict(self.train), "test": _cond_dict(self.test)}


def _cond_dict(c: Condition) -> dict:
    d = asdict(c)
    if not d["corruption"]:
        del d["corruption"]  # conditions without a corruption: the dict (and cell key) they always had
    if c.pool:
        d["pool"] = [_cond_dict(m) for m in c.pool]
    else:
        del d["pool"]
    return d


#: ``train_corruption`` of a pooled training condition starts with this (the report tells them apart)
POOL_PREFIX = "pool: "


def pool_label(c: Condition) -> str:
    """How a pooled training condition is stored (``cells.train_corruption``): its members' chains."""
    return POOL_PREFIX + "; ".join(m.corruption or m.kind for m in c.pool)


def pooled(members: Sequence[Condition], enhancer: str = "none") -> Condition:
    """The training condition that pools ``members``: a model fitted on it sees every training
    utterance once per member (clean, and each corruption's noisy or enhanced audio)."""
    return Condition("pooled", None, CLEAN_NOISE, enhancer, "", tuple(members))


def members(c: Condition) -> tuple[Condition, ...]:
    """The conditions whose audio a training condition reads: its pool, or itself."""
    return c.pool if c.kind == "pooled" else (c,)


@dataclass(frozen=True)
class Fold:
    name: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    valid: tuple[str, ...] = ()
    note: str = ""


def condition_pairs(config: RunConfig) -> Iterator[tuple[str, str, Condition, Condition]]:
    """(enhancer row, noise, train condition, test condition) for the config's protocol."""
    yield "none", CLEAN_NOISE, CLEAN, CLEAN
    proto = config.protocol
    if proto == "clean":
        return
    enhancers = [e for e in config.enhancers if e != "none"]
    for noise in config.noise_sources:
        if proto in ("multi-snr", "multi-condition"):
            pairs = [(a, b) for a in (config.train_snrs or config.snrs) for b in (config.test_snrs or config.snrs)]
        else:
            pairs = [(s, s) for s in config.snrs]
        for a, b in pairs:
            noisy_b = Condition("noisy", b, noise)
            if proto == "mismatched":
                yield "none", noise, CLEAN, noisy_b
            else:
                yield "none", noise, Condition("noisy", a, noise), noisy_b
            for e in enhancers:
                enh_b = Condition("enhanced", b, noise, e)
                train = CLEAN if proto == "mismatched" else Condition("enhanced", a, noise, e)
                yield e, noise, train, enh_b
    yield from corruption_pairs(config, enhancers)


def corruption_conditions(config: RunConfig) -> list[str]:
    """The run's corruption chains, canonical (a ``noise`` step gets the first noise source)."""
    from .corruptions import corruption_conditions as conditions

    return conditions(config)


def corruption_pairs(config: RunConfig, enhancers: list[str]) -> Iterator[tuple[str, str, Condition, Condition]]:
    from .corruptions import chain_sources

    labels = corruption_conditions(config)
    proto = config.protocol
    pairs = [(a, b) for a in labels for b in labels] if proto == "multi-condition" else [(c, c) for c in labels]
    def cond(kind: str, label: str, e: str = "none") -> Condition:
        return Condition(kind, None, (chain_sources(label) or [CLEAN_NOISE])[0], e, corruption=label)

    for a, b in pairs:
        noisy_b = cond("noisy", b)
        yield "none", noisy_b.noise, CLEAN if proto == "mismatched" else cond("noisy", a), noisy_b
        for e in enhancers:
            train = CLEAN if proto == "mismatched" else cond("enhanced", a, e)
            yield e, noisy_b.noise, train, cond("enhanced", b, e)
    if proto == "multi-condition" and labels:  # one model per row, fitted on clean + every corruption
        for e in ["none", *enhancers]:
            tests = [cond("noisy" if e == "none" else "enhanced", b, e) for b in labels]
            train = pooled([CLEAN, *tests], e)
            for t in tests:
                yield e, t.noise, train, t


def make_folds(utts: Sequence[Utterance], cv: str, dataset: str, has_partitions: bool,
               speaker_options: Sequence[str] = (), k: int = 5) -> list[Fold]:
    """Leave-one-speaker-out folds, ``k`` grouped folds by speaker, the official partitions, or the
    corpus's own folds (``dataset``: each utterance's ``fold``; ``emobox``: EmoBox's published folds,
    read by the dataset's option ``emobox``). ``auto``: the corpus's own folds when every utterance
    has one, else the partitions when the dataset has them, else leave-one-speaker-out.

    ``group-kfold``: every speaker's utterances fall in one test fold, and the folds are balanced
    by label (scikit-learn's ``StratifiedGroupKFold``, no shuffling: the same utterances always
    give the same folds). Where each speaker has one emotion, LOSO tests one emotion per fold;
    grouped k-fold tests several.

    ``speaker_options``: the dataset's options that decide the speakers (e.g. ``speaker_regex``),
    named in the error when there are too few speakers.
    """
    if cv == "auto":
        if utts and all(u.fold for u in utts):
            cv = "dataset"  # the corpus's own folds (IEMOCAP sessions, EmoBox's folds, grouped speakers)
        else:
            cv = "partition" if has_partitions else "loso"
    if cv in ("dataset", "emobox"):
        return dataset_folds(utts, cv, dataset)
    if cv == "group-kfold":
        return group_kfold(utts, k, dataset)
    if cv == "loso":
        speakers = sorted({u.speaker for u in utts})
        if len(speakers) < 2:
            shown = ", ".join(repr(s) for s in speakers[:3])
            fix = (" or ".join(f"-o {dataset}.{o}=..." for o in speaker_options) + " sets how speakers are found"
                   if speaker_options else "check the speaker ids it gives")
            raise ConfigError(
                f"dataset {dataset!r} has {len(speakers)} speaker(s) ({shown}); leave-one-speaker-out folds "
                f"(--cv loso) need at least 2: {fix} (`bench plugins {dataset}` describes its options)"
                + (", or use --cv partition for its official partitions" if has_partitions else "")
            )
        return [
            Fold(
                name=f"spk:{s}",
                train=tuple(u.id for u in utts if u.speaker != s),
                test=tuple(u.id for u in utts if u.speaker == s),
            )
            for s in speakers
        ]
    parts: dict[str, list[str]] = {}
    for u in utts:
        parts.setdefault((u.partition or "").lower(), []).append(u.id)
    dev = parts.get("dev") or parts.get("devel") or parts.get("valid") or parts.get("validation") or []
    train = parts.get("train", [])
    if not train:
        raise ConfigError(f"dataset {dataset!r} has no 'train' partition; use --cv loso (in a suite: cv = \"loso\")")
    test = parts.get("test", [])
    note = ""
    if not test:
        if not dev:
            raise ConfigError(f"dataset {dataset!r} has neither a 'test' nor a 'dev' partition")
        # dev becomes the test set, so it must not also steer early stopping / post-processing:
        # no validation set is passed and models hold out part of train themselves
        test, dev = dev, []
        note = "test labels missing: the dev partition serves as test; no validation partition (models hold out train speakers)"
    return [Fold(name="partition", train=tuple(train), test=tuple(test), valid=tuple(dev), note=note)]


def dataset_folds(utts: Sequence[Utterance], cv: str, dataset: str) -> list[Fold]:
    """One fold per distinct ``Utterance.fold``: test on it, train on every other fold."""
    missing = [u.id for u in utts if not u.fold]
    if cv == "emobox" and (missing or not all(str(u.fold).startswith("emobox") for u in utts)):
        raise ConfigError(
            f"dataset {dataset!r} has no EmoBox folds: --cv emobox needs the option {dataset}.emobox=PATH, the "
            f"EmoBox folder data/<corpus>/ holding fold_1/ ... (e.g. -o {dataset}.emobox=EmoBox/data/{dataset})"
        )
    if missing:
        raise ConfigError(
            f"dataset {dataset!r} does not define its own folds ({len(missing)} utterance(s) without one, e.g. "
            f"{missing[0]!r}); use --cv loso, group-kfold or partition"
        )
    names = sorted({str(u.fold) for u in utts}, key=_natural)
    if len(names) < 2:
        raise ConfigError(f"dataset {dataset!r} defines one fold only ({names[0]!r}); cross-validation needs two or "
                          "more: use --cv loso, group-kfold or partition")
    folds = []
    for name in names:
        test = tuple(u.id for u in utts if u.fold == name)
        train = tuple(u.id for u in utts if u.fold != name)
        spk = sorted({u.speaker for u in utts if u.fold == name})
        folds.append(Fold(name=name, train=train, test=test,
                          note=f"test speakers: {', '.join(spk[:12])}{' ...' if len(spk) > 12 else ''}"))
    return folds


def _natural(name: str) -> tuple:
    """Sort key: "Session10" after "Session9"."""
    import re

    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))


def group_kfold(utts: Sequence[Utterance], k: int, dataset: str) -> list[Fold]:
    """``k`` folds of whole speakers, balanced by label (see :func:`make_folds`)."""
    import warnings

    from sklearn.model_selection import StratifiedGroupKFold

    speakers = sorted({u.speaker for u in utts})
    if len(speakers) < k:
        raise ConfigError(f"dataset {dataset!r} has {len(speakers)} speaker(s); group-kfold with {k} folds needs at "
                          f"least {k}: lower --cv-folds (suite: cv_folds) to {max(2, len(speakers))} or fewer")
    order = sorted(utts, key=lambda u: (u.speaker, u.id))
    labels = [str(u.label) for u in order]
    with warnings.catch_warnings():  # "least populated class has fewer members than n_splits": expected here
        warnings.simplefilter("ignore", UserWarning)
        splits = list(StratifiedGroupKFold(n_splits=k).split(order, labels, [u.speaker for u in order]))
    folds = []
    for i, (tr, te) in enumerate(splits):
        test_spk = sorted({order[j].speaker for j in te})
        folds.append(Fold(name=f"group{i + 1}of{k}", train=tuple(order[j].id for j in tr),
                          test=tuple(order[j].id for j in te), note="test speakers: " + ", ".join(test_spk)))
    return folds


def enumerate_cells(config: RunConfig, folds: dict[str, list[Fold]]) -> list[Cell]:
    """Every cell of the config, in a deterministic order."""
    cells = []
    for ds in config.datasets:
        for model in config.ser_models:
            for enh, noise, tr, te in condition_pairs(config):
                for f in folds[ds]:
                    cells.append(Cell(ds, model, config.protocol, enh, noise, tr, te, f.name))
    return cells
