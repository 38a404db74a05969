"""Entries a dataset loader cannot use, and who decides what happens to them.

A loader lists a corpus and meets entries it cannot use: an unreadable or empty file, a label
outside the option ``classes``, a manifest row without a speaker... It collects them (the
built-in loaders use :class:`ser_bench_plugins.corpus_utils.BadEntries`) and hands them over with
:func:`hand_over` when it has listed everything.

* Used alone (the Python API, ``bench train``): nobody collects, and the loader's own option
  ``on_bad_entry`` decides: ``"error"`` raises one error listing them all, ``"skip"`` logs them.
* Inside ``bench run``: the runner collects them (:func:`collecting`) and one policy decides for
  them and for the problems its audio audit finds (truncated files, NaN samples, silence):
  ``on_bad_audio = "fail"`` stops the run with one error listing every bad file, ``"skip"``
  leaves them all out; every skipped entry is recorded in the registry with its reason. An
  entry of a dataset whose ``on_bad_entry`` is ``"skip"`` is skipped (and recorded) either way.
"""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class BadEntry:
    """One unusable entry of a dataset.

    Attributes:
        dataset: the dataset's registry name.
        where: the file, or the place in a listing ("list.csv line 7").
        reason: what is wrong, in words a user can act on.
        utterance_id: the id the entry would have had, when the loader knows it.
        path: the audio file, when there is one.
        skip: the dataset's own option says to skip it (``on_bad_entry = "skip"``).
    """

    dataset: str
    where: str
    reason: str
    utterance_id: str | None = None
    path: str | None = None
    skip: bool = False

    def note(self) -> dict[str, str | None]:
        """As a ``skipped`` utterance note (table ``utterance_notes``)."""
        return {"dataset": self.dataset, "utterance_id": self.utterance_id or self.where, "path": self.path,
                "kind": "skipped", "detail": f"{self.where}: {self.reason}"}


_LOCAL = threading.local()


@contextlib.contextmanager
def collecting() -> Iterator[list[BadEntry]]:
    """Collect the bad entries loaders hand over in this thread, instead of letting them decide."""
    outer = getattr(_LOCAL, "entries", None)
    entries: list[BadEntry] = []
    _LOCAL.entries = entries
    try:
        yield entries
    finally:
        _LOCAL.entries = outer


def hand_over(entries: Iterable[BadEntry]) -> bool:
    """Give a loader's bad entries to the collector; False if nobody collects (the loader decides)."""
    target = getattr(_LOCAL, "entries", None)
    if target is None:
        return False
    target.extend(entries)
    return True
