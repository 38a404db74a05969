"""ShEMO, the Sharif Emotional Speech Database (Persian; Mohamad Nezami et al., 2019).

Layout: ``ROOT/{female,male}/{F|M}NN{A|H|N|S|W|F}NN.wav``: the gender letter and speaker number,
the emotion letter (A anger, H happiness, N neutral, S sadness, W surprise, F fear) and the
utterance number. 3,000 utterances of 87 speakers (31 female, 56 male) from radio plays; the
classes are very unequal (fear: 38 utterances).

Folds: 87 speakers make leave-one-speaker-out slow, so by default the speakers are dealt into
``speaker_folds`` = 5 folds (sorted within each gender, round-robin): no speaker is in two folds.
``--cv loso`` gives the 87 folds; ``speaker_folds = 0`` leaves the folds to ``--cv``. A file name
that does not parse, or whose gender letter disagrees with its folder, is a bad entry.
"""
from __future__ import annotations

import re
from dataclasses import replace
from typing import ClassVar

from pydantic import Field

from ser_bench.errors import PluginError
from ser_bench.interfaces import Dataset, Utterance

from .corpus_utils import BadEntries, CorpusConfig, check_classes, probe_audio, require_root, speaker_folds

EMOTIONS = {"A": "anger", "H": "happiness", "N": "neutral", "S": "sadness", "W": "surprise", "F": "fear"}
FOLDERS = {"female": "F", "male": "M"}
NAME_RE = re.compile(r"^(?P<gender>[FM])(?P<spk>\d{2})(?P<emotion>[A-Z])(?P<num>\d{2})$")
LAYOUT = "ROOT/{female,male}/{F|M}NN{A|H|N|S|W|F}NN.wav"


class Shemo(Dataset):
    """ShEMO: 87 Persian speakers, 6 emotions; 5 folds of whole speakers by default."""

    name: ClassVar[str] = "shemo"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = "ShEMO from ROOT/{female,male}/*.wav; 6 classes, speakers in 5 folds"

    class Config(CorpusConfig):
        """Options (besides root, on_bad_entry, check_audio and emobox).

        Attributes:
            classes: class subset of anger, happiness, neutral, sadness, surprise, fear.
            speaker_folds: deal the speakers into this many folds (balanced by gender); 0: no
                folds of its own (``--cv`` decides).
        """

        classes: list[str] | None = None
        speaker_folds: int = Field(5, ge=0)

    def load_utterances(self) -> list[Utterance]:
        cfg = self.config
        classes = set(check_classes(cfg.classes, EMOTIONS.values(), self.name))
        root = require_root(cfg.root, self.name, LAYOUT)
        dirs = [root / d for d in FOLDERS if (root / d).is_dir()]
        if not dirs:
            raise PluginError(f"dataset {self.name!r}: no female/ or male/ folder in {root}; expected {LAYOUT}. "
                              f"Point --data-root {self.name}=PATH at the ShEMO folder.")
        bad = BadEntries(self.name, cfg.on_bad_entry)
        out: list[Utterance] = []
        for d in dirs:
            for path in sorted(p for p in d.iterdir() if p.suffix.lower() == ".wav" and not p.name.startswith("._")):
                m = NAME_RE.match(path.stem)
                if not m:
                    bad.add(path, f"file name {path.name!r} does not match {{F|M}}NN<emotion>NN.wav", path=path)
                    continue
                if m["gender"] != FOLDERS[d.name]:
                    bad.add(path, f"gender letter {m['gender']} but the file is in {d.name}/", uid=path.stem, path=path)
                    continue
                if m["emotion"] not in EMOTIONS:
                    bad.add(path, f"unknown emotion letter {m['emotion']!r} (known: {', '.join(EMOTIONS)})", path=path)
                    continue
                label = EMOTIONS[m["emotion"]]
                if label not in classes:
                    continue
                if cfg.check_audio:
                    probe = probe_audio(path)
                    if isinstance(probe, str):
                        bad.add(path, probe, uid=path.stem, path=path)
                        continue
                out.append(Utterance(id=path.stem, speaker=f"{m['gender']}{m['spk']}", label=label, path=path))
        bad.finish(fix=f"Expected {LAYOUT}.")
        if cfg.speaker_folds and out:
            fold_of = speaker_folds({u.speaker: u.speaker[0] for u in out}, cfg.speaker_folds)
            out = [replace(u, fold=fold_of[u.speaker]) for u in out]
        out.sort(key=lambda u: u.id)
        return out
