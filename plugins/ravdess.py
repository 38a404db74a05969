"""RAVDESS (Ryerson Audio-Visual Database of Emotional Speech and Song), audio files.

Layout: ``ROOT/Actor_NN/MM-VC-EE-II-SS-RR-AA.(wav|flac)`` with modality ``MM`` (01 full AV,
02 video only, 03 audio only), vocal channel ``VC`` (01 speech, 02 song), emotion ``EE``
(01 neutral, 02 calm, 03 happy, 04 sad, 05 angry, 06 fearful, 07 disgust, 08 surprised),
intensity ``II`` (01 normal, 02 strong), statement ``SS``, repetition ``RR`` and actor ``AA``
(the speaker; odd = male).

In this project RAVDESS stands in for eNTERFACE'05 (not available), so the default label set
maps its emotions onto eNTERFACE's six classes (anger, disgust, fear, happiness, sadness,
surprise) and leaves neutral and calm out. ``label_set = "full"`` keeps all eight RAVDESS
emotions under their own names. Video files (.mp4) are ignored.
"""
from __future__ import annotations

import re
from typing import ClassVar, Literal

from ser_bench.errors import PluginError
from ser_bench.hookspecs import hookimpl
from ser_bench.interfaces import Dataset, Utterance

from .corpus_utils import BadEntries, CorpusConfig, check_classes, probe_audio, require_root

#: Emotion code -> RAVDESS's own class name.
EMOTIONS: dict[str, str] = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgust",
    "08": "surprised",
}
#: RAVDESS name -> eNTERFACE'05 class (neutral and calm have no counterpart there).
TO_ENTERFACE: dict[str, str] = {
    "angry": "anger",
    "disgust": "disgust",
    "fearful": "fear",
    "happy": "happiness",
    "sad": "sadness",
    "surprised": "surprise",
}
NAME_RE = re.compile(
    r"^(?P<modality>\d{2})-(?P<channel>\d{2})-(?P<emotion>\d{2})-(?P<intensity>\d{2})-"
    r"(?P<statement>\d{2})-(?P<repetition>\d{2})-(?P<actor>\d{2})$"
)
ACTOR_RE = re.compile(r"^Actor_(\d{2})$")
AUDIO_SUFFIXES = (".wav", ".flac")
LAYOUT = "ROOT/Actor_NN/MM-VC-EE-II-SS-RR-AA.wav (or .flac), e.g. Actor_01/03-01-05-01-01-01-01.wav"


class Ravdess(Dataset):
    """RAVDESS audio: 24 actors; eNTERFACE-style 6 classes by default, or all 8 emotions."""

    name: ClassVar[str] = "ravdess"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = (
        "RAVDESS from ROOT/Actor_NN/MM-VC-EE-II-SS-RR-AA.wav|flac; eNTERFACE 6-class mapping by default"
    )

    class Config(CorpusConfig):
        #: "enterface6": anger/disgust/fear/happiness/sadness/surprise (neutral, calm dropped);
        #: "full": the 8 RAVDESS emotions under their own names.
        label_set: Literal["enterface6", "full"] = "enterface6"
        #: Optional subset of the chosen label set's class names.
        classes: list[str] | None = None
        #: Which vocal channels to use: speech (01), song (02) or both.
        vocal_channel: Literal["speech", "song", "both"] = "speech"
        #: Emotional intensities to keep (1 normal, 2 strong; neutral has only 1).
        intensities: list[Literal[1, 2]] = [1, 2]

    def label_of(self, code: str) -> str | None:
        """The class name for an emotion code under the chosen label set (None: not used)."""
        raw = EMOTIONS[code]
        return TO_ENTERFACE.get(raw) if self.config.label_set == "enterface6" else raw

    def load_utterances(self) -> list[Utterance]:
        cfg = self.config
        all_classes = list(TO_ENTERFACE.values()) if cfg.label_set == "enterface6" else list(EMOTIONS.values())
        classes = set(check_classes(cfg.classes, all_classes, self.name))
        channels = {"speech": {"01"}, "song": {"02"}, "both": {"01", "02"}}[cfg.vocal_channel]
        intensities = {f"{i:02d}" for i in cfg.intensities}
        root = require_root(cfg.root, self.name, LAYOUT)
        actor_dirs = sorted(p for p in root.iterdir() if p.is_dir() and ACTOR_RE.match(p.name))
        if not actor_dirs:
            raise PluginError(
                f"dataset {self.name!r}: no Actor_NN folders in {root}; expected {LAYOUT}. "
                f"Point --data-root {self.name}=PATH at the folder that holds Actor_01 ... Actor_24."
            )
        bad = BadEntries(self.name, cfg.on_bad_entry)
        out: list[Utterance] = []
        seen: dict[str, object] = {}
        for actor_dir in actor_dirs:
            files = sorted(p for p in actor_dir.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
            if not files:
                bad.add(actor_dir, "folder holds no .wav/.flac files")
                continue
            folder_actor = ACTOR_RE.match(actor_dir.name)[1]  # type: ignore[index]
            for path in files:
                m = NAME_RE.match(path.stem)
                if not m:
                    bad.add(path, f"file name {path.name!r} does not match MM-VC-EE-II-SS-RR-AA")
                    continue
                if m["emotion"] not in EMOTIONS:
                    bad.add(path, f"unknown emotion code {m['emotion']!r} (known: 01..08)")
                    continue
                if m["actor"] != folder_actor:
                    bad.add(path, f"actor {m['actor']} in the name but the file is in {actor_dir.name}")
                    continue
                if m["modality"] == "02":  # video only: no audio to use
                    continue
                label = self.label_of(m["emotion"])
                if (
                    label is None
                    or label not in classes
                    or m["channel"] not in channels
                    or m["intensity"] not in intensities
                ):
                    continue
                if path.stem in seen:
                    bad.add(path, f"same recording as {seen[path.stem]} (keep one of the two formats)")
                    continue
                if cfg.check_audio:
                    probe = probe_audio(path)
                    if isinstance(probe, str):
                        bad.add(path, probe)
                        continue
                seen[path.stem] = path
                out.append(Utterance(id=path.stem, speaker=m["actor"], label=label, path=path))
        bad.finish()
        return out


@hookimpl
def register_datasets(register) -> None:
    register("ravdess", Ravdess)
