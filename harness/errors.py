"""Error types. Every error a user can fix says what was wrong (file, value) and how to fix it."""
from __future__ import annotations

from typing import Any


class BenchError(Exception):
    """Base class for errors a user can act on. The CLI prints the message without a traceback."""


class AudioError(BenchError):
    """An audio file or signal is unusable (missing, corrupt, empty, silent, NaN...)."""


class ConfigError(BenchError):
    """A run configuration or plugin option is invalid."""


class PluginError(BenchError):
    """A plugin is unknown, duplicated, broken, or violates its interface."""


class UnknownPluginError(PluginError, KeyError):
    """No plugin of that kind has that name. The message lists close matches."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


def bad_audio_error(bad: list[dict[str, Any]], limit: int = 200, head: str = "") -> AudioError:
    """The error of ``on_bad_audio = "fail"``: every bad utterance (up to ``limit``), each with its
    reason, and one line of fix advice."""
    lines = "\n".join(f"  - {n['dataset']}/{n['utterance_id']}: {n['detail']}" for n in bad[:limit])
    more = f"\n  ... and {len(bad) - limit} more" if len(bad) > limit else ""
    head = head or (f"{len(bad)} bad utterance{'s' if len(bad) != 1 else ''}; the run stopped before computing "
                    "anything (stored results are untouched)")
    return AudioError(
        f"{head}:\n{lines}{more}\nFix or remove these files, or run with "
        "--on-bad-audio skip (suite: on_bad_audio = \"skip\") to leave them out of every fold; skipped "
        "utterances are recorded in the registry (`bench runs show RUN`)."
    )

