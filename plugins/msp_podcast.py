"""MSP-Podcast (UT Dallas, Lotfian & Busso), read in its release layout.

Layout::

    ROOT/Audios/<FileName>.wav            (older releases: ROOT/Audio/)
    ROOT/Labels/labels_consensus.csv      (older releases: labels_concensus.csv)

The label file has one row per segment with the columns ``FileName, EmoClass, EmoAct, EmoVal,
EmoDom, SpkrID, Gender, Split_Set`` (other columns are ignored). ``EmoClass`` is the consensus
category: A angry, S sad, H happy, U surprise, F fear, D disgust, C contempt, N neutral (the 8
primary classes), O other, X no agreement; ``EmoAct`` / ``EmoVal`` / ``EmoDom`` are the mean
arousal / valence / dominance ratings (1..7). ``Split_Set`` is Train, Development (older
releases: Validation), Test1, Test2 or Test3.

Default: the **official partitions** (Train -> train, Development/Validation -> dev, the chosen
``test_set`` -> test; the other test sets are left out) and the 8 primary classes; O and X are
left out (``keep_other`` keeps O as "other"; X never is a class). ``label_set = "4class"``:
neutral, happy, sad, angry. ``target = "arousal" | "valence" | "dominance"`` makes it a
regression task on EmoAct / EmoVal / EmoDom (every row with a rating, O and X included), each
value as a constant 40 ms trace over the segment. The speaker is ``SpkrID``; where it is
"Unknown" the podcast stands in for it (``unknown-podcast0005`` for ``MSP-PODCAST_0005_*``).

A label row whose audio is missing, or whose values do not parse, is a bad entry; audio files
without a label row (segments of unreleased test labels) are not used and counted in the notes.
"""
from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import ClassVar, Literal

from ser_bench.errors import PluginError
from ser_bench.interfaces import Dataset, Utterance

from .corpus_utils import BadEntries, CorpusConfig, check_classes, probe_audio, read_text, require_root, utterance_trace

CODES: dict[str, str] = {
    "A": "angry", "S": "sad", "H": "happy", "U": "surprise", "F": "fear", "D": "disgust", "C": "contempt",
    "N": "neutral", "O": "other", "X": "no_agreement",
}
EIGHT = ["angry", "sad", "happy", "surprise", "fear", "disgust", "contempt", "neutral"]
FOUR = ["neutral", "happy", "sad", "angry"]
LABEL_FILES = ("labels_consensus.csv", "labels_concensus.csv")
AUDIO_DIRS = ("Audios", "Audio")
SPLITS = {"train": "train", "development": "dev", "validation": "dev"}
TEST_SETS = ("Test1", "Test2", "Test3")
COLUMNS = ("FileName", "EmoClass", "EmoAct", "EmoVal", "EmoDom", "SpkrID", "Split_Set")
TARGET_COLUMN = {"arousal": "EmoAct", "valence": "EmoVal", "dominance": "EmoDom"}
PODCAST_RE = re.compile(r"^MSP-PODCAST_(\d+)_")
LAYOUT = "ROOT/Labels/labels_consensus.csv (or labels_concensus.csv) and ROOT/Audios/*.wav (or Audio/)"


