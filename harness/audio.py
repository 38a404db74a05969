"""Reading and validating audio. Everything the harness hands to plugins is mono float32 16 kHz.

Decoding goes through libsndfile (soundfile). Two of its habits are hidden here: its C decoders
(libmpg123 for anything that starts like an MPEG frame) print notes straight to file descriptor 2,
which Python cannot redirect, and its error texts mislead ("File does not exist or is not a
regular file (possibly a pipe?)" for an existing file it cannot parse). Every decode therefore
runs under :func:`native_stderr_captured` (the notes go to the debug log) and a failure is
described from the file's own bytes (:func:`unreadable_reason`).
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .errors import AudioError

#: The one sample rate between the harness and plugins (re-exported by :mod:`ser_bench.interfaces`).
SAMPLE_RATE = 16_000

log = logging.getLogger("ser_bench.audio")

#: Peak amplitude below which a signal counts as silent (about -100 dBFS).
SILENCE_PEAK = 1e-5


def resample(x: np.ndarray, sr_in: int, sr_out: int = SAMPLE_RATE, quality: str = "VHQ") -> np.ndarray:
    """Band-limited, linear-phase resampling (soxr; ``quality`` one of its presets, very high by default)."""
    if sr_in == sr_out:
        return x
    import soxr

    return soxr.resample(x, sr_in, sr_out, quality=quality).astype(np.float32, copy=False)


def check_signal(x: np.ndarray, source: str, *, allow_silence: bool = True) -> np.ndarray:
    """Validate a mono signal: 1-D, non-empty, finite. Returns float32.

    Raises:
        AudioError naming ``source`` and the fix.
    """
    x = np.asarray(x)
    if x.ndim == 2 and 1 in x.shape:
        x = x.reshape(-1)
    if x.ndim != 1:
        raise AudioError(f"{source}: expected mono audio, got an array of shape {x.shape}")
    if x.size == 0:
        raise AudioError(f"{source}: zero-length audio; remove the file or re-export it")
    x = x.astype(np.float32, copy=False)
    if not np.all(np.isfinite(x)):
        bad = int(np.sum(~np.isfinite(x)))
        raise AudioError(f"{source}: {bad} NaN/inf samples; re-export the file with finite samples")
    if not allow_silence and is_silent(x):
        raise AudioError(f"{source}: the signal is silent (peak < {SILENCE_PEAK:g}); remove or replace it")
    return x


def is_silent(x: np.ndarray) -> bool:
    return x.size == 0 or float(np.max(np.abs(x))) < SILENCE_PEAK


# ----------------------------------------------------------------------------- native stderr

_CAPTURE_LOCK = threading.Lock()
_capture: dict[str, Any] = {"depth": 0, "saved": None, "sink": None}


@contextlib.contextmanager
def native_stderr_captured() -> Iterator[None]:
    """While inside, what C code writes to file descriptor 2 goes to a scratch file, then to the
    debug log (``ser_bench.audio``), instead of the terminal.

    Re-entrant and thread-safe: concurrent decoders share one redirection, undone when the last
    one leaves (anything another thread prints to stderr meanwhile is logged the same way).
    Without a usable descriptor 2 it does nothing.
    """
    with _CAPTURE_LOCK:
        if _capture["depth"] == 0:
            try:
                sys.stderr.flush()
                saved = os.dup(2)
            except (OSError, ValueError, AttributeError):
                saved = None
            if saved is not None:
                if _capture["sink"] is None:
                    _capture["sink"] = tempfile.TemporaryFile()
                os.dup2(_capture["sink"].fileno(), 2)
            _capture["saved"] = saved
        _capture["depth"] += 1
    try:
        yield
    finally:
        with _CAPTURE_LOCK:
            _capture["depth"] -= 1
            if _capture["depth"] == 0 and _capture["saved"] is not None:
                saved, sink = _capture["saved"], _capture["sink"]
                os.dup2(saved, 2)
                os.close(saved)
                _capture["saved"] = None
                if os.fstat(sink.fileno()).st_size:
                    sink.seek(0)
                    text = sink.read().decode("utf-8", "replace").strip()
                    sink.seek(0)
                    sink.truncate()
                    if text:
                        log.debug("decoder messages (kept off the terminal):\n%s", text)


# ----------------------------------------------------------------------------- reading files

#: Leading bytes of the containers libsndfile reads, and their names (for error messages).
_MAGIC = (
    (b"RIFF", "WAV (RIFF)"), (b"RIFX", "WAV (RIFX)"), (b"RF64", "WAV (RF64)"), (b"BW64", "WAV (BW64)"),
    (b"FORM", "AIFF"), (b"fLaC", "FLAC"), (b"OggS", "Ogg"), (b"ID3", "MP3"), (b".snd", "AU"),
    (b"caff", "CAF"), (b"NIST_1A", "NIST SPHERE"), (b"wvpk", "WavPack"),
)


def unreadable_reason(path: str | Path) -> str:
    """Why libsndfile could not read ``path``, in our words, from the file's own first bytes."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        return f"it cannot be opened ({exc.strerror or exc})"
    if not head:
        return "the file is empty (0 bytes)"
    if head[:4] == b"RIFF" and head[8:12] not in (b"WAVE", b""):
        return f"a RIFF file of type {head[8:12].decode('latin-1')!r}, not WAVE audio"
    for magic, fmt in _MAGIC:
        if head.startswith(magic):
            return f"it starts like {fmt} but its header or data is damaged"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        return "it starts like an MPEG audio frame but no valid MP3 stream follows"
    shown = " ".join(f"{b:02x}" for b in head[:8])
    return f"no known audio header (the file starts with bytes {shown})"


