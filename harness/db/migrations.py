"""Ordered, named schema migrations recorded in ``schema_migrations``.

Each migration defines the tables *as they were* at that version (its own MetaData), so that
later schema changes never alter what an old migration creates. Add a new function and append
it to MIGRATIONS; never edit an applied one.
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone

from sqlalchemy import (
    Column, DateTime, Float, ForeignKey, Integer, MetaData, String, Table, Text, UniqueConstraint,
    inspect, text,
)
from sqlalchemy.engine import Connection, Engine


def m0001_initial(conn: Connection) -> None:
    md = MetaData()
    Table(
        "runs", md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("created_at", DateTime, nullable=False),
        Column("finished_at", DateTime),
        Column("status", String(16), nullable=False),
        Column("protocol", String(32), nullable=False),
        Column("name", String(200)),
        Column("config_json", Text, nullable=False),
        Column("config_hash", String(32), nullable=False, index=True),
        Column("code_version", String(100), nullable=False),
        Column("plugins_json", Text, nullable=False),
        Column("env_json", Text, nullable=False),
        Column("seed", Integer, nullable=False),
        Column("snr_definition", Text, nullable=False),
        Column("n_cells", Integer, nullable=False, default=0),
        Column("n_done", Integer, nullable=False, default=0),
        Column("n_failed", Integer, nullable=False, default=0),
        Column("wall_s", Float),
        Column("error", Text),
    )
    Table(
        "cells", md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("cell_key", String(64), nullable=False, unique=True),
        Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False, index=True),
        Column("kind", String(16), nullable=False),
        Column("dataset", String(100), nullable=False),
        Column("ser_model", String(100), nullable=False),
        Column("enhancer", String(100), nullable=False),
        Column("noise", String(100), nullable=False),
        Column("protocol", String(32), nullable=False),
        Column("train_condition", String(16), nullable=False),
        Column("train_snr", Float),
        Column("test_condition", String(16), nullable=False),
        Column("test_snr", Float),
        Column("fold", String(100), nullable=False),
        Column("seed", Integer, nullable=False),
        Column("status", String(16), nullable=False),
        Column("n_train", Integer, nullable=False, default=0),
        Column("n_test", Integer, nullable=False, default=0),
        Column("prep_s", Float, nullable=False, default=0.0),
        Column("fit_s", Float, nullable=False, default=0.0),
        Column("predict_s", Float, nullable=False, default=0.0),
        Column("error", Text),
        Column("traceback", Text),
        Column("info_json", Text),
        Column("predictions_json", Text),
        Column("created_at", DateTime, nullable=False),
    )
    Table(
        "results", md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("cell_id", Integer, ForeignKey("cells.id", ondelete="CASCADE"), nullable=False, index=True),
        Column("metric", String(64), nullable=False),
        Column("value", Float, nullable=False),
        UniqueConstraint("cell_id", "metric", name="uq_results_cell_metric"),
    )
    md.create_all(conn)


def m0002_utterance_notes(conn: Connection) -> None:
    """Per-utterance records of a run: bad utterances skipped (``on_bad_audio = "skip"``) and
    input conversions applied on loading (stereo downmix, resampling)."""
    md = MetaData()
    Table("runs", md, Column("id", Integer, primary_key=True))  # for the foreign key only
    Table(
        "utterance_notes", md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False, index=True),
        Column("dataset", String(100), nullable=False),
        Column("utterance_id", String(500), nullable=False),
        Column("kind", String(16), nullable=False),  # skipped | converted
        Column("path", Text),
        Column("detail", Text, nullable=False),
        Column("created_at", DateTime, nullable=False),
        UniqueConstraint("run_id", "dataset", "utterance_id", "kind", name="uq_utterance_notes"),
    )
    md.tables["utterance_notes"].create(conn, checkfirst=True)


def m0003_bigint_seeds(conn: Connection) -> None:
    """Seeds are 64-bit: per-cell seeds span the full unsigned 32-bit range, beyond a 32-bit
    INTEGER on PostgreSQL. (SQLite's INTEGER is already 64-bit: nothing to do there.)"""
    if conn.dialect.name == "postgresql":
        for table in ("runs", "cells"):
            conn.execute(text(f"ALTER TABLE {table} ALTER COLUMN seed TYPE BIGINT"))
    elif conn.dialect.name in ("mysql", "mariadb"):
        for table in ("runs", "cells"):
            conn.execute(text(f"ALTER TABLE {table} MODIFY seed BIGINT NOT NULL"))


def m0004_run_peak_rss(conn: Connection) -> None:
    """A run's peak resident memory (MB): of the driver process and of its busiest worker."""
    have = {c["name"] for c in inspect(conn).get_columns("runs")}
    for col in ("peak_rss_mb", "workers_peak_rss_mb"):
        if col not in have:
            conn.execute(text(f"ALTER TABLE runs ADD COLUMN {col} FLOAT"))


def m0005_corruptions(conn: Connection) -> None:
    """Corruptions as a condition axis: each cell's train / test corruption chain (canonical label,
    NULL for clean and additive-noise-at-an-SNR cells) and the test chain's kinds and parameters
    as JSON (``[{"kind": "reverb", "rt60": 0.6}, ...]``); and what each corruption step drew per
    utterance (room size, distance, DRR, talkers...), per run."""
    for col in ("train_corruption", "test_corruption", "corruption_json"):
        conn.execute(text(f"ALTER TABLE cells ADD COLUMN {col} TEXT"))
    md = MetaData()
    Table("runs", md, Column("id", Integer, primary_key=True))  # for the foreign key only
    Table(
        "corruption_draws", md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False, index=True),
        Column("dataset", String(100), nullable=False),
        Column("utterance_id", String(500), nullable=False),
        Column("corruption", Text, nullable=False),
        Column("draws_json", Text, nullable=False),
        Column("created_at", DateTime, nullable=False),
    )
    md.tables["corruption_draws"].create(conn, checkfirst=True)


