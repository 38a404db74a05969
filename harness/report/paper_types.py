"""The paper view's data: the data classes of its tables (:class:`Ours`, :class:`Row`,
:class:`PaperTable`, :class:`CorpusFacts`) and the formatting of their numbers in the paper's units.

Shared by :mod:`ser_bench.report.paper` (the tables), :mod:`ser_bench.report.paper_notes` (what
differs from the paper) and :mod:`ser_bench.report.paper_figures` (the figures); it imports none of them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


# ----------------------------------------------------------------------------- data classes


@dataclass
class Ours:
    """One of our numbers in the paper's units, with its bootstrap interval."""

    value: float | None = None
    lo: float | None = None
    hi: float | None = None
    cell_ids: list[int] = field(default_factory=list)
    runs: list[int] = field(default_factory=list)


@dataclass
class Row:
    features: str  # the paper's feature-set label, e.g. "eGeMAPS"
    snr: str  # "" (clean or mean), "5 dB", "train 5 -> test 10 dB", "mean"
    condition: str  # clean | noisy | enhanced (rescnn) ...
    kind: str  # clean | noisy | enhanced
    paper: float | None
    ours: Ours
    delta: float | None = None
    gap_paper: float | None = None
    gap_ours: float | None = None
    snr_value: float | None = None  # numeric test SNR (figures)
    train_snr: float | None = None  # multi-SNR rows (figures)
    enhancer: str = "none"
    #: the paper's value is a mean over other SNRs than ours (not differenced)
    paper_other_snrs: bool = False


@dataclass
class PaperTable:
    id: str
    label: str  # "Table 5"
    caption: str  # the paper's caption
    corpus: str  # the paper's corpus ("eNTERFACE")
    dataset: str  # ours ("ravdess")
    noise: str
    metric: str  # uar | ccc
    rows: list[Row]
    comparable: bool = True
    not_differenced: list[str] = field(default_factory=list)  # why ours is not differenced
    notes: list[str] = field(default_factory=list)  # data differences
    runs: list[dict[str, Any]] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)  # inline SVGs, one per feature set
    snrs: list[float] = field(default_factory=list)  # our SNRs in this table
    enhancers: list[str] = field(default_factory=list)
    #: tables of means: ours per SNR behind each mean, {features: {condition: [(snr, Ours)]}}
    curves: dict[str, dict[str, list[tuple[float, Ours]]]] = field(default_factory=dict)

    def fmt(self, v: float | None, signed: bool = False) -> str:
        return fmt_value(v, self.metric, signed)

    def fmt_paper(self, v: float | None) -> str:
        """A published number as printed in the paper (UAR 2 decimals, CCC 4)."""
        if v is None:
            return "n/a"
        return f"{v:.2f}" if self.metric == "uar" else f"{v:.4f}"


@dataclass
class CorpusFacts:
    """What our run's data was, read back from the stored predictions (see :func:`.paper_notes.corpus_facts`)."""

    classes: list[str] | None = None
    n_utterances: int | None = None
    n_speakers: int | None = None
    test_recordings: int | None = None  # regression (RECOLA): recordings in the test set
    test_seconds: float | None = None


# ----------------------------------------------------------------------------- formatting


def fmt_value(v: float | None, metric: str, signed: bool = False, missing: str = "–") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return missing
    if metric == "uar":
        return f"{v:+.1f}" if signed else f"{v:.1f}"
    return f"{v:+.3f}" if signed else f"{v:.3f}"


def fmt_share(v: float | None) -> str:
    return "" if v is None else f"{100 * v:+.0f} %"


def _scale(metric: str) -> float:
    """Our stored values are fractions; the paper's UARs are percent, its CCCs raw."""
    return 100.0 if metric == "uar" else 1.0