def _not_readable(path: Path, exc: BaseException) -> AudioError:
    log.debug("libsndfile on %s: %s", path, exc)
    return AudioError(f"{path}: cannot decode audio: not a readable audio file: {unreadable_reason(path)}; "
                      "export it again as WAV/FLAC, or remove it")


def _check_file(path: Path) -> None:
    if not path.exists():
        raise AudioError(f"{path}: file not found; check the dataset root or the manifest entry")
    if not path.is_file():
        raise AudioError(f"{path}: not a regular file (a folder, pipe or device); point at an audio file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: the file is empty (0 bytes); copy or export it again")


def audio_info(path: str | Path) -> Any:
    """The file's header (``soundfile.info``: frames, samplerate, channels...), read quietly.

    Raises:
        AudioError: missing, empty or unreadable files, naming the path and what is wrong.
    """
    import soundfile as sf

    path = Path(path)
    _check_file(path)
    try:
        with native_stderr_captured():
            return sf.info(str(path))
    except Exception as exc:  # LibsndfileError / RuntimeError on a bad header
        raise _not_readable(path, exc) from None


def load_audio(path: str | Path, *, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Read an audio file as mono float32 at ``sr``: stereo is averaged, other rates resampled.

    Raises:
        AudioError: missing, unreadable/corrupt, empty or non-finite files, naming the path.
    """
    import soundfile as sf

    path = Path(path)
    _check_file(path)
    try:
        with native_stderr_captured():
            data, file_sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError on bad headers
        raise _not_readable(path, exc) from None
    if data.shape[0] == 0:
        raise AudioError(f"{path}: the file holds no samples (empty or truncated); re-export it")
    x = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    x = check_signal(x, source=str(path))
    return resample(x, file_sr, sr)


def write_audio(path: str | Path, x: np.ndarray, sr: int = SAMPLE_RATE) -> None:
    """Write float audio (mono 1-D or (n, channels)) as 16-bit PCM... or float if it would clip."""
    import soundfile as sf

    x = np.asarray(x, dtype=np.float32)
    subtype = "PCM_16" if float(np.max(np.abs(x), initial=0.0)) <= 1.0 else "FLOAT"
    sf.write(str(path), x, sr, subtype=subtype)
