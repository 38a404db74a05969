"""Clean-speech corpora for training enhancers: ``librispeech`` and ``commonvoice``.

They are :class:`~ser_bench.interfaces.Dataset` plugins whose every utterance has the label
``"speech"`` (there are no emotions): enhancer training reads ``utterance.speaker`` to split
speakers into train / valid / test, and loads the audio.

* LibriSpeech: ``ROOT/**/SPEAKER/CHAPTER/SPEAKER-CHAPTER-NNNN.flac`` (any subset folder, e.g.
  ``ROOT/LibriSpeech/train-clean-100/19/198/19-198-0001.flac``). Speaker = the SPEAKER folder,
  partition = the subset folder name (``train-clean-100``...) when there is one.
* Common Voice: ``ROOT/clips/*.mp3`` listed by ``ROOT/validated.tsv`` (columns ``client_id``,
  ``path``, ...); speaker = ``client_id``. The first release (2017) has no ``validated.tsv``
  but ``cv-valid-{train,dev,test}.csv`` (columns ``filename``, ``text``, ...) with the files under
  ``ROOT/<filename>``; it has no speaker ids, so each clip is its own speaker there (splits by
  speaker are then splits by clip) and the partition comes from the CSV name.
"""
from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from ser_bench.errors import ConfigError
from ser_bench.hookspecs import hookimpl
from ser_bench.interfaces import Dataset, Utterance

from .corpus_utils import BadEntries, CorpusConfig, probe_audio, require_root

SPEECH = "speech"
LIBRI_RE = re.compile(r"^(\d+)-(\d+)-(\d+)$")
LIBRI_LAYOUT = "ROOT/.../SPEAKER/CHAPTER/SPEAKER-CHAPTER-NNNN.flac (e.g. LibriSpeech/train-clean-5/19/198/19-198-0001.flac)"
CV_LAYOUT = "ROOT/validated.tsv + ROOT/clips/*.mp3 (or the first release: ROOT/cv-valid-train.csv + ROOT/cv-valid-train/*.mp3)"


class LibriSpeech(Dataset):
    """LibriSpeech (or mini-LibriSpeech) read English speech, label "speech"."""

    name: ClassVar[str] = "librispeech"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = "LibriSpeech clean speech (SPEAKER/CHAPTER/*.flac) for training enhancers"
    has_partitions: ClassVar[bool] = False

    class Config(CorpusConfig):
        subsets: tuple[str, ...] | None = Field(None, description="subset folders to keep, e.g. ['train-clean-100']")
        check_audio: bool = False  # thousands of files: headers are checked when loaded

    def load_utterances(self) -> list[Utterance]:
        root = require_root(self.config.root, self.name, LIBRI_LAYOUT)
        bad = BadEntries(self.name, self.config.on_bad_entry)
        utts = []
        for p in sorted(root.rglob("*.flac")):
            m = LIBRI_RE.match(p.stem)
            speaker, chapter = p.parent.parent.name, p.parent.name
            if not m or m.group(1) != speaker or m.group(2) != chapter:
                bad.add(p.relative_to(root), f"not in the layout {LIBRI_LAYOUT}")
                continue
            subset = p.parent.parent.parent.name if p.parent.parent.parent != root else None
            if self.config.subsets is not None and subset not in self.config.subsets:
                continue
            if self.config.check_audio and isinstance(probe_audio(p), str):
                bad.add(p.relative_to(root), str(probe_audio(p)))
                continue
            utts.append(Utterance(id=p.stem, speaker=speaker, label=SPEECH, partition=subset, path=p))
        bad.finish()
        if not utts:
            raise ConfigError(f"dataset 'librispeech': no .flac files under {root}; expected {LIBRI_LAYOUT}")
        return utts


class CommonVoice(Dataset):
    """Mozilla Common Voice validated clips, label "speech", speaker = client_id."""

    name: ClassVar[str] = "commonvoice"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = "Common Voice clips (validated.tsv + clips/*.mp3, or cv-valid-*.csv) for training enhancers"

    class Config(CorpusConfig):
        check_audio: bool = False
        min_up_votes: int = Field(0, ge=0, description="keep clips with at least this many up-votes")

    def load_utterances(self) -> list[Utterance]:
        root = require_root(self.config.root, self.name, CV_LAYOUT)
        bad = BadEntries(self.name, self.config.on_bad_entry)
        utts: list[Utterance] = []
        tsv = root / "validated.tsv"
        if tsv.exists():
            with open(tsv, newline="", encoding="utf-8") as f:
                for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
                    if "path" not in row or "client_id" not in row:
                        raise ConfigError(f"{tsv}: needs the columns 'client_id' and 'path'")
                    self._add(utts, bad, root / "clips" / row["path"], row["client_id"], None, row, root)
        else:
            csvs = sorted(root.glob("cv-valid-*.csv"))
            if not csvs:
                raise ConfigError(f"dataset 'commonvoice': neither validated.tsv nor cv-valid-*.csv in {root}; "
                                  f"expected {CV_LAYOUT}")
            for c in csvs:
                part = c.stem.removeprefix("cv-valid-")
                with open(c, newline="", encoding="utf-8") as f:
                    for row in csv.DictReader(f):
                        if "filename" not in row:
                            raise ConfigError(f"{c}: needs the column 'filename'")
                        fn = row["filename"]
                        # no speaker ids in the first release: each clip is its own speaker
                        self._add(utts, bad, root / fn, f"cv1:{fn}", part, row, root)
        bad.finish()
        if not utts:
            raise ConfigError(f"dataset 'commonvoice': no clips listed under {root}")
        return utts

    def _add(self, utts, bad, path: Path, speaker: str, part, row: dict, root: Path) -> None:
        try:
            votes = int(row.get("up_votes") or 0)
        except ValueError:
            votes = 0
        if votes < self.config.min_up_votes:
            return
        rel = path.relative_to(root)
        if not path.exists():
            bad.add(rel, "listed but missing on disk")
            return
        if self.config.check_audio:
            probe = probe_audio(path)
            if isinstance(probe, str):
                bad.add(rel, probe)
                return
        uid = str(rel.with_suffix("")).replace("\\", "/")
        utts.append(Utterance(id=uid, speaker=speaker, label=SPEECH, partition=part, path=path))


@hookimpl
def register_datasets(register):
    register("librispeech", LibriSpeech)
    register("commonvoice", CommonVoice)
