"""Content-addressed artefact cache on disk (mixtures, enhanced audio, features, fitted models).

A key is a hash of everything that determines the artefact (input content keys, plugin name,
version and options, mixing version, seed). Writes go to a temporary file in the same folder
and are renamed into place, so a crash of the process never leaves a half-written entry that a
later run would read; concurrent writers of the same key simply race to an identical result.
Entries are not fsynced (on a busy disk that cost 2.5 % of a cold run): after an operating-system
crash an entry may be empty or truncated, and reading it then fails, drops it and recomputes it.

Audio is kept compactly (:meth:`Cache.store_audio`): 16-bit FLAC with the sample count, a gain
(for signals peaking above full scale) and a CRC-32 of the samples in the file's comment, so a
truncated or damaged entry is detected on reading, dropped and recomputed, never trusted.
"""
from __future__ import annotations

import logging
import os
import pickle
import socket
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .files import as_created
from .interfaces import stable_hash

DEFAULT_CACHE = ".bench-cache"
#: the folder of index files (which dataset and enhancer each entry belongs to)
INDEX = "index"
log = logging.getLogger("ser_bench.cache")


def cache_root(path: str | Path | None = None) -> Path:
    return Path(path or os.environ.get("BENCH_CACHE") or DEFAULT_CACHE)


class Cache:
    """``get_or_compute(kind, parts, fn)`` -> numpy array, stored as ``root/kind/ab/abcdef….npy``."""

    def __init__(self, root: str | Path | None = None, *, enabled: bool = True) -> None:
        self.root = cache_root(root)
        self.enabled = enabled
        self.hits = 0
        self.misses = 0
        #: entries written by this object, per kind (tests count them)
        self.writes: dict[str, int] = {}

    @staticmethod
    def key(parts: Any) -> str:
        return stable_hash(parts, n=32)

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / key[:2] / f"{key}.npy"

    def load(self, kind: str, key: str) -> np.ndarray | None:
        if not self.enabled:
            return None
        p = self.path(kind, key)
        try:
            return np.load(p, allow_pickle=False)
        except FileNotFoundError:
            return None
        except (ValueError, OSError, EOFError):  # corrupt entry (should not happen with atomic writes)
            p.unlink(missing_ok=True)
            return None

    def store(self, kind: str, key: str, value: np.ndarray, about: tuple[str, str] | None = None) -> None:
        """Store ``value``; ``about``: the (dataset, enhancer) it belongs to, for ``bench cache du``."""
        if not self.enabled:
            return
        self._write(self.path(kind, key), lambda fh: np.save(fh, np.asarray(value), allow_pickle=False))
        self.writes[kind] = self.writes.get(kind, 0) + 1
        self.note(kind, self.path(kind, key).name, about)

    def note(self, kind: str, name: str, about: tuple[str, str] | None) -> None:
        """Append ``kind, file name, dataset, enhancer`` to this process's index file (read by
        ``bench cache du``; an entry without a line counts as dataset / enhancer "?")."""
        if about is None:
            return
        folder = self.root / INDEX
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / f"{socket.gethostname()}-{os.getpid()}.tsv", "a", encoding="utf-8") as fh:
            fh.write("\t".join([kind, name, *(str(a).replace("\t", " ") for a in about)]) + "\n")

    def _write(self, p: Path, dump: Callable[[Any], None]) -> None:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, suffix=".tmp")
        as_created(fd)  # the mode of a normally created file (umask), not mkstemp's 0600
        try:
            with os.fdopen(fd, "wb") as fh:
                dump(fh)
            os.replace(tmp, p)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    # ---- Python objects (fitted SER models): pickles. The cache is this user's own folder (or one
    # shared by trusted colleagues): loading a pickle runs code, so never point --cache at a folder
    # others can write to.
    def object_path(self, kind: str, key: str) -> Path:
        return self.root / kind / key[:2] / f"{key}.pkl"

    def load_object(self, kind: str, key: str) -> Any | None:
        """The object stored under ``key``, or None (absent, or unreadable: e.g. pickled by a
        library version whose classes changed; the entry is dropped and recomputed)."""
        if not self.enabled:
            return None
        p = self.object_path(kind, key)
        try:
            with open(p, "rb") as fh:
                obj = pickle.load(fh)
        except FileNotFoundError:
            self.misses += 1
            return None
        except Exception as exc:  # corrupt or incompatible entry
            log.warning("cache entry %s unreadable (%s: %s); recomputing it", p, type(exc).__name__, exc)
            p.unlink(missing_ok=True)
            self.misses += 1
            return None
        self.hits += 1
        return obj

    def store_object(self, kind: str, key: str, obj: Any, about: tuple[str, str] | None = None) -> bool:
        """Pickle ``obj`` under ``key``; False (nothing stored) if it cannot be pickled."""
        if not self.enabled:
            return False
        try:
            blob = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # e.g. a third-party model holding a lambda or an open handle
            log.info("not caching %s %s: it cannot be pickled (%s)", kind, type(obj).__name__, exc)
            return False
        self._write(self.object_path(kind, key), lambda fh: fh.write(blob))
        self.writes[kind] = self.writes.get(kind, 0) + 1
        self.note(kind, self.object_path(kind, key).name, about)
        return True

    # ---- audio: 16-bit FLAC, verified on reading
    def audio_path(self, key: str) -> Path:
        return self.root / "audio" / key[:2] / f"{key}.flac"

    def store_audio(self, key: str, x: np.ndarray, about: tuple[str, str] | None = None) -> None:
        """Keep a signal (mono float32, 16 kHz) as 16-bit FLAC under ``audio/``; a signal peaking
        above 1 is scaled into range and the gain kept, so decoding restores its level."""
        if not self.enabled:
            return
        import soundfile as sf

        x = np.asarray(x, dtype=np.float32).reshape(-1)
        if not x.size:  # FLAC holds no empty stream
            self.store("audio", key, x, about)
            return
        q, gain = _encode(x)
        tag = f"{AUDIO_TAG} n={q.size} gain={gain!r} crc={zlib.crc32(q.tobytes())}"

        def dump(fh: Any) -> None:
            with sf.SoundFile(fh, "w", 16_000, 1, "PCM_16", format="FLAC") as f:
                f.comment = tag
                f.write(q)

        self._write(self.audio_path(key), dump)
        self.writes["audio"] = self.writes.get("audio", 0) + 1
        self.note("audio", self.audio_path(key).name, about)

    def load_audio(self, key: str) -> np.ndarray | None:
        """A signal kept under ``key``: an exact float entry (``.npy``, as older versions kept
        audio) or a FLAC one; None if absent or damaged (a damaged entry is dropped)."""
        if not self.enabled:
            return None
        exact = self.load("audio", key)
        if exact is not None:
            return exact
        p = self.audio_path(key)
        if not p.exists():
            return None
        try:
            return read_flac(p)
        except FileNotFoundError:
            return None
        except Exception as exc:  # truncated, damaged, or not ours
            log.warning("cache entry %s unreadable (%s: %s); recomputing it", p, type(exc).__name__, exc)
            p.unlink(missing_ok=True)
            return None

    def get_or_compute(self, kind: str, parts: Any, fn: Callable[[], np.ndarray]) -> tuple[np.ndarray, str]:
        """Return (value, key), computing and storing the value on a miss."""
        key = self.key(parts)
        val = self.load(kind, key)
        if val is not None:
            self.hits += 1
            return val, key
        self.misses += 1
        val = np.asarray(fn())
        self.store(kind, key, val)
        return val, key


