"""SAVEE, the Surrey Audio-Visual Expressed Emotion database (Haq & Jackson, 2009), audio.

Layouts (both read): the release's ``ROOT/AudioData/{DC,JE,JK,KL}/<code>NN.wav``, and the flat
copies in circulation, ``ROOT/**/{DC|JE|JK|KL}_<code>NN.wav``. Codes: a anger, d disgust, f fear,
h happiness, n neutral, sa sadness, su surprise. Four male speakers, each 15 sentences per
emotion and 30 neutral: 480 utterances at 44.1 kHz.

Folds: leave-one-speaker-out (4 folds). A file name that does not parse, an unknown code or the
same recording twice is a bad entry. Non-wav files (the release's ``Info.txt``...) are ignored.
"""
from __future__ import annotations

import re
from typing import ClassVar

from ser_bench.errors import PluginError
from ser_bench.interfaces import Dataset, Utterance

from .corpus_utils import BadEntries, CorpusConfig, check_classes, probe_audio, require_root

EMOTIONS = {"a": "anger", "d": "disgust", "f": "fear", "h": "happiness", "n": "neutral", "sa": "sadness",
            "su": "surprise"}
SPEAKERS = ("DC", "JE", "JK", "KL")
CODE_RE = re.compile(r"^(?P<code>sa|su|[a-z])(?P<num>\d{2})$")
FLAT_RE = re.compile(r"^(?P<speaker>DC|JE|JK|KL)_(?P<rest>[a-z]+\d{2})$")
LAYOUT = "ROOT/AudioData/{DC,JE,JK,KL}/<a|d|f|h|n|sa|su>NN.wav, or flat ROOT/{DC|JE|JK|KL}_<code>NN.wav"


class Savee(Dataset):
    """SAVEE: 4 male speakers, 7 emotions, 480 utterances; leave-one-speaker-out."""

    name: ClassVar[str] = "savee"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = "SAVEE from ROOT/AudioData/<spk>/<code>NN.wav or flat <spk>_<code>NN.wav; 7 classes"

    class Config(CorpusConfig):
        """Options (besides root, on_bad_entry, check_audio and emobox).

        Attributes:
            classes: class subset of anger, disgust, fear, happiness, neutral, sadness, surprise.
        """

        classes: list[str] | None = None

    def load_utterances(self) -> list[Utterance]:
        cfg = self.config
        classes = set(check_classes(cfg.classes, EMOTIONS.values(), self.name))
        root = require_root(cfg.root, self.name, LAYOUT)
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() == ".wav" and p.is_file() and not p.name.startswith("._"))
        if not files:
            raise PluginError(f"dataset {self.name!r}: no .wav files below {root}; expected {LAYOUT}. Point "
                              f"--data-root {self.name}=PATH at the SAVEE folder (the one holding AudioData/).")
        bad = BadEntries(self.name, cfg.on_bad_entry)
        out: list[Utterance] = []
        seen: dict[str, object] = {}
        for path in files:
            flat = FLAT_RE.match(path.stem)
            if flat:
                speaker, rest = flat["speaker"], flat["rest"]
            elif path.parent.name in SPEAKERS:
                speaker, rest = path.parent.name, path.stem
            else:
                bad.add(path, f"neither <spk>_<code>NN.wav nor AudioData/<spk>/<code>NN.wav (speakers {', '.join(SPEAKERS)})", path=path)
                continue
            m = CODE_RE.match(rest)
            if not m or m["code"] not in EMOTIONS:
                bad.add(path, f"unknown emotion code in {path.name!r} (known: {', '.join(EMOTIONS)})", path=path)
                continue
            uid = f"{speaker}_{rest}"
            if uid in seen:
                bad.add(path, f"same recording as {seen[uid]} (keep one copy)", uid=uid, path=path)
                continue
            seen[uid] = path
            label = EMOTIONS[m["code"]]
            if label not in classes:
                continue
            if cfg.check_audio:
                probe = probe_audio(path)
                if isinstance(probe, str):
                    bad.add(path, probe, uid=uid, path=path)
                    continue
            out.append(Utterance(id=uid, speaker=speaker, label=label, path=path))
        bad.finish(fix=f"Expected {LAYOUT}.")
        out.sort(key=lambda u: u.id)
        return out
