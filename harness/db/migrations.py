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


MIGRATIONS: list[tuple[str, Callable[[Connection], None]]] = [
    ("0001_initial", m0001_initial),
]


def migrate(engine: Engine) -> list[str]:
    """Apply pending migrations in order; return the names applied. Safe to call concurrently."""
    applied_now = []
    with engine.begin() as conn:
        if not inspect(conn).has_table("schema_migrations"):
            conn.execute(text(
                "CREATE TABLE IF NOT EXISTS schema_migrations (name VARCHAR(100) PRIMARY KEY, applied_at TIMESTAMP NOT NULL)"
            ))
    for name, fn in MIGRATIONS:
        with engine.begin() as conn:
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