class MspPodcast(Dataset):
    """MSP-Podcast: natural podcast speech; 8 primary classes, official partitions."""

    name: ClassVar[str] = "msp-podcast"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = (
        "MSP-Podcast (Labels/labels_consensus.csv, Audios/); 8 or 4 classes, official "
        "Train/Development/Test1; arousal/valence/dominance regression as options"
    )
    has_partitions: ClassVar[bool] = True

    class Config(CorpusConfig):
        """Options (besides root, on_bad_entry, check_audio and emobox).

        Attributes:
            label_set: "8class": the 8 primary categories (A S H U F D C N); "4class": neutral,
                happy, sad, angry.
            classes: optional subset of the label set's classes.
            keep_other: also keep EmoClass O as the class "other" (8class only).
            test_set: the official test set used as test: "Test1" (default), "Test2" or "Test3";
                rows of the other test sets are left out.
            target: "emotion" (classification) or "arousal" / "valence" / "dominance":
                regression on EmoAct / EmoVal / EmoDom (1..7) as a constant 40 ms trace.
        """

        label_set: Literal["8class", "4class"] = "8class"
        classes: list[str] | None = None
        keep_other: bool = False
        test_set: Literal["Test1", "Test2", "Test3"] = "Test1"
        target: Literal["emotion", "arousal", "valence", "dominance"] = "emotion"

    def __init__(self, **options) -> None:
        super().__init__(**options)
        if self.config.target != "emotion":
            self.task = "regression"

    def label_classes(self) -> list[str]:
        cfg = self.config
        known = list(FOUR if cfg.label_set == "4class" else EIGHT)
        if cfg.keep_other and cfg.label_set == "8class":
            known.append("other")
        return check_classes(cfg.classes, known, self.name)

    def locate(self, root: Path) -> tuple[Path, Path]:
        labels = next((root / "Labels" / n for n in LABEL_FILES if (root / "Labels" / n).is_file()), None)
        audio = next((root / d for d in AUDIO_DIRS if (root / d).is_dir()), None)
        if labels is None or audio is None:
            what = "Labels/labels_consensus.csv (or labels_concensus.csv)" if labels is None else "an Audios/ (or Audio/) folder"
            raise PluginError(f"dataset {self.name!r}: no {what} in {root}; expected {LAYOUT}. Point --data-root "
                              f"{self.name}=PATH at the MSP-Podcast folder holding Labels/ and Audios/.")
        return labels, audio

    def load_utterances(self) -> list[Utterance]:
        cfg = self.config
        regression = cfg.target != "emotion"
        classes = set(self.label_classes())
        root = require_root(cfg.root, self.name, LAYOUT)
        label_file, audio_dir = self.locate(root)
        reader = csv.DictReader(io.StringIO(read_text(label_file)))
        fields = [f.strip() for f in (reader.fieldnames or [])]
        absent = [c for c in COLUMNS if c not in fields]
        if absent:
            raise PluginError(f"dataset {self.name!r}: {label_file} lacks the column(s) {', '.join(absent)} "
                              f"(has {', '.join(fields) or 'none'}); expected {', '.join(COLUMNS)}")
        files = {p.name: p for p in audio_dir.iterdir() if p.suffix.lower() == ".wav" and not p.name.startswith("._")}
        bad = BadEntries(self.name, cfg.on_bad_entry)
        out: list[Utterance] = []
        listed: set[str] = set()
        for lineno, raw in enumerate(reader, 2):
            row = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
            fname = row["FileName"]
            if not fname:
                continue
            if not fname.lower().endswith(".wav"):
                fname += ".wav"
            listed.add(fname)
            where = f"{label_file.name} line {lineno}"
            split = row["Split_Set"]
            part = SPLITS.get(split.lower()) or ("test" if split == cfg.test_set else None)
            if part is None:
                if split not in TEST_SETS:
                    bad.add(where, f"unknown Split_Set {split!r} (known: Train, Development, Validation, {', '.join(TEST_SETS)})",
                            uid=fname[:-4])
                continue
            code = row["EmoClass"].upper()
            if code not in CODES:
                bad.add(where, f"unknown EmoClass {row['EmoClass']!r} (known: {''.join(CODES)})", uid=fname[:-4])
                continue
            if regression:
                try:
                    value = float(row[TARGET_COLUMN[cfg.target]])
                except ValueError:
                    bad.add(where, f"{TARGET_COLUMN[cfg.target]} is {row[TARGET_COLUMN[cfg.target]]!r}, not a number", uid=fname[:-4])
                    continue
            elif CODES[code] not in classes:
                continue  # O, X or a class outside the label set: a selection
            path = files.get(fname)
            if path is None:
                bad.add(where, f"no audio {audio_dir / fname}", uid=fname[:-4])
                continue
            probe = probe_audio(path) if (cfg.check_audio or regression) else None
            if isinstance(probe, str):
                bad.add(path, probe, uid=fname[:-4], path=path)
                continue
            spk = row["SpkrID"]
            if not spk or spk.lower() == "unknown":
                m = PODCAST_RE.match(fname)
                spk = f"unknown-podcast{m[1]}" if m else "unknown"
            y = utterance_trace(value, *probe) if regression else CODES[code]
            out.append(Utterance(id=fname[:-4], speaker=spk, label=y, partition=part, path=path))
        bad.finish(fix=f"Expected {LAYOUT}.")
        unlisted = len(set(files) - listed)
        self.notes = (f"{unlisted} audio file(s) in {audio_dir.name}/ have no row in {label_file.name} and are not used"
                      if unlisted else "")
        out.sort(key=lambda u: u.id)
        return out


def write_fixture(root: str | Path, *, old_release: bool = False) -> Path:
    """A small synthetic MSP-Podcast in the release layout (see tests/test_datasets_msp_podcast.py
    for its counts). ``old_release``: ``Audio/``, ``labels_concensus.csv`` and "Validation"."""
    from .corpus_utils import write_fixture_tone

    root = Path(root)
    audio = root / ("Audio" if old_release else "Audios")
    rows = ["FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set"]
    dev = "Validation" if old_release else "Development"
    plan = [("Train", "1", "Female"), ("Train", "2", "Male"), (dev, "3", "Female"), ("Test1", "4", "Male"),
            ("Test2", "Unknown", "Unknown")]
    seed = 0
    for p_i, (split, spk, gender) in enumerate(plan, 1):
        for s_i, code in enumerate("ASHUFDCNOX", 1):
            seed += 1
            name = f"MSP-PODCAST_{p_i:04d}_{s_i:04d}.wav"
            act, val, dom = 1 + seed % 7, 1 + seed * 3 % 7, 1 + seed * 5 % 7
            rows.append(f"{name},{code},{act:.1f},{val:.1f},{dom:.1f},{spk},{gender},{split}")
            write_fixture_tone(audio / name, seed)
    write_fixture_tone(audio / "MSP-PODCAST_0099_0001.wav", 99)  # unlabelled segment
    labels = root / "Labels" / ("labels_concensus.csv" if old_release else "labels_consensus.csv")
    labels.parent.mkdir(parents=True, exist_ok=True)
    labels.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root
