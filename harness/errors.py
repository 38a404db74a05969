"""Error types. Every error a user can fix says what was wrong (file, value) and how to fix it."""
from __future__ import annotations


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
