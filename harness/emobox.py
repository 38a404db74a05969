"""EmoBox's published folds, usable with every dataset loader (option ``emobox``).

EmoBox (Ma et al., Interspeech 2024, github.com/emo-box/EmoBox) publishes speaker-independent
folds for 32 corpora as ``data/<corpus>/fold_<k>/<corpus>_{train,test}_fold_<k>.jsonl``: one JSON
object per line with ``key``, ``wav`` (a path under EmoBox's ``downloads/``), ``emo``, ``length``,
``dataset``, ``channel``... The release spells the files both ``..._fold_1.jsonl`` and
``..._fold1.jsonl`` (some folders hold both, with the same lines); ``data/<corpus>/label_map.json``
maps the raw ``emo`` values onto EmoBox's class names, including released misspellings such as
EMO-DB's ``"boredem"`` (-> ``"Boredom"``).

A loader given ``-o DATASET.emobox=PATH`` (``PATH`` = the EmoBox ``data/<corpus>/`` folder) lists
its corpus as usual; then :func:`apply_emobox` keeps the utterances EmoBox lists, matched **by
file name** (the last path component of ``wav``; where several of the loader's files share that
name, by as many trailing folders as it takes), gives each EmoBox's mapped label (a regression
dataset keeps its own ratings) and sets
``Utterance.fold`` to ``"emobox<k>"``, the fold whose test list holds it. ``--cv emobox`` (or
``auto``) then tests each fold on a model trained on the others, as EmoBox does. How many
entries matched is logged, kept on the dataset (``dataset.emobox_match``) and written into its
``notes``, shown beside its results.
"""
from __future__ import annotations

import json
import logging
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

from .errors import ConfigError, PluginError

log = logging.getLogger("ser_bench.datasets")

FOLD_DIR_RE = re.compile(r"^fold_?(\d+)$")
FILE_RE = re.compile(r"^(?P<corpus>.+)_(?P<split>train|test)_fold_?(?P<k>\d+)\.jsonl$")


@dataclass(frozen=True)
class EmoBoxEntry:
    """One line of an EmoBox test list."""

    key: str
    wav: str
    emo: str
    label: str  # after label_map.json
    fold: int

    @property
    def parts(self) -> tuple[str, ...]:
        return PurePosixPath(self.wav.replace("\\", "/")).parts


@dataclass
class EmoBoxFolds:
    """EmoBox's folds of one corpus: every test entry with its fold, and what was read."""

    folder: Path
    corpus: str
    entries: list[EmoBoxEntry]
    n_folds: int
    label_map: dict[str, str] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    n_train_entries: int = 0


@dataclass(frozen=True)
class EmoBoxMatch:
    """How a loader's listing met EmoBox's: ``matched`` of ``n_emobox`` EmoBox entries were found
    among the loader's ``n_loader`` utterances (the others are left out of the run)."""

    folder: str
    n_folds: int
    n_emobox: int
    n_loader: int
    matched: int
    unmatched_examples: tuple[str, ...] = ()

    def note(self) -> str:
        left = self.n_loader - self.matched
        return (f"EmoBox folds ({self.n_folds}) from {self.folder}: {self.matched} of {self.n_emobox} EmoBox "
                f"utterances matched by file name" + (f"; {left} of the loader's utterances are not in EmoBox and "
                                                       "are left out" if left else ""))


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    out = []
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise PluginError(f"{path}: cannot read this EmoBox fold list ({exc})") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PluginError(f"{path} line {n}: not JSON ({exc.msg}); EmoBox fold lists hold one JSON object per line") from None
        if not isinstance(obj, dict) or not all(isinstance(obj.get(k), str) for k in ("wav", "emo")):
            raise PluginError(f"{path} line {n}: expected an object with string fields 'wav' and 'emo' (EmoBox jsonl)")
        out.append(obj)
    return out


def _map_label(emo: str, label_map: dict[str, str]) -> str:
    if emo in label_map:
        return label_map[emo]
    folded = {k.casefold(): v for k, v in label_map.items()}  # EMO-DB's map says "Neutral", its lines may not
    return folded.get(emo.casefold(), emo)


