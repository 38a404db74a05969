"""Shared helpers for the real-corpus dataset plugins (EMO-DB, eNTERFACE, RAVDESS, generic).

Not a plugin module itself: it registers nothing. It holds the common options
(:class:`CorpusConfig`), the root check, the audio header probe and the collector of bad
entries, so that every loader reports problems the same way: one error listing the bad files
with the reason for each and the fix, or, with ``on_bad_entry="skip"``, a logged warning.
"""
from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from ser_bench.errors import ConfigError, PluginError
from ser_bench.interfaces import PluginConfig

log = logging.getLogger("ser_bench.datasets")

#: Audio file extensions soundfile (libsndfile) reads.
AUDIO_EXTS = (".wav", ".flac", ".ogg", ".aiff", ".aif", ".mp3")
#: How many bad entries an error message lists before summarising.
MAX_LISTED = 10


class CorpusConfig(PluginConfig):
    """Options every corpus loader has.

    Attributes:
        root: the corpus folder (as distributed). ``bench run --data-root NAME=PATH`` sets it.
        on_bad_entry: "error" (default) stops with a list of every bad file and the reason;
            "skip" leaves them out with a logged warning. Inside ``bench run``, the run's
            ``--on-bad-audio`` policy decides for "error" entries (one error listing every bad
            file with the audit's findings, or skip), and skipped entries are recorded in the
            registry (`bench runs show`).
        check_audio: read each file's header while listing (cheap), so an unreadable or empty
            file fails at once, named, instead of in the middle of a run.
        emobox: EmoBox's folder of this corpus (``EmoBox/data/<corpus>/``, holding
            ``fold_<k>/<corpus>_{train,test}_fold_<k>.jsonl`` and ``label_map.json``): keep the
            utterances EmoBox lists (matched by file name), with its labels and its folds
            (``--cv emobox``, or ``auto``); the count matched goes into the dataset's notes.
    """

    root: Path | None = None
    on_bad_entry: Literal["error", "skip"] = "error"
    check_audio: bool = True
    emobox: Path | None = None


def require_root(root: Path | None, dataset: str, layout: str) -> Path:
    """Return ``root`` as an existing directory, or raise ConfigError saying how to set it."""
    if root is None:
        raise ConfigError(
            f"dataset {dataset!r} needs its corpus folder: pass --data-root {dataset}=PATH "
            f"(or the option {dataset}.root=PATH). Expected layout: {layout}"
        )
    root = Path(root).expanduser()
    if not root.exists():
        raise ConfigError(
            f"dataset {dataset!r}: root {root} does not exist; point --data-root {dataset}=PATH at "
            f"the corpus folder (expected layout: {layout})"
        )
    if not root.is_dir():
        raise ConfigError(f"dataset {dataset!r}: root {root} is not a folder (expected layout: {layout})")
    return root.resolve()


def probe_audio(path: Path) -> tuple[int, int] | str:
    """``(frames, samplerate)`` from the file header, or a string saying why it is unusable
    (in our words; the decoder's own messages stay off the terminal)."""
    from ser_bench.audio import audio_info
    from ser_bench.errors import AudioError

    try:
        info = audio_info(path)
    except AudioError as exc:
        msg = str(exc)
        prefix = f"{path}: "
        return msg[len(prefix):] if msg.startswith(prefix) else msg
    if info.frames <= 0:
        return "the file holds no samples (empty or truncated)"
    return int(info.frames), int(info.samplerate)


class BadEntries:
    """Collects entries a loader cannot use, then raises or warns once, listing them all.

    Inside ``bench run`` the entries go to the runner instead (:mod:`ser_bench.bad_entries`),
    whose ``on_bad_audio`` policy decides for them together with its own audio checks.
    """

    def __init__(self, dataset: str, on_bad_entry: str) -> None:
        self.dataset = dataset
        self.mode = on_bad_entry
        self.entries: list[tuple[str, str]] = []
        self._detail: list[tuple[str | None, str | None]] = []

    def add(self, where: object, reason: str, *, uid: str | None = None, path: object = None) -> None:
        """Record a bad entry: where (file or listing line), why, and if known its utterance id and file."""
        self.entries.append((str(where), reason))
        self._detail.append((uid, str(path) if path is not None else None))

    def __len__(self) -> int:
        return len(self.entries)

    def finish(self, fix: str = "") -> list[tuple[str, str]]:
        """Hand the entries to a collecting run, or raise PluginError listing them (mode
        "error"), or log a warning (mode "skip")."""
        if not self.entries:
            return []
        from ser_bench.bad_entries import BadEntry, hand_over

        handed = [BadEntry(self.dataset, w, r, utterance_id=uid, skip=self.mode == "skip",
                           path=path if path is not None else (w if Path(w).suffix.lower() in AUDIO_EXTS else None))
                  for (w, r), (uid, path) in zip(self.entries, self._detail)]
        if hand_over(handed):
            return list(self.entries)
        shown = "\n".join(f"  - {w}: {r}" for w, r in self.entries[:MAX_LISTED])
        more = f"\n  ... and {len(self.entries) - MAX_LISTED} more" if len(self.entries) > MAX_LISTED else ""
        if self.mode == "error":
            hint = f" {fix}" if fix else ""
            raise PluginError(
                f"dataset {self.dataset!r}: {len(self.entries)} bad entr"
                f"{'y' if len(self.entries) == 1 else 'ies'}:\n{shown}{more}\nFix or remove them,{hint} "
                f"or pass the option {self.dataset}.on_bad_entry=skip to leave them out."
            )
        log.warning("dataset %r: skipped %d bad entries:\n%s%s", self.dataset, len(self.entries), shown, more)
        return list(self.entries)