MIGRATIONS: list[tuple[str, Callable[[Connection], None]]] = [
    ("0001_initial", m0001_initial),
    ("0002_utterance_notes", m0002_utterance_notes),
    ("0003_bigint_seeds", m0003_bigint_seeds),
    ("0004_run_peak_rss", m0004_run_peak_rss),
    ("0005_corruptions", m0005_corruptions),
]

#: Key of the PostgreSQL advisory lock that serialises migrations and run creation.
LOCK_KEY = 0x5E2B_E7C4


def exclusive(conn: Connection) -> None:
    """Make the transaction just begun on ``conn`` hold the database's write lock until it ends.

    SQLite: ``BEGIN IMMEDIATE`` (other writers wait, up to the busy timeout). PostgreSQL: a
    transaction-level advisory lock. Other databases: nothing (rely on unique constraints).
    Serialises check-then-insert sequences (migrations, creating a run) across processes.
    """
    dialect = conn.dialect.name
    if dialect == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    elif dialect == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": LOCK_KEY})


def migrate(engine: Engine) -> list[str]:
    """Apply pending migrations in order; return the names applied. Safe to call concurrently."""
    applied_now = []
    with engine.begin() as conn:
        exclusive(conn)  # concurrent CREATE TABLE IF NOT EXISTS can still collide on PostgreSQL
        if not inspect(conn).has_table("schema_migrations"):
            conn.execute(text(
                "CREATE TABLE IF NOT EXISTS schema_migrations (name VARCHAR(100) PRIMARY KEY, applied_at TIMESTAMP NOT NULL)"
            ))
    for name, fn in MIGRATIONS:
        with engine.begin() as conn:
            exclusive(conn)  # one process migrates; the others wait, then find it done
            done = conn.execute(text("SELECT 1 FROM schema_migrations WHERE name = :n"), {"n": name}).first()
            if done:
                continue
            fn(conn)
            conn.execute(
                text("INSERT INTO schema_migrations (name, applied_at) VALUES (:n, :t)"),
                {"n": name, "t": datetime.now(timezone.utc).replace(tzinfo=None)},
            )
            applied_now.append(name)
    return applied_now


def schema_version(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        if not inspect(conn).has_table("schema_migrations"):
            return []
        return [r[0] for r in conn.execute(text("SELECT name FROM schema_migrations ORDER BY name"))]
