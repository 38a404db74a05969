"""IEMOCAP (USC, Busso et al. 2008), read in its release layout (``IEMOCAP_full_release``).

Layout::

    ROOT/Session{1..5}/sentences/wav/<dialog>/<utterance>.wav
    ROOT/Session{1..5}/dialog/EmoEvaluation/<dialog>.txt

Each EmoEvaluation file holds one line per utterance, ``[start - end]\\t<utterance>\\t<label>\\t[V, A, D]``
(the consensus category and the mean valence / activation / dominance, 1..5), each followed by
the single annotators' lines (``C-E1: ...``, ``A-E2: ...``), which are skipped. Dialogs are named
``Ses01F_impro01`` / ``Ses01M_script01_1``...; the speaker of an utterance is its session plus the
letter starting its last name part (``Ses01F_impro01_M003`` -> ``Ses01M``), ten speakers in all.
AppleDouble ``._*`` files some copies carry are ignored.

Default: the 4-class set most papers use, neutral / happy / angry / sad with **excited merged
into happy** (``merge_exc``): 5,531 utterances of the full release (neu 1,708, hap 595 + exc
1,041 = 1,636, ang 1,103, sad 1,084), and **leave-one-session-out** folds: each utterance's
``fold`` is its session (``Session1``...``Session5``), so ``--cv auto`` gives 5 folds, each
testing one session's two speakers; ``--cv loso`` gives 10 leave-one-speaker-out folds instead.

Options: ``label_set = "all"`` keeps every consensus category (neu, hap, exc, ang, sad, fru, sur,
fea, dis, oth; ``xxx``, no majority, is never a class); ``dialogs`` = improvised / scripted / both;
``sessions``; ``target = "valence" | "arousal" | "dominance"`` makes the dataset a regression task
on the consensus attribute (every utterance with a rating, 10,039 in the full release), each value
given as a constant 40 ms trace over the utterance (see :func:`corpus_utils.utterance_trace`).

A labelled utterance without its wav, or a wav without a label line, is a bad entry.
:func:`write_fixture` writes a small synthetic copy in exactly this layout
(``python -m ser_bench_plugins.iemocap DIR``).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar, Literal

from ser_bench.errors import PluginError
from ser_bench.interfaces import Dataset, Utterance

from .corpus_utils import (
    BadEntries,
    CorpusConfig,
    check_classes,
    probe_audio,
    read_text,
    require_root,
    utterance_trace,
    write_fixture_tone,
)

#: Consensus categories of the release (``xxx``: no majority, never a class).
ALL_CLASSES = ["neu", "hap", "exc", "ang", "sad", "fru", "sur", "fea", "dis", "oth"]
FOUR_CLASSES = ["neu", "hap", "ang", "sad"]
NO_AGREEMENT = "xxx"
LINE_RE = re.compile(
    r"^\[\s*(?P<start>[\d.]+)\s*-\s*(?P<end>[\d.]+)\s*\]\s+(?P<utt>Ses\S+)\s+(?P<label>\S+)\s+"
    r"\[\s*(?P<v>[-\d.]+)\s*,\s*(?P<a>[-\d.]+)\s*,\s*(?P<d>[-\d.]+)\s*\]"
)
UTT_RE = re.compile(r"^Ses(?P<session>\d{2})[FM]_(?P<kind>impro|script)[^_]*(?:_[^_]+)*_(?P<gender>[FM])[^_]*$")
SESSION_RE = re.compile(r"^Session(\d+)$")
LAYOUT = ("ROOT/Session{1..5}/sentences/wav/<dialog>/<utterance>.wav and "
          "ROOT/Session{1..5}/dialog/EmoEvaluation/<dialog>.txt (IEMOCAP_full_release)")
TARGETS = {"valence": "v", "arousal": "a", "dominance": "d"}


class Iemocap(Dataset):
    """IEMOCAP: 10 actors in 5 dyadic sessions; 4 classes (exc -> hap), leave-one-session-out."""

    name: ClassVar[str] = "iemocap"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = (
        "IEMOCAP release layout; neu/hap(+exc)/ang/sad (5,531 utterances), 5 session folds; "
        "all classes, improvised/scripted, V/A/D regression as options"
    )

    class Config(CorpusConfig):
        """Options (besides root, on_bad_entry, check_audio and emobox).

        Attributes:
            label_set: "4class": neu, hap, ang, sad (with merge_exc: exc counted as hap; the
                5,531-utterance setup); "all": every consensus category but xxx.
            merge_exc: label "exc" (excited) as "hap" (the usual 4-class merge).
            classes: optional subset of the label set's classes.
            dialogs: "both", "improvised" (``*_impro*`` dialogs) or "scripted" (``*_script*``).
            sessions: which sessions to read (1..5).
            target: "emotion" (classification) or "valence" / "arousal" / "dominance": regression
                on the consensus attribute (1..5), every rated utterance, as a constant 40 ms trace.
        """

        label_set: Literal["4class", "all"] = "4class"
        merge_exc: bool = True
        classes: list[str] | None = None
        dialogs: Literal["both", "improvised", "scripted"] = "both"
        sessions: list[Literal[1, 2, 3, 4, 5]] = [1, 2, 3, 4, 5]
        target: Literal["emotion", "valence", "arousal", "dominance"] = "emotion"

    def __init__(self, **options) -> None:
        super().__init__(**options)
        if self.config.target != "emotion":
            self.task = "regression"

    def label_classes(self) -> list[str]:
        cfg = self.config
        known = FOUR_CLASSES if cfg.label_set == "4class" else ALL_CLASSES
        if cfg.merge_exc:
            known = [c for c in known if c != "exc"]
        return check_classes(cfg.classes, known, self.name)

    def load_utterances(self) -> list[Utterance]:
        cfg = self.config
        regression = cfg.target != "emotion"
        classes = set(self.label_classes())
        root = require_root(cfg.root, self.name, LAYOUT)
        if (root / "IEMOCAP_full_release").is_dir() and not (root / "Session1").is_dir():
            root = root / "IEMOCAP_full_release"
        found = {int(m[1]): p for p in root.iterdir() if p.is_dir() and (m := SESSION_RE.match(p.name))}
        missing = [n for n in cfg.sessions if n not in found]
        if missing:
            raise PluginError(
                f"dataset {self.name!r}: no Session{missing[0]} folder in {root}; expected {LAYOUT}. Point "
                f"--data-root {self.name}=PATH at the folder holding Session1 ... Session5 (IEMOCAP_full_release)."
            )
        bad = BadEntries(self.name, cfg.on_bad_entry)
        out: list[Utterance] = []
        for n in sorted(cfg.sessions):
            sdir = found[n]
            label_dir = sdir / "dialog" / "EmoEvaluation"
            wav_dir = sdir / "sentences" / "wav"
            for folder in (label_dir, wav_dir):
                if not folder.is_dir():
                    raise PluginError(f"dataset {self.name!r}: {folder} is missing; expected {LAYOUT}")
            labels: dict[str, tuple[str, dict[str, float], Path]] = {}
            for txt in sorted(label_dir.glob("*.txt")):
                if txt.name.startswith("._"):
                    continue
                for lineno, line in enumerate(read_text(txt).splitlines(), 1):
                    if not line.startswith("["):
                        continue
                    m = LINE_RE.match(line.strip())
                    if not m:
                        bad.add(f"{txt} line {lineno}", f"not '[start - end]<TAB>utterance<TAB>label<TAB>[V, A, D]': {line.strip()!r}")
                        continue
                    labels[m["utt"]] = (m["label"], {k: float(m[k]) for k in "vad"}, txt)
            wavs = {p.stem: p for p in sorted(wav_dir.glob("*/*.wav")) if not p.name.startswith("._")}
            for stem in sorted(set(wavs) - set(labels)):
                bad.add(wavs[stem], "unlabelled: no line for it in dialog/EmoEvaluation/<dialog>.txt", uid=stem, path=wavs[stem])
            for utt in sorted(labels):
                label, vad, txt = labels[utt]
                m = UTT_RE.match(utt)
                if not m or int(m["session"]) != n:
                    bad.add(f"{txt}: {utt}", f"utterance name does not parse as Ses{n:02d}[FM]_<dialog>_[FM]NNN", uid=utt)
                    continue
                kind = "improvised" if m["kind"] == "impro" else "scripted"
                if cfg.dialogs != "both" and kind != cfg.dialogs:
                    continue
                if not regression:
                    if cfg.merge_exc and label == "exc":
                        label = "hap"
                    if label not in classes:  # xxx, or a class outside the label set: a selection
                        if label != NO_AGREEMENT and label not in ALL_CLASSES:
                            bad.add(f"{txt}: {utt}", f"unknown label {label!r} (known: {', '.join(ALL_CLASSES)}, xxx)", uid=utt)
                        continue
                path = wavs.get(utt)
                if path is None:
                    bad.add(f"{txt}: {utt}", f"no audio {wav_dir / utt.rsplit('_', 1)[0] / (utt + '.wav')}", uid=utt)
                    continue
                probe = probe_audio(path) if (cfg.check_audio or regression) else None
                if isinstance(probe, str):
                    bad.add(path, probe, uid=utt, path=path)
                    continue
                y = utterance_trace(vad[TARGETS[cfg.target]], *probe) if regression else label
                out.append(Utterance(id=utt, speaker=f"Ses{n:02d}{m['gender']}", label=y, path=path, fold=f"Session{n}"))
        bad.finish(fix=f"Expected {LAYOUT}.")
        return out


# --------------------------------------------------------------------------- fixture

#: The fixture's dialogs per session: (dialog suffix, [(utterance suffix, label)]).
FIXTURE_DIALOGS = (
    ("F_impro01", [("F000", "neu"), ("F001", "hap"), ("M000", "exc"), ("M001", "ang"), ("F002", "sad"),
                   ("M002", "fru"), ("F003", "xxx")]),
    ("M_script01_1", [("F000", "sad"), ("M000", "neu"), ("M001", "exc"), ("F001", "ang"), ("M002", "sur")]),
)


def write_fixture(root: str | Path, sessions: int = 5) -> Path:
    """Write a small synthetic IEMOCAP in the exact release layout; return ``root``.

    Per session: an improvised dialog ``Ses0nF_impro01`` (neu, hap, exc, ang, sad, fru, xxx) and a
    scripted one ``Ses0nM_script01_1`` (sad, neu, exc, ang, sur), with EmoEvaluation files in the
    release's format (header, consensus lines, annotators' lines, a ``Categorical/`` folder) and an
    AppleDouble ``._`` file; 0.4 s tones as audio. Counts over 5 sessions: default 45 utterances
    (neu 10, hap 15 = 5 hap + 10 exc, ang 10, sad 10), 10 speakers, 5 session folds; 35 without
    the exc merge; 55 with ``label_set="all"`` (xxx left out); 60 rated for ``target`` (xxx included).
    """
    root = Path(root)
    seed = 0
    for n in range(1, sessions + 1):
        sdir = root / f"Session{n}"
        (sdir / "dialog" / "EmoEvaluation" / "Categorical").mkdir(parents=True, exist_ok=True)
        for suffix, utts in FIXTURE_DIALOGS:
            dialog = f"Ses{n:02d}{suffix}"
            lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
            t = 6.2901
            for usfx, label in utts:
                seed += 1
                utt = f"{dialog}_{usfx}"
                v, a, d = 1.5 + (seed * 7 % 8) / 2, 1.5 + (seed * 5 % 8) / 2, 1.5 + (seed * 3 % 8) / 2
                lines += [f"[{t:.4f} - {t + 1.9456:.4f}]\t{utt}\t{label}\t[{v:.4f}, {a:.4f}, {d:.4f}]",
                          "C-E2:\tNeutral;\t()", "C-E3:\tNeutral;\t()", "C-F1:\tNeutral;\t(curious)",
                          f"A-E3:\tval {round(v)}; act {round(a)}; dom  {round(d)};\t()", ""]
                t += 3.0
                write_fixture_tone(sdir / "sentences" / "wav" / dialog / f"{utt}.wav", seed)
            (sdir / "dialog" / "EmoEvaluation" / f"{dialog}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
            (sdir / "dialog" / "EmoEvaluation" / "Categorical" / f"{dialog}_e1_cat.txt").write_text(
                f"{dialog}_{utts[0][0]} :Neutral state; ()\n", encoding="utf-8")
        (sdir / "sentences" / "wav" / f"Ses{n:02d}F_impro01" / f"._Ses{n:02d}F_impro01_F000.wav").write_bytes(b"\0" * 82)
    return root


if __name__ == "__main__":  # python -m ser_bench_plugins.iemocap DIR
    import sys

    if len(sys.argv) != 2:
        sys.exit("usage: python -m ser_bench_plugins.iemocap DIR   (writes a small synthetic IEMOCAP fixture)")
    print(f"wrote a synthetic IEMOCAP (release layout, 5 sessions) to {write_fixture(sys.argv[1])}")
