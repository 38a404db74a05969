"""CREMA-D (Crowd-sourced Emotional Multimodal Actors Dataset; Cao et al. 2014), audio files.

Layout: ``ROOT/AudioWAV/{ActorID}_{Sentence}_{Emotion}_{Level}.wav`` (``ROOT`` may also be the
``AudioWAV`` folder itself) with ActorID 1001..1091, Sentence one of the 12 three-letter codes
(IEO, TIE, IOM, IWW, TAI, MTI, IWL, ITH, DFA, ITS, TSI, WSI), Emotion ANG, DIS, FEA, HAP, NEU,
SAD and Level LO / MD / HI (only sentence IEO) or XX (unspecified). ``ROOT/VideoDemographics.csv``
(``ActorID, Age, Sex, Race, Ethnicity``) gives each actor's sex and age; it is optional, and used
to balance the speaker folds by sex.

The emotion is the one the actor was asked to portray (the file name), as in most SER work; the
crowd ratings (``processedResults/``) are not read. Full release: 7,442 clips of 91 actors.

Folds: by default the actors are dealt into ``speaker_folds`` = 5 folds (sorted by ID within
each sex, round-robin), so no actor is in two folds; ``--cv auto`` uses them, ``--cv loso``
gives 91 leave-one-actor-out folds, ``speaker_folds = 0`` leaves the folds to ``--cv``.
A file name that does not parse or an unknown code is a bad entry, as is an unreadable or empty
file.
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import replace
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from ser_bench.errors import PluginError
from ser_bench.interfaces import Dataset, Utterance

from .corpus_utils import BadEntries, CorpusConfig, check_classes, probe_audio, read_text, require_root, speaker_folds

EMOTIONS = {"ANG": "anger", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
SENTENCES = ("IEO", "TIE", "IOM", "IWW", "TAI", "MTI", "IWL", "ITH", "DFA", "ITS", "TSI", "WSI")
LEVELS = ("LO", "MD", "HI", "XX")
NAME_RE = re.compile(r"^(?P<actor>\d{4})_(?P<sentence>[A-Z]{3})_(?P<emotion>[A-Z]{3})_(?P<level>[A-Z]{2})$")
LAYOUT = "ROOT/AudioWAV/{ActorID}_{Sentence}_{ANG|DIS|FEA|HAP|NEU|SAD}_{LO|MD|HI|XX}.wav (+ ROOT/VideoDemographics.csv)"


def read_demographics(path: Path) -> dict[str, dict[str, str]]:
    """ActorID -> {"Sex", "Age", ...} from VideoDemographics.csv (empty if absent)."""
    if not path.is_file():
        return {}
    rows = csv.DictReader(io.StringIO(read_text(path)))
    return {r["ActorID"].strip(): {k.strip(): (v or "").strip() for k, v in r.items() if k}
            for r in rows if r.get("ActorID")}


class CremaD(Dataset):
    """CREMA-D: 91 actors, 12 sentences, 6 emotions; 5 folds of whole actors by default."""

    name: ClassVar[str] = "crema-d"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = "CREMA-D from ROOT/AudioWAV/*.wav; 6 classes, actors in 5 speaker folds (sex-balanced)"

    class Config(CorpusConfig):
        """Options (besides root, on_bad_entry, check_audio and emobox).

        Attributes:
            classes: class subset of anger, disgust, fear, happy, neutral, sad (default all).
            intensities: levels to keep among LO, MD, HI (sentence IEO only) and XX (unspecified).
            speaker_folds: deal the actors into this many folds (balanced by sex when
                VideoDemographics.csv is there); 0: no folds of its own (``--cv`` decides).
        """

        classes: list[str] | None = None
        intensities: list[Literal["LO", "MD", "HI", "XX"]] = list(LEVELS)
        speaker_folds: int = Field(5, ge=0)

    def load_utterances(self) -> list[Utterance]:
        cfg = self.config
        classes = set(check_classes(cfg.classes, EMOTIONS.values(), self.name))
        root = require_root(cfg.root, self.name, LAYOUT)
        folder = root / "AudioWAV" if (root / "AudioWAV").is_dir() else root
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".wav" and not p.name.startswith("._"))
        if not files:
            raise PluginError(f"dataset {self.name!r}: no .wav files in {folder}; expected {LAYOUT}. Point "
                              f"--data-root {self.name}=PATH at the folder that holds AudioWAV/.")
        demo = read_demographics(root / "VideoDemographics.csv")
        bad = BadEntries(self.name, cfg.on_bad_entry)
        out: list[Utterance] = []
        for path in files:
            m = NAME_RE.match(path.stem)
            if not m:
                bad.add(path, f"file name {path.name!r} does not match ActorID_Sentence_Emotion_Level.wav (e.g. 1001_DFA_ANG_XX.wav)")
                continue
            if m["emotion"] not in EMOTIONS or m["level"] not in LEVELS or m["sentence"] not in SENTENCES:
                bad.add(path, f"unknown code in {path.name!r} (emotions {', '.join(EMOTIONS)}; levels {', '.join(LEVELS)}; "
                              f"sentences {', '.join(SENTENCES)})")
                continue
            label = EMOTIONS[m["emotion"]]
            if label not in classes or m["level"] not in cfg.intensities:
                continue
            if cfg.check_audio:
                probe = probe_audio(path)
                if isinstance(probe, str):
                    bad.add(path, probe, uid=path.stem, path=path)
                    continue
            out.append(Utterance(id=path.stem, speaker=m["actor"], label=label, path=path))
        bad.finish(fix=f"Expected {LAYOUT}.")
        if cfg.speaker_folds and out:
            sexes = {u.speaker: demo.get(u.speaker, {}).get("Sex", "") for u in out}
            fold_of = speaker_folds(sexes, cfg.speaker_folds)
            out = [replace(u, fold=fold_of[u.speaker]) for u in out]
        return out
