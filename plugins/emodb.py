"""EMO-DB (Berlin Database of Emotional Speech), read in its distributed layout.

Layout: ``ROOT/wav/SSTTTEV.wav`` (``ROOT`` may also be the ``wav`` folder itself):
``SS`` speaker (two digits), ``TTT`` text code (``a01``...``b10``), ``E`` emotion letter,
``V`` version letter. Emotion letters: W anger, L boredom, E disgust, A fear, F joy,
T sadness, N neutral.

The paper's 6-class setup leaves disgust out; that is the default of the ``classes`` option.
Utterances of classes outside ``classes`` are left out silently (that is a selection, not an
error); an unknown emotion letter or a file name that does not parse is a bad entry.
Nothing is downloaded: point ``root`` at a local copy.
"""
from __future__ import annotations

import re
from typing import ClassVar

from ser_bench.errors import PluginError
from ser_bench.hookspecs import hookimpl
from ser_bench.interfaces import Dataset, Utterance

from .corpus_utils import BadEntries, CorpusConfig, check_classes, probe_audio, require_root, uniform_duration_note

#: Emotion letter -> class name (the corpus documentation's German initials).
EMOTIONS: dict[str, str] = {
    "W": "anger",  # Wut
    "L": "boredom",  # Langeweile
    "E": "disgust",  # Ekel
    "A": "fear",  # Angst
    "F": "joy",  # Freude
    "T": "sadness",  # Trauer
    "N": "neutral",
}
#: The paper's 6-class setup: all but disgust.
PAPER_CLASSES = ["anger", "boredom", "fear", "joy", "sadness", "neutral"]
NAME_RE = re.compile(r"^(?P<speaker>\d{2})(?P<text>[a-z]\d{2})(?P<emotion>[A-Za-z])(?P<version>[a-z]?)$")
LAYOUT = "ROOT/wav/SSTTTEV.wav (e.g. wav/03a01Wa.wav)"


class EmoDB(Dataset):
    """EMO-DB: 10 German speakers, acted, 7 emotions (6 by default: no disgust)."""

    name: ClassVar[str] = "emodb"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = "EMO-DB (Berlin) from ROOT/wav/SSTTTEV.wav; 6 classes (no disgust) by default"

    class Config(CorpusConfig):
        #: Class subset; names from EMOTIONS. Default: the paper's 6 classes (no disgust).
        classes: list[str] = list(PAPER_CLASSES)

    def load_utterances(self) -> list[Utterance]:
        cfg = self.config
        classes = set(check_classes(cfg.classes, EMOTIONS.values(), self.name))
        root = require_root(cfg.root, self.name, LAYOUT)
        folder = root / "wav" if (root / "wav").is_dir() else root
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".wav")
        if not files:
            raise PluginError(
                f"dataset {self.name!r}: no .wav files in {folder}; expected {LAYOUT}. "
                f"Point --data-root {self.name}=PATH at the folder that contains wav/."
            )
        bad = BadEntries(self.name, cfg.on_bad_entry)
        out: list[Utterance] = []
        frames: list[tuple[int, int]] = []
        for path in files:
            m = NAME_RE.match(path.stem)
            if not m:
                bad.add(path, f"file name {path.name!r} does not match SSTTTEV.wav (e.g. 03a01Wa.wav)")
                continue
            letter = m["emotion"].upper()
            if letter not in EMOTIONS:
                bad.add(path, f"unknown emotion letter {m['emotion']!r} (known: {', '.join(EMOTIONS)})")
                continue
            label = EMOTIONS[letter]
            if label not in classes:
                continue
            if cfg.check_audio:
                probe = probe_audio(path)
                if isinstance(probe, str):
                    bad.add(path, probe)
                    continue
                frames.append(probe)
            out.append(Utterance(id=path.stem, speaker=m["speaker"], label=label, path=path))
        bad.finish()
        # A copy where every file has the same length was cut/padded: say so beside results.
        self.notes = uniform_duration_note(frames)
        return out


@hookimpl
def register_datasets(register) -> None:
    register("emodb", EmoDB)
