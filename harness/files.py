"""Files ser-bench writes for the user get the mode a normally created file gets.

``open(path, "w")`` creates a file with mode ``0o666`` minus the umask (``0o644`` under the usual
umask 022), so a web server or a colleague on a shared machine can read it. A file written
atomically through :func:`tempfile.mkstemp` (written whole, then renamed into place) would keep
mkstemp's private ``0o600`` instead. Every such write in ser-bench goes through this module:
:func:`atomic_write`, or :func:`as_created` on a file made some other way.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

_LOCK = threading.Lock()


def umask() -> int:
    """The process's umask, read without changing it (Linux: /proc; elsewhere set and restored)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _LOCK:  # os.umask can only be read by setting it: keep other threads of ours from racing
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def created_mode() -> int:
    """The mode ``open(path, "w")`` would give a new file now: ``0o666 & ~umask``."""
    return 0o666 & ~umask()


def as_created(file: int | str | os.PathLike[str]) -> None:
    """Give ``file`` (an open descriptor or a path), e.g. one made by mkstemp, the mode of a normally created file."""
    mode = created_mode()
    if isinstance(file, int):
        if hasattr(os, "fchmod"):  # POSIX
            os.fchmod(file, mode)
    else:
        os.chmod(file, mode)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "w", **open_kw: Any) -> Iterator[IO[Any]]:
    """Write ``path`` whole or not at all: a temporary file in the same folder, renamed into place
    when the block ends without an error (removed when it raises), with a normally created file's
    mode. ``mode`` is ``"w"`` (text; pass ``encoding=``) or ``"wb"``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", suffix=".tmp", dir=path.parent)
    try:
        as_created(fd)
        with os.fdopen(fd, mode, **open_kw) as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
