"""eNTERFACE'05 audio-visual emotion database, read in its distributed layout.

Layout: ``ROOT/subject N/<emotion>/sentence M/sN_<code>_M.avi`` with emotion folders anger,
disgust, fear, happiness, sadness, surprise and codes an, di, fe, ha, sa, su.

The audio is extracted from each AVI with ffmpeg (the binary shipped by the ``imageio-ffmpeg``
package: ``pip install 'ser-bench[enterface]'``; or an ``ffmpeg`` on PATH, or the ``ffmpeg``
option). Pre-extracted audio in the same layout (``.wav``/``.flac`` instead of ``.avi``) is read
directly and preferred over the AVI by default (``audio = "auto"``).

Quirks of the real release, all handled:

* subject 6 has no ``sentence M`` level: its files sit directly in the emotion folders;
* the files under ``subject 11`` are named ``s12_*``: the speaker is always taken from the
  ``subject N`` folder, never from the file name;
* one file is named ``s16_su_3avi`` (no dot before the extension);
* some file names start with ``s_3_`` (an underscore between ``s`` and the number).

The emotion is the folder's; a file whose code names another emotion is a bad entry, as is a
file name that does not parse, an unknown emotion folder, or an empty folder.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np

from ser_bench.errors import AudioError, PluginError
from ser_bench.hookspecs import hookimpl
from ser_bench.interfaces import Dataset, Utterance, file_fingerprint

from .corpus_utils import BadEntries, CorpusConfig, check_classes, probe_audio, require_root

#: Emotion folder -> (file-name code, class name).
EMOTIONS: dict[str, str] = {
    "anger": "an",
    "disgust": "di",
    "fear": "fe",
    "happiness": "ha",
    "sadness": "sa",
    "surprise": "su",
}
CODES = {code: emo for emo, code in EMOTIONS.items()}
SUBJECT_RE = re.compile(r"^subject\s*_?(\d+)$", re.IGNORECASE)
SENTENCE_RE = re.compile(r"^sentence\s*_?(\d+)$", re.IGNORECASE)
# s1_an_1.avi, s_3_an_1.avi, s16_su_3avi (no dot), pre-extracted s1_an_1.wav
FILE_RE = re.compile(
    r"^s_?(?P<subject>\d+)_(?P<code>[a-z]{2})_(?P<sentence>\d+)\.?(?P<ext>avi|wav|flac)$", re.IGNORECASE
)
MEDIA_TAIL = re.compile(r"(avi|wav|flac)$", re.IGNORECASE)
LAYOUT = "ROOT/subject N/<emotion>/sentence M/sN_<an|di|fe|ha|sa|su>_M.avi (or .wav)"
#: Part of the fingerprint of audio extracted from AVI: bump if the extraction changes.
EXTRACTOR = "ffmpeg-pcm_f32le+load_audio-v1"


def find_ffmpeg(explicit: str | None = None) -> str | None:
    """The ffmpeg to use: the option, then imageio-ffmpeg's bundled binary, then PATH."""
    if explicit:
        return explicit
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:  # not installed, or its binary missing for this platform
        return shutil.which("ffmpeg")


@dataclass(frozen=True)
class AviAudio:
    """Picklable loader: the audio track of a video file as mono float32 at 16 kHz."""

    path: str
    ffmpeg: str

    def __call__(self) -> np.ndarray:
        import tempfile

        from ser_bench.audio import load_audio

        # Decode to a float WAV at the native rate and channel count, then read it like any other
        # file: the same channel averaging and soxr resampling as every other corpus.
        with tempfile.TemporaryDirectory(prefix="ser-bench-avi-") as tmp:
            wav = Path(tmp) / "audio.wav"
            cmd = [self.ffmpeg, "-nostdin", "-v", "error", "-i", self.path, "-vn", "-c:a", "pcm_f32le", str(wav)]
            try:
                proc = subprocess.run(cmd, capture_output=True, check=False)
            except OSError as exc:
                raise AudioError(f"{self.path}: cannot run ffmpeg {self.ffmpeg!r} ({exc}); set enterface.ffmpeg=PATH") from None
            if proc.returncode != 0 or not wav.exists():
                msg = proc.stderr.decode(errors="replace").strip().splitlines()[-2:]
                raise AudioError(
                    f"{self.path}: ffmpeg could not extract the audio ({' | '.join(msg) or 'exit ' + str(proc.returncode)}); "
                    "the file is corrupt or has no audio track: replace it, or pre-extract a .wav beside it"
                )
            try:
                return load_audio(wav)
            except AudioError as exc:
                raise AudioError(f"{self.path}: the extracted audio is unusable ({exc}); replace the file") from None


def _fingerprint(path: Path) -> str:
    return f"{file_fingerprint(path)}:{EXTRACTOR}"


