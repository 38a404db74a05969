"""TESS, the Toronto Emotional Speech Set (Dupuis & Pichora-Fuller, 2010).

Layout: ``ROOT/**/{OAF|YAF}_{word}_{emotion}.wav`` with emotion angry, disgust, fear, happy,
neutral, ps (pleasant surprise) or sad; the copies in circulation put them in one folder or in
one folder per speaker and emotion (``OAF_angry/``, ``YAF_pleasant_surprised/``...), in any
letter case: every wav below ``ROOT`` is read. Two speakers (OAF, aged 64; YAF, aged 26) each say
"Say the word ___" with 200 target words in 7 emotions: 2,800 files, recorded at 24,414 Hz (the
harness resamples to 16 kHz).

Folds: leave-one-speaker-out (2 folds: train on one speaker, test on the other). A file name that
does not parse, an unknown emotion or the same file name twice is a bad entry.
"""
from __future__ import annotations

import re
from typing import ClassVar

from ser_bench.errors import PluginError
from ser_bench.interfaces import Dataset, Utterance

from .corpus_utils import BadEntries, CorpusConfig, check_classes, probe_audio, require_root

EMOTIONS = {"angry": "angry", "disgust": "disgust", "fear": "fear", "happy": "happy", "neutral": "neutral",
            "ps": "surprise", "sad": "sad"}
NAME_RE = re.compile(r"^(?P<speaker>OAF|YAF)_(?P<word>.+)_(?P<emotion>[A-Za-z]+)$", re.IGNORECASE)
LAYOUT = "ROOT/**/{OAF|YAF}_{word}_{angry|disgust|fear|happy|neutral|ps|sad}.wav"


class Tess(Dataset):
    """TESS: 2 speakers x 200 words x 7 emotions; leave-one-speaker-out."""

    name: ClassVar[str] = "tess"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = "TESS from ROOT/**/{OAF|YAF}_word_emotion.wav (24,414 Hz); 7 classes, 2 speakers"

    class Config(CorpusConfig):
        """Options (besides root, on_bad_entry, check_audio and emobox).

        Attributes:
            classes: class subset of angry, disgust, fear, happy, neutral, surprise (file code
                "ps", pleasant surprise), sad (default all).
        """

        classes: list[str] | None = None

    def load_utterances(self) -> list[Utterance]:
        cfg = self.config
        classes = set(check_classes(cfg.classes, EMOTIONS.values(), self.name))
        root = require_root(cfg.root, self.name, LAYOUT)
        files = sorted((p for p in root.rglob("*") if p.suffix.lower() == ".wav" and p.is_file()
                        and not p.name.startswith("._")), key=lambda p: (p.name.lower(), str(p)))
        if not files:
            raise PluginError(f"dataset {self.name!r}: no .wav files below {root}; expected {LAYOUT}. Point "
                              f"--data-root {self.name}=PATH at the TESS folder.")
        bad = BadEntries(self.name, cfg.on_bad_entry)
        out: list[Utterance] = []
        seen: dict[str, object] = {}
        for path in files:
            m = NAME_RE.match(path.stem)
            if not m:
                bad.add(path, f"file name {path.name!r} does not match OAF|YAF_word_emotion.wav", path=path)
                continue
            emo = m["emotion"].lower()
            if emo not in EMOTIONS:
                bad.add(path, f"unknown emotion {m['emotion']!r} (known: {', '.join(EMOTIONS)})", path=path)
                continue
            uid = f"{m['speaker'].upper()}_{m['word'].lower()}_{emo}"
            if uid in seen:
                bad.add(path, f"same recording as {seen[uid]} (keep one copy)", uid=uid, path=path)
                continue
            seen[uid] = path
            if EMOTIONS[emo] not in classes:
                continue
            if cfg.check_audio:
                probe = probe_audio(path)
                if isinstance(probe, str):
                    bad.add(path, probe, uid=uid, path=path)
                    continue
            out.append(Utterance(id=uid, speaker=m["speaker"].upper(), label=EMOTIONS[emo], path=path))
        bad.finish(fix=f"Expected {LAYOUT}.")
        return out
