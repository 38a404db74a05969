"""``audioset``: AudioSet clips on disk as a noise source, speech and music removed.

Layout (as the AudioSet downloaders leave it)::

    ROOT/*.csv            segment lists: "# ..." comment lines, then rows
                          YTID, start_seconds, end_seconds, "label1,label2,..."
    ROOT/ontology.json    the AudioSet ontology (or the ``ontology`` option)
    ROOT/**/<clip>.wav    one file per segment (wav/flac/ogg/mp3), named ``YTID``, ``YYTID``,
                          ``YTID_START`` or ``YTID_START_END`` (START/END in seconds, any format)

Every clip labelled with "Human sounds" (``/m/0dgw9r``), "Music" (``/m/04rlf``), or any of their
descendants in the ontology is dropped (the ``exclude`` option), as in the seed paper, so the
noise never contains speech or music. Segments listed but not on disk are skipped (counted in
:attr:`AudioSetNoise.missing`); files on disk that no CSV lists are ignored. Clips are split
into train / test by a stable hash of the YTID (``test_fraction``, default 25 %).
"""
from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from ser_bench.audio import load_audio
from ser_bench.errors import ConfigError
from ser_bench.hookspecs import hookimpl
from ser_bench.interfaces import NoiseClip, NoiseSource, PluginConfig, file_fingerprint, split_part

log = logging.getLogger("ser_bench.noise")

HUMAN_SOUNDS = "/m/0dgw9r"
MUSIC = "/m/04rlf"
AUDIO_EXTS = (".wav", ".flac", ".ogg", ".mp3")


def load_ontology(path: Path) -> dict[str, dict]:
    """id -> entry of an AudioSet ``ontology.json``."""
    try:
        entries = json.loads(Path(path).read_text(encoding="utf-8"))
        return {e["id"]: e for e in entries}
    except FileNotFoundError:
        raise ConfigError(f"AudioSet ontology {path} not found; set --option audioset.ontology=PATH "
                          "(ontology.json from the AudioSet release)") from None
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not an AudioSet ontology.json ({exc})") from None


def descendants(ontology: dict[str, dict], roots) -> set[str]:
    """``roots`` and every class below them (``child_ids``, transitively; cycles tolerated)."""
    out: set[str] = set()
    stack = list(roots)
    while stack:
        i = stack.pop()
        if i in out:
            continue
        out.add(i)
        stack.extend(ontology.get(i, {}).get("child_ids", []))
    return out


def read_segments(path: Path) -> list[tuple[str, float, float, list[str]]]:
    """Rows ``(ytid, start, end, labels)`` of an AudioSet segment CSV."""
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        lines = (ln for ln in f if ln.strip() and not ln.lstrip().startswith("#"))
        for rec in csv.reader(lines, skipinitialspace=True):
            if len(rec) < 4:
                raise ConfigError(f"{path}: row {rec!r} is not 'YTID, start_seconds, end_seconds, positive_labels'")
            try:
                start, end = float(rec[1]), float(rec[2])
            except ValueError:
                raise ConfigError(f"{path}: row {rec!r}: start/end seconds are not numbers") from None
            labels = [lab.strip() for lab in ",".join(rec[3:]).split(",") if lab.strip()]
            rows.append((rec[0].strip(), start, end, labels))
    return rows


def _keys(ytid: str, start: float, end: float) -> list[str]:
    """File stems a segment may be stored under."""
    keys = [ytid, "Y" + ytid]
    for s in {f"{start:g}", f"{start:.3f}", f"{start:.1f}", str(int(start)), f"{start}"}:
        keys.append(f"{ytid}_{s}")
        for e in {f"{end:g}", f"{end:.3f}", f"{end:.1f}", str(int(end)), f"{end}"}:
            keys.append(f"{ytid}_{s}_{e}")
            keys.append(f"Y{ytid}_{s}_{e}")
    return keys


class AudioSetNoise(NoiseSource):
    """AudioSet segments on disk, minus human sounds and music (and their descendants)."""

    name: ClassVar[str] = "audioset"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = "AudioSet clips on disk (segment CSVs + ontology), human sounds and music removed"
    location_options: ClassVar[tuple[str, ...]] = ("root", "ontology")

    class Config(PluginConfig):
        root: Path | None = Field(None, description="folder with the segment CSVs and the clips")
        ontology: Path | None = Field(None, description="ontology.json (default: ROOT/ontology.json)")
        csvs: tuple[str, ...] | None = Field(None, description="segment CSV names (default: every *.csv in ROOT)")
        exclude: tuple[str, ...] = Field((HUMAN_SOUNDS, MUSIC), description="ontology ids dropped with their descendants")
        test_fraction: float = Field(0.25, gt=0, lt=1, description="share of clips in the test part (stable hash)")

    missing: int = 0
    dropped: int = 0

    def load_clips(self) -> list[NoiseClip]:
        root = self.config.root
        if root is None:
            raise ConfigError("noise source 'audioset' needs a root: --option audioset.root=PATH")
        root = Path(root).expanduser()
        if not root.is_dir():
            raise ConfigError(f"AudioSet root {root} does not exist; set --option audioset.root=PATH")
        onto = load_ontology(Path(self.config.ontology) if self.config.ontology else root / "ontology.json")
        unknown = [c for c in self.config.exclude if c not in onto]
        if unknown:
            raise ConfigError(f"audioset: excluded class(es) {unknown} are not in the ontology")
        banned = descendants(onto, self.config.exclude)
        csvs = [root / c for c in self.config.csvs] if self.config.csvs else sorted(root.glob("*.csv"))
        if not csvs:
            raise ConfigError(f"AudioSet root {root} holds no segment CSV (YTID, start_seconds, end_seconds, "
                              "positive_labels)")
        files: dict[str, Path] = {}
        for p in sorted(root.rglob("*")):
            if p.suffix.lower() in AUDIO_EXTS:
                files.setdefault(p.stem, p)
        clips, seen = [], set()
        self.missing = self.dropped = 0
        for c in csvs:
            if not c.exists():
                raise ConfigError(f"AudioSet segment CSV {c} not found")
            for ytid, start, end, labels in read_segments(c):
                if ytid in seen:
                    continue
                seen.add(ytid)
                if banned.intersection(labels):
                    self.dropped += 1
                    continue
                path = next((files[k] for k in _keys(ytid, start, end) if k in files), None)
                if path is None:
                    self.missing += 1
                    continue
                clips.append(NoiseClip(id=ytid, loader=lambda p=path: load_audio(p),
                                       fingerprint=file_fingerprint(path), path=path))
        if self.missing:
            log.info("audioset: %d listed segments are not on disk under %s", self.missing, root)
        if not clips:
            raise ConfigError(f"audioset: no usable clips under {root} ({self.dropped} dropped as speech/music, "
                              f"{self.missing} listed but missing)")
        return clips

    def part_of(self, clip: NoiseClip):
        return split_part(clip.id, self.config.test_fraction, salt="audioset")


@hookimpl
def register_noise_sources(register):
    register("audioset", AudioSetNoise)