def check_classes(requested: Iterable[str] | None, known: Iterable[str], dataset: str) -> list[str]:
    """Validate a class subset against the corpus's class names; return it (or all known)."""
    known = list(known)
    if requested is None:
        return known
    requested = list(requested)
    unknown = [c for c in requested if c not in known]
    if unknown:
        raise ConfigError(
            f"dataset {dataset!r}: unknown class(es) {', '.join(map(repr, unknown))} in the option {dataset}.classes; "
            f"this corpus has: {', '.join(known)}"
        )
    if len(set(requested)) < 2:
        raise ConfigError(f"dataset {dataset!r}: the option {dataset}.classes needs at least two distinct classes, got {requested}")
    return requested


def uniform_duration_note(frames: list[tuple[int, int]]) -> str:
    """A note when (nearly) every file has the same duration, the mark of a cut/padded copy."""
    if len(frames) < 20:
        return ""
    durations = Counter(round(f / sr, 2) for f, sr in frames)
    dur, count = durations.most_common(1)[0]
    if count / len(frames) < 0.9:
        return ""
    return (
        f"possibly degraded copy: {count} of {len(frames)} files last exactly {dur:.2f} s "
        "(cut or zero-padded); absolute scores are not comparable with published figures"
    )


def speaker_folds(speakers: dict[str, str], k: int, prefix: str = "speakers") -> dict[str, str]:
    """Whole speakers into ``k`` folds: speaker -> fold name (``speakers<i>of<k>``).

    ``speakers`` maps each speaker to a stratum (e.g. its sex; "" if unknown): the speakers of
    each stratum, in sorted order, are dealt round-robin over the folds, continuing where the
    previous stratum stopped, so folds get near-equal numbers of speakers and of each stratum.
    Deterministic: the same speakers always give the same folds.
    """
    if len(speakers) < k:
        raise ConfigError(f"{len(speakers)} speaker(s) cannot fill {k} speaker folds; lower the option speaker_folds "
                          f"to {max(2, len(speakers))} or fewer, or use --cv loso")
    out: dict[str, str] = {}
    i = 0
    for stratum in sorted(set(speakers.values())):
        for spk in sorted(s for s, g in speakers.items() if g == stratum):
            out[spk] = f"{prefix}{i % k + 1}of{k}"
            i += 1
    return out


def utterance_trace(value: float, frames: int, samplerate: int, hop_s: float = 0.04):
    """An utterance-level rating as a constant :class:`~ser_bench.interfaces.TimeSeries` (one value
    every ``hop_s`` over the audio's duration): the harness's regression models and CCC work on
    40 ms traces, so a corpus rating one value per utterance (IEMOCAP, MSP-Podcast) enters this way."""
    import numpy as np

    from ser_bench.interfaces import TimeSeries

    n = max(1, int(round(frames / samplerate / hop_s)))
    return TimeSeries(np.full(n, float(value), dtype=np.float32), hop_s=hop_s)


def read_text(path: Path) -> str:
    """A label or transcript file's text: UTF-8 (with or without BOM), UTF-16 with a BOM, else
    GB18030 (Mandarin releases), else Latin-1."""
    raw = Path(path).read_bytes()
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16")
    for enc in ("utf-8-sig", "gb18030"):
        try:
            return raw.decode(enc)
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1")


def write_fixture_tone(path: Path, seed: int, seconds: float = 0.4, sr: int = 16_000) -> Path:
    """A short voiced tone (harmonics at a seed-dependent pitch, a little noise) as 16-bit PCM:
    the audio of the corpus fixtures the loaders' ``write_fixture`` functions and tests write."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng([seed, 24])
    t = np.arange(int(round(seconds * sr))) / sr
    f0 = 110.0 + 15.0 * (seed % 11)
    x = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6.28)) / k for k in range(1, 6))
    x = 0.25 * x / np.max(np.abs(x)) * np.hanning(len(t)) ** 0.1 + rng.normal(0, 0.003, len(t))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x.astype(np.float32), sr, subtype="PCM_16")
    return path