#: 16-bit full scale used for audio entries (sample = round(x * PCM_SCALE))
PCM_SCALE = 32767.0
AUDIO_TAG = "ser-bench-audio/1"


def read_flac(path: str | Path) -> np.ndarray:
    """Decode an audio entry written by :meth:`Cache.store_audio`, checking its sample count and
    CRC; raises ValueError on any mismatch (a truncated or damaged file)."""
    import soundfile as sf

    with sf.SoundFile(str(path)) as f:
        tag = f.comment or ""
        q = f.read(dtype="int16")
    fields = dict(item.split("=", 1) for item in tag.split()[1:] if "=" in item)
    if not tag.startswith(AUDIO_TAG) or {"n", "gain", "crc"} - set(fields):
        raise ValueError(f"not a ser-bench audio entry (comment {tag!r})")
    q = q.reshape(-1)
    if q.size != int(fields["n"]) or zlib.crc32(q.tobytes()) != int(fields["crc"]):
        raise ValueError(f"damaged: {q.size} of {fields['n']} samples, or their CRC differs")
    return _decode(q, float(fields["gain"]))


def _encode(x: np.ndarray) -> tuple[np.ndarray, float]:
    """16-bit samples of ``x`` and the gain that restores its level (1, or the peak above full scale)."""
    x = np.asarray(x, dtype=np.float32).reshape(-1)
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    gain = peak if peak > 1.0 and np.isfinite(peak) else 1.0
    return np.clip(np.round(np.nan_to_num(x / gain) * PCM_SCALE), -32768, 32767).astype(np.int16), gain


def _decode(q: np.ndarray, gain: float) -> np.ndarray:
    return (q.astype(np.float32) * np.float32(gain / PCM_SCALE)).astype(np.float32)


def pcm16(x: np.ndarray) -> np.ndarray:
    """``x`` as 16-bit PCM holds it (float32; the level kept): what an enhanced signal is measured as.

    Idempotent, and exactly what :meth:`Cache.store_audio` keeps and :meth:`Cache.load_audio`
    returns, so a signal made now and one read back from the cache are the same samples.
    """
    x = np.asarray(x, dtype=np.float32).reshape(-1)
    return _decode(*_encode(x)) if x.size else x
