"""ORM view of the current schema (what code reads and writes).

The tables are *created* only by the migrations in :mod:`ser_bench.db.migrations`, never by
``metadata.create_all``; a test checks that migrating a blank database yields these columns.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Run(Base):
    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(16))  # running | done | failed | interrupted
    protocol: Mapped[str] = mapped_column(String(32))
    name: Mapped[str | None] = mapped_column(String(200))
    config_json: Mapped[str] = mapped_column(Text)
    config_hash: Mapped[str] = mapped_column(String(32), index=True)
    code_version: Mapped[str] = mapped_column(String(100))
    plugins_json: Mapped[str] = mapped_column(Text)
    env_json: Mapped[str] = mapped_column(Text)
    seed: Mapped[int] = mapped_column(BigInteger)  # 64-bit since migration 0003
    snr_definition: Mapped[str] = mapped_column(Text)
    n_cells: Mapped[int] = mapped_column(Integer, default=0)
    n_done: Mapped[int] = mapped_column(Integer, default=0)
    n_failed: Mapped[int] = mapped_column(Integer, default=0)
    wall_s: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    #: peak resident memory (MB) of the driver process and of the busiest worker (migration 0004)
    peak_rss_mb: Mapped[float | None] = mapped_column(Float)
    workers_peak_rss_mb: Mapped[float | None] = mapped_column(Float)


class Cell(Base):
    __tablename__ = "cells"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cell_key: Mapped[str] = mapped_column(String(64), unique=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # ser | quality
    dataset: Mapped[str] = mapped_column(String(100))
    ser_model: Mapped[str] = mapped_column(String(100))
    enhancer: Mapped[str] = mapped_column(String(100))
    noise: Mapped[str] = mapped_column(String(100))
    protocol: Mapped[str] = mapped_column(String(32))
    train_condition: Mapped[str] = mapped_column(String(16))
    train_snr: Mapped[float | None] = mapped_column(Float)
    test_condition: Mapped[str] = mapped_column(String(16))
    test_snr: Mapped[float | None] = mapped_column(Float)
    fold: Mapped[str] = mapped_column(String(100))
    seed: Mapped[int] = mapped_column(BigInteger)  # 64-bit since migration 0003
    status: Mapped[str] = mapped_column(String(16))  # done | failed
    n_train: Mapped[int] = mapped_column(Integer, default=0)
    n_test: Mapped[int] = mapped_column(Integer, default=0)
    prep_s: Mapped[float] = mapped_column(Float, default=0.0)
    fit_s: Mapped[float] = mapped_column(Float, default=0.0)
    predict_s: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[str | None] = mapped_column(Text)
    traceback: Mapped[str | None] = mapped_column(Text)
    info_json: Mapped[str | None] = mapped_column(Text)
    predictions_json: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    #: corruption chains (migration 0004; NULL for clean and additive-noise-at-an-SNR cells)
    train_corruption: Mapped[str | None] = mapped_column(Text)
    test_corruption: Mapped[str | None] = mapped_column(Text)
    corruption_json: Mapped[str | None] = mapped_column(Text)  # the test chain's kinds and parameters


class Result(Base):
    __tablename__ = "results"
    __table_args__ = (UniqueConstraint("cell_id", "metric", name="uq_results_cell_metric"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cell_id: Mapped[int] = mapped_column(ForeignKey("cells.id", ondelete="CASCADE"), index=True)
    metric: Mapped[str] = mapped_column(String(64))
    value: Mapped[float] = mapped_column(Float)


class UtteranceNote(Base):
    """Per-utterance record of a run (migration 0002): ``skipped`` bad utterances (with the
    reason) under ``on_bad_audio = "skip"``, and ``converted`` inputs (downmixed, resampled)."""

    __tablename__ = "utterance_notes"
    __table_args__ = (UniqueConstraint("run_id", "dataset", "utterance_id", "kind", name="uq_utterance_notes"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    dataset: Mapped[str] = mapped_column(String(100))
    utterance_id: Mapped[str] = mapped_column(String(500))
    kind: Mapped[str] = mapped_column(String(16))  # skipped | converted
    path: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


class CorruptionDraw(Base):
    """What a corruption chain drew for one utterance in a run (migration 0004): room size,
    source-microphone distance, DRR, measured RT60, talkers... as JSON, one list entry per step."""

    __tablename__ = "corruption_draws"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    dataset: Mapped[str] = mapped_column(String(100))
    utterance_id: Mapped[str] = mapped_column(String(500))
    corruption: Mapped[str] = mapped_column(Text)
    draws_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