class Enterface(Dataset):
    """eNTERFACE'05: 6 emotions, English sentences by non-native speakers, audio from AVI."""

    name: ClassVar[str] = "enterface"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = "eNTERFACE'05 from ROOT/subject N/<emotion>/sentence M/*.avi (ffmpeg) or pre-extracted WAVs"
    location_options: ClassVar[tuple[str, ...]] = ("root", "ffmpeg")

    class Config(CorpusConfig):
        #: Class subset (default all six).
        classes: list[str] | None = None
        #: "auto": a pre-extracted .wav/.flac when there is one, else the .avi;
        #: "avi": only videos; "wav": only pre-extracted audio.
        audio: Literal["auto", "avi", "wav"] = "auto"
        #: Path of an ffmpeg executable (default: imageio-ffmpeg's, then PATH).
        ffmpeg: str | None = None

    def load_utterances(self) -> list[Utterance]:
        cfg = self.config
        classes = set(check_classes(cfg.classes, EMOTIONS, self.name))
        root = require_root(cfg.root, self.name, LAYOUT)
        subjects = sorted(
            ((int(m[1]), p) for p in root.iterdir() if p.is_dir() and (m := SUBJECT_RE.match(p.name))),
            key=lambda t: t[0],
        )
        if not subjects:
            raise PluginError(
                f"dataset {self.name!r}: no 'subject N' folders in {root}; expected {LAYOUT}. "
                f"Point --data-root {self.name}=PATH at the folder that holds 'subject 1' ... 'subject 44'."
            )
        bad = BadEntries(self.name, cfg.on_bad_entry)
        # (subject, emotion, sentence) -> {"avi": path, "wav": path}
        found: dict[tuple[int, str, int], dict[str, Path]] = {}
        for subject, sdir in subjects:
            emo_dirs = sorted(p for p in sdir.iterdir() if p.is_dir())
            if not emo_dirs:
                bad.add(sdir, "empty subject folder (no emotion folders)")
            for edir in emo_dirs:
                emotion = edir.name.strip().lower()
                if emotion not in EMOTIONS:
                    bad.add(edir, f"unknown emotion folder {edir.name!r} (expected one of {', '.join(EMOTIONS)})")
                    continue
                self._scan_emotion(subject, emotion, edir, found, bad)
        ffmpeg: str | None = None
        out: list[Utterance] = []
        for (subject, emotion, sentence), kinds in sorted(found.items()):
            if emotion not in classes:
                continue
            wav = kinds.get("wav")
            avi = kinds.get("avi")
            path = wav if (wav is not None and cfg.audio != "avi") else (avi if cfg.audio != "wav" else None)
            if path is None:
                continue  # only the other kind exists and the option excludes it
            uid = f"s{subject}_{EMOTIONS[emotion]}_{sentence}"
            if path is wav:
                if cfg.check_audio:
                    probe = probe_audio(path)
                    if isinstance(probe, str):
                        bad.add(path, probe)
                        continue
                out.append(Utterance(id=uid, speaker=str(subject), label=emotion, path=path))
                continue
            if ffmpeg is None:
                ffmpeg = find_ffmpeg(cfg.ffmpeg)
                if ffmpeg is None:
                    raise PluginError(
                        f"dataset {self.name!r}: {path} is a video and no ffmpeg was found to extract its audio. "
                        "Install one with pip install 'ser-bench[enterface]' (imageio-ffmpeg), set "
                        f"{self.name}.ffmpeg=PATH, or pre-extract WAVs in the same layout (s1_an_1.wav beside s1_an_1.avi)."
                    )
            out.append(
                Utterance(
                    id=uid, speaker=str(subject), label=emotion, path=path,
                    loader=AviAudio(str(path), ffmpeg), fingerprint=_fingerprint(path),
                )  # fmt: skip
            )
        bad.finish()
        return out

    def _scan_emotion(
        self,
        subject: int,
        emotion: str,
        edir: Path,
        found: dict[tuple[int, str, int], dict[str, Path]],
        bad: BadEntries,
    ) -> None:
        """Collect the media files of one emotion folder, with or without the sentence level."""
        entries = sorted(edir.iterdir())
        if not entries:
            bad.add(edir, "empty emotion folder")
            return
        for entry in entries:
            if entry.is_dir():
                m = SENTENCE_RE.match(entry.name)
                if not m:
                    bad.add(entry, f"unexpected folder {entry.name!r} (expected 'sentence M')")
                    continue
                files = sorted(p for p in entry.iterdir() if p.is_file() and MEDIA_TAIL.search(p.name))
                if not files:
                    bad.add(entry, "empty sentence folder (no .avi/.wav files)")
                for f in files:
                    self._add_file(subject, emotion, int(m[1]), f, found, bad)
            elif entry.is_file() and MEDIA_TAIL.search(entry.name):
                # subject 6 of the real release: no sentence folders
                self._add_file(subject, emotion, None, entry, found, bad)

    @staticmethod
    def _add_file(
        subject: int,
        emotion: str,
        folder_sentence: int | None,
        path: Path,
        found: dict[tuple[int, str, int], dict[str, Path]],
        bad: BadEntries,
    ) -> None:
        m = FILE_RE.match(path.name)
        if not m:
            bad.add(path, f"file name {path.name!r} does not match sN_<code>_M.avi")
            return
        code = m["code"].lower()
        if CODES.get(code) != emotion:
            bad.add(path, f"code {code!r} in the name does not match its folder {emotion!r}")
            return
        sentence = int(m["sentence"])
        if folder_sentence is not None and folder_sentence != sentence:
            bad.add(path, f"sentence {sentence} in the name but the file is in 'sentence {folder_sentence}'")
            return
        kind = "avi" if m["ext"].lower() == "avi" else "wav"
        slot = found.setdefault((subject, emotion, sentence), {})
        if kind in slot:
            bad.add(path, f"duplicate of {slot[kind]} (same subject, emotion and sentence)")
            return
        slot[kind] = path


@hookimpl
def register_datasets(register) -> None:
    register("enterface", Enterface)
