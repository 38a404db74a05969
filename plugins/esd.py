"""ESD, the Emotional Speech Dataset (Zhou et al., ICASSP 2021 / Speech Communication 2022).

Layout::

    ROOT/{0001..0020}/{Angry,Happy,Neutral,Sad,Surprise}/[train|evaluation|test/]<spk>_<NNNNNN>.wav
    ROOT/{0001..0020}/<spk>.txt        transcripts: <utterance>\\t<text>\\t<emotion>

Speakers 0001-0010 speak Mandarin, 0011-0020 English; each reads the same 350 sentences in each
of the 5 emotions (utterances 000001-000350 neutral, -000700 angry, -001050 happy, -001400 sad,
-001750 surprise): 17,500 utterances per language. Some copies split each emotion folder into
``train/``, ``evaluation/`` and ``test/`` (300 / 20 / 30, text-disjoint, not speaker-disjoint);
both layouts are read, and that split is not used: folds are leave-one-speaker-out (10 folds for
one language).

The class is the emotion folder's. The transcript's emotion column (English ``Angry``...,
Mandarin 中立 neutral, 生气 angry, 快乐 happy, 伤心 sad, 惊喜 surprise) is checked against it: a
disagreement is a bad entry, as is a wav in an emotion folder of another speaker. Transcripts
are read as UTF-8, UTF-16 (with BOM) or GB18030. Default: English only (``language``).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar, Literal

from ser_bench.errors import PluginError
from ser_bench.interfaces import Dataset, Utterance

from .corpus_utils import BadEntries, CorpusConfig, check_classes, probe_audio, read_text, require_root

FOLDERS = {"Angry": "angry", "Happy": "happy", "Neutral": "neutral", "Sad": "sad", "Surprise": "surprise"}
#: transcript emotion -> class (English and Mandarin spellings)
TRANSCRIPT_LABELS = {
    "angry": "angry", "happy": "happy", "neutral": "neutral", "sad": "sad", "surprise": "surprise",
    "生气": "angry", "快乐": "happy", "中立": "neutral", "伤心": "sad", "惊喜": "surprise",
}
MANDARIN = {f"{i:04d}" for i in range(1, 11)}
ENGLISH = {f"{i:04d}" for i in range(11, 21)}
SPEAKER_RE = re.compile(r"^\d{4}$")
NAME_RE = re.compile(r"^(?P<spk>\d{4})_(?P<num>\d{6})$")
LAYOUT = "ROOT/{0001..0020}/{Angry,Happy,Neutral,Sad,Surprise}/*.wav and ROOT/<spk>/<spk>.txt"


def read_transcripts(path: Path) -> dict[str, str]:
    """Utterance -> emotion column of an ESD transcript file (tab-separated; blank lines skipped)."""
    out = {}
    for line in read_text(path).splitlines():
        cells = [c.strip() for c in line.split("\t")]
        if len(cells) >= 3 and cells[0]:
            out[cells[0]] = cells[-1]
    return out


class Esd(Dataset):
    """ESD: 10 Mandarin + 10 English speakers, 5 emotions; English by default, LOSO."""

    name: ClassVar[str] = "esd"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = "ESD from ROOT/<spk>/<Emotion>/*.wav; 5 classes, English speakers 0011-0020 by default"

    class Config(CorpusConfig):
        """Options (besides root, on_bad_entry, check_audio and emobox).

        Attributes:
            language: "english" (speakers 0011-0020), "mandarin" (0001-0010) or "both".
            classes: class subset of angry, happy, neutral, sad, surprise (default all).
            check_transcripts: check each file's emotion against its speaker's transcript file
                (a missing transcript file or line is then a bad entry).
        """

        language: Literal["english", "mandarin", "both"] = "english"
        classes: list[str] | None = None
        check_transcripts: bool = True

    def load_utterances(self) -> list[Utterance]:
        cfg = self.config
        classes = set(check_classes(cfg.classes, FOLDERS.values(), self.name))
        wanted = {"english": ENGLISH, "mandarin": MANDARIN, "both": ENGLISH | MANDARIN}[cfg.language]
        root = require_root(cfg.root, self.name, LAYOUT)
        if not any(p.is_dir() and SPEAKER_RE.match(p.name) for p in root.iterdir()):
            inner = [p for p in root.iterdir() if p.is_dir() and any(SPEAKER_RE.match(q.name) for q in p.iterdir())]
            if len(inner) == 1:  # "Emotional Speech Dataset (ESD)/" inside the archive folder
                root = inner[0]
        spk_dirs = sorted(p for p in root.iterdir() if p.is_dir() and p.name in wanted)
        if not spk_dirs:
            raise PluginError(
                f"dataset {self.name!r}: no {cfg.language} speaker folders "
                f"({min(wanted)}..{max(wanted)}) in {root}; expected {LAYOUT}. Point --data-root {self.name}=PATH at "
                "the folder holding 0001 ... 0020 (or choose -o esd.language=...)."
            )
        bad = BadEntries(self.name, cfg.on_bad_entry)
        out: list[Utterance] = []
        for sdir in spk_dirs:
            spk = sdir.name
            transcripts: dict[str, str] = {}
            if cfg.check_transcripts:
                tfile = sdir / f"{spk}.txt"
                if tfile.is_file():
                    transcripts = read_transcripts(tfile)
                else:
                    bad.add(tfile, "transcript file missing (or pass -o esd.check_transcripts=false)")
            for folder, label in FOLDERS.items():
                edir = sdir / folder
                if label not in classes:
                    continue
                if not edir.is_dir():
                    bad.add(edir, f"emotion folder {folder}/ missing")
                    continue
                for path in sorted(p for p in edir.rglob("*.wav") if not p.name.startswith("._")):
                    m = NAME_RE.match(path.stem)
                    if not m or m["spk"] != spk:
                        bad.add(path, f"file name {path.name!r} is not {spk}_NNNNNN.wav", path=path)
                        continue
                    if cfg.check_transcripts and transcripts:
                        said = transcripts.get(path.stem)
                        if said is None:
                            bad.add(path, f"no line for {path.stem} in {spk}.txt", uid=path.stem, path=path)
                            continue
                        if TRANSCRIPT_LABELS.get(said.lower(), TRANSCRIPT_LABELS.get(said)) != label:
                            bad.add(path, f"{spk}.txt says {said!r}, the folder {folder}/", uid=path.stem, path=path)
                            continue
                    if cfg.check_audio:
                        probe = probe_audio(path)
                        if isinstance(probe, str):
                            bad.add(path, probe, uid=path.stem, path=path)
                            continue
                    out.append(Utterance(id=path.stem, speaker=spk, label=label, path=path))
        bad.finish(fix=f"Expected {LAYOUT}.")
        out.sort(key=lambda u: u.id)
        return out