def read_emobox_folds(folder: str | Path, corpus: str | None = None) -> EmoBoxFolds:
    """Read EmoBox's ``data/<corpus>/`` folder: every test entry with its fold and mapped label.

    Both file spellings (``<corpus>_test_fold_<k>.jsonl`` and ``<corpus>_test_fold<k>.jsonl``) are
    read; where a fold has both, their entries are merged (by ``wav``). An entry listed in two
    test folds is an error (the folds would overlap).
    """
    folder = Path(folder).expanduser()
    layout = "data/<corpus>/fold_<k>/<corpus>_{train,test}_fold_<k>.jsonl (and label_map.json)"
    if not folder.is_dir():
        raise ConfigError(f"option emobox={folder}: no such folder; point it at EmoBox's {layout.split('fold_')[0]} folder "
                          f"(expected {layout})")
    fold_dirs = sorted((int(m[1]), p) for p in folder.iterdir() if p.is_dir() and (m := FOLD_DIR_RE.match(p.name)))
    if not fold_dirs:
        raise ConfigError(f"option emobox={folder}: no fold_<k> folders there; expected EmoBox's {layout}")
    label_map: dict[str, str] = {}
    lm = folder / "label_map.json"
    if lm.is_file():
        try:
            label_map = {str(k): str(v) for k, v in json.loads(lm.read_text(encoding="utf-8-sig")).items()}
        except (json.JSONDecodeError, AttributeError) as exc:
            raise PluginError(f"{lm}: not a JSON object mapping EmoBox labels ({exc})") from None
    by_wav: dict[str, EmoBoxEntry] = {}
    files: list[Path] = []
    n_train = 0
    names: set[str] = set()
    for k, fdir in fold_dirs:
        tests = []
        for p in sorted(fdir.glob("*.jsonl")):
            m = FILE_RE.match(p.name)
            if not m or int(m["k"]) != k or (corpus and m["corpus"] != corpus):
                continue
            names.add(m["corpus"])
            files.append(p)
            if m["split"] == "train":
                n_train = max(n_train, len(_read_jsonl(p)))
            else:
                tests.append(p)
        if not tests:
            raise PluginError(f"{fdir}: no <corpus>_test_fold_{k}.jsonl (or _fold{k}.jsonl) in this EmoBox fold folder")
        for p in tests:
            for obj in _read_jsonl(p):
                e = EmoBoxEntry(key=str(obj.get("key", obj["wav"])), wav=obj["wav"], emo=obj["emo"],
                                label=_map_label(obj["emo"], label_map), fold=k)
                prev = by_wav.get(e.wav)
                if prev is not None and prev.fold != k:
                    raise PluginError(f"{p}: {e.wav} is in the test lists of folds {prev.fold} and {k}; "
                                      "EmoBox's test folds must not overlap")
                by_wav[e.wav] = e
    if not by_wav:
        raise PluginError(f"{folder}: the EmoBox test lists hold no entries")
    return EmoBoxFolds(folder=folder, corpus=",".join(sorted(names)), entries=list(by_wav.values()),
                       n_folds=len(fold_dirs), label_map=label_map, files=files, n_train_entries=n_train)


def _suffix(path: Any, n: int) -> tuple[str, ...]:
    parts = PurePosixPath(str(path).replace("\\", "/")).parts
    return tuple(p.lower() for p in parts[-n:])


def match_utterances(utts: list, folds: EmoBoxFolds) -> tuple[dict[str, EmoBoxEntry], list[EmoBoxEntry]]:
    """Utterance id -> its EmoBox entry, by file name (then trailing folders when names repeat);
    and the EmoBox entries no utterance matched."""
    def name_of(u: Any) -> str:
        return PurePosixPath(str(u.path).replace("\\", "/")).name if u.path is not None else u.id

    by_name: dict[str, list] = {}
    by_stem: dict[str, list] = {}
    for u in utts:
        n = name_of(u).lower()
        by_name.setdefault(n, []).append(u)
        by_stem.setdefault(n.rsplit(".", 1)[0], []).append(u)
    out: dict[str, EmoBoxEntry] = {}
    unmatched: list[EmoBoxEntry] = []
    for e in folds.entries:
        name = e.parts[-1].lower() if e.parts else e.wav.lower()
        cands = by_name.get(name) or by_stem.get(name.rsplit(".", 1)[0], [])  # .flac where EmoBox says .wav
        depth = 2
        while len(cands) > 1 and depth <= len(e.parts):
            want = tuple(p.lower() for p in e.parts[-depth:])
            narrowed = [u for u in cands if u.path is not None and _suffix(u.path, depth)[:-1] == want[:-1]]
            if narrowed:
                cands = narrowed
            depth += 1
        if len(cands) == 1 and cands[0].id not in out:
            out[cands[0].id] = e
        else:
            unmatched.append(e)
    return out, unmatched


def apply_emobox(dataset: Any, utts: list) -> list:
    """The utterances EmoBox lists, with EmoBox's labels and folds (see the module docstring)."""
    folder = dataset.config.emobox
    folds = read_emobox_folds(folder)
    matched, unmatched = match_utterances(utts, folds)
    if not matched:
        example = folds.entries[0].wav
        raise PluginError(
            f"dataset {dataset.name!r}: none of the {len(folds.entries)} EmoBox entries in {folder} matches one of its "
            f"{len(utts)} utterances by file name (e.g. EmoBox's {example!r}); is it the EmoBox folder of this corpus, "
            f"and do the loader's options (e.g. classes) keep the files EmoBox uses?"
        )
    keep_labels = getattr(dataset, "task", "classification") == "regression"  # ratings stay; EmoBox gives folds
    out = [replace(u, label=u.label if keep_labels else matched[u.id].label, fold=f"emobox{matched[u.id].fold}")
           for u in utts if u.id in matched]
    info = EmoBoxMatch(folder=str(folder), n_folds=folds.n_folds, n_emobox=len(folds.entries), n_loader=len(utts),
                       matched=len(matched), unmatched_examples=tuple(e.wav for e in unmatched[:5]))
    dataset.emobox_match = info
    note = info.note()
    dataset.notes = f"{dataset.notes}; {note}" if getattr(dataset, "notes", "") else note
    counts = Counter(e.fold for e in matched.values())
    (log.warning if unmatched else log.info)(
        "dataset %r: %s (per fold: %s)%s", dataset.name, note, ", ".join(f"{k}: {counts[k]}" for k in sorted(counts)),
        f"; not found, e.g. {', '.join(info.unmatched_examples)}" if unmatched else "")
    return out
