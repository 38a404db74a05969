"""Store: the only code that talks to the results database.

SQLite by default (``./registry.db``), any SQLAlchemy URL via ``--db`` / ``BENCH_DB``
(e.g. ``postgresql+psycopg://user@localhost/bench``). Each finished cell is committed in its
own transaction together with its metrics; the unique ``cell_key`` makes re-runs, resumed runs
and concurrent runs idempotent.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import create_engine, delete, event, func, select
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session

from ..errors import BenchError

from .migrations import exclusive, migrate
from .schema import Cell, CorruptionDraw, Result, Run, UtteranceNote

DEFAULT_DB = "registry.db"
#: database driver module -> the extra that installs it
DRIVER_EXTRAS = {"psycopg": "postgres", "psycopg2": "postgres"}


class DatabaseError(BenchError):
    """The results database cannot be opened: a missing driver, a wrong URL, an unreachable server."""


def default_db_url(db: str | None = None) -> str:
    """A SQLAlchemy URL from a URL, a file path, ``BENCH_DB`` or the default ``registry.db``."""
    db = db or os.environ.get("BENCH_DB") or DEFAULT_DB
    if "://" in db:
        return db
    return f"sqlite:///{Path(db).expanduser().resolve()}"


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 60})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # noqa: ANN001
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def _shown(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def open_engine(url: str) -> Engine:
    """``make_engine`` whose failures a user can act on are :class:`DatabaseError` (one line, the fix):
    the database driver is not installed, the URL is malformed, or (server databases) the server
    cannot be reached (or a SQLite file's folder does not exist). A server database is connected
    to once here, so a bad URL fails up front."""
    try:
        engine = make_engine(url)
    except ModuleNotFoundError as exc:
        mod = (exc.name or "").split(".")[0]
        fix = (f"pip install 'ser-bench[{DRIVER_EXTRAS[mod]}]'" if mod in DRIVER_EXTRAS
               else f"pip install {mod}" if mod else "install the database driver")
        raise DatabaseError(f"--db {_shown(url)}: the database driver {mod or exc} is not installed; "
                            f"run {fix}") from None
    except (NoSuchModuleError, ArgumentError) as exc:
        raise DatabaseError(f"--db {_shown(url)}: not a database URL SQLAlchemy knows ({exc}); give a file "
                            "path or a URL like postgresql+psycopg://user@host/dbname") from None
    if engine.dialect.name == "sqlite":
        db = engine.url.database
        if db and db != ":memory:" and not Path(db).parent.is_dir():
            raise DatabaseError(f"--db {db}: the folder {Path(db).parent} does not exist; create it or give another path")
        if db and db != ":memory:" and not db.startswith("file:") and not Path(db).exists():
            # created here, the way any file is (0666 minus the umask): SQLite would make it 0644 whatever
            # the umask, and its -wal / -shm files take the database file's mode
            with open(db, "a"):
                pass
    else:
        try:
            with engine.connect():
                pass
        except DBAPIError as exc:
            reason = " ".join(str(exc.orig or exc).split())
            raise DatabaseError(f"--db {_shown(url)}: cannot connect ({reason}); check that the server is running "
                                "and the URL's user, host, port and database name") from None
    return engine


class Store:
    """Typed read/write access to runs, cells and results."""

    def __init__(self, url: str | None = None, *, auto_migrate: bool = True) -> None:
        self.url = default_db_url(url)
        self.engine = open_engine(self.url)
        if auto_migrate:
            self._retry(lambda: migrate(self.engine))

    @staticmethod
    def _retry(fn, attempts: int = 5):  # noqa: ANN001, ANN205
        """Retry on transient lock / concurrent-DDL errors (two processes migrating at once)."""
        for i in range(attempts):
            try:
                return fn()
            except (OperationalError, IntegrityError):
                if i == attempts - 1:
                    raise
                time.sleep(0.2 * (i + 1))
        return None

    # ------------------------------------------------------------------ runs
    def start_run(self, *, config_json: str, config_hash: str, protocol: str, name: str | None,
                  code_version: str, plugins: dict, env: dict, seed: int, snr_definition: str,
                  n_cells: int) -> int:
        """Create the run row, or reopen the latest run with the same config hash (resume).

        Holds the database's write lock while it looks and creates, so two processes starting
        the same config at once share one run row.
        """
        return self._retry(lambda: self._start_run(
            config_json=config_json, config_hash=config_hash, protocol=protocol, name=name,
            code_version=code_version, plugins=plugins, env=env, seed=seed, snr_definition=snr_definition,
            n_cells=n_cells))

    def _start_run(self, *, config_json: str, config_hash: str, protocol: str, name: str | None,
                   code_version: str, plugins: dict, env: dict, seed: int, snr_definition: str,
                   n_cells: int) -> int:
        with Session(self.engine) as s, s.begin():
            exclusive(s.connection())
            run = s.scalars(
                select(Run).where(Run.config_hash == config_hash).order_by(Run.id.desc()).limit(1)
            ).first()
            if run is None:
                run = Run(created_at=_now(), status="running", protocol=protocol, name=name,
                          config_json=config_json, config_hash=config_hash, code_version=code_version,
                          plugins_json=json.dumps(plugins, sort_keys=True), env_json=json.dumps(env, sort_keys=True),
                          seed=seed, snr_definition=snr_definition, n_cells=n_cells)
                s.add(run)
            else:
                run.status = "running"
                run.code_version = code_version
                run.plugins_json = json.dumps(plugins, sort_keys=True)
                run.n_cells = n_cells
                run.error = None
            s.flush()
            return run.id

    def finish_run(self, run_id: int, status: str, *, wall_s: float | None = None, error: str | None = None,
                   keys: Iterable[str] | None = None, rss: tuple[float | None, float | None] | None = None) -> None:
        """Close a run: its status, wall time, error, and how many of its cells are done / failed.

        ``keys``: the cell keys of the run. A run's cells include those another run (or an earlier
        attempt) already stored, so they are counted by key; without ``keys``, the cells this run
        stored itself are counted. ``rss``: peak resident memory (MB) of the driver and of the
        busiest worker.
        """
        keys = None if keys is None else list(keys)
        self._retry(lambda: self._finish_run(run_id, status, wall_s=wall_s, error=error, keys=keys, rss=rss))

    def _finish_run(self, run_id: int, status: str, *, wall_s: float | None, error: str | None,
                    keys: list[str] | None, rss: tuple[float | None, float | None] | None = None) -> None:
        with Session(self.engine) as s, s.begin():
            run = s.get(Run, run_id)
            run.status = status
            run.finished_at = _now()
            run.wall_s = wall_s
            run.error = error
            if rss is not None:
                run.peak_rss_mb, run.workers_peak_rss_mb = rss
            if keys is None:
                counts = dict(s.execute(select(Cell.status, func.count()).where(Cell.run_id == run_id)
                                        .group_by(Cell.status)).all())
            else:
                counts = {}
                for i in range(0, len(keys), 500):
                    for st, n in s.execute(select(Cell.status, func.count()).where(Cell.cell_key.in_(keys[i : i + 500]))
                                           .group_by(Cell.status)).all():
                        counts[st] = counts.get(st, 0) + n
            run.n_done = counts.get("done", 0)
            run.n_failed = counts.get("failed", 0)

    # ------------------------------------------------------------------ cells
    def existing(self, keys: Iterable[str]) -> dict[str, str]:
        """cell_key -> status for the keys already stored."""
        keys = list(keys)
        out: dict[str, str] = {}
        with Session(self.engine) as s:
            for i in range(0, len(keys), 500):
                chunk = keys[i : i + 500]
                out.update(dict(s.execute(select(Cell.cell_key, Cell.status).where(Cell.cell_key.in_(chunk))).all()))
        return out

    def delete_cells(self, keys: Iterable[str]) -> None:
        """Remove (failed) cells so they can be recomputed."""
        keys = list(keys)
        if not keys:
            return

        def work() -> None:
            with Session(self.engine) as s, s.begin():
                for i in range(0, len(keys), 500):
                    ids = s.scalars(select(Cell.id).where(Cell.cell_key.in_(keys[i : i + 500]))).all()
                    s.execute(delete(Result).where(Result.cell_id.in_(ids)))
                    s.execute(delete(Cell).where(Cell.id.in_(ids)))

        self._retry(work)

    def record_cell(self, run_id: int, cell_key: str, coords: dict[str, Any], *, status: str,
                    metrics: dict[str, float] | None = None, seed: int = 0, kind: str = "ser",
                    timings: dict[str, float] | None = None, n_train: int = 0, n_test: int = 0,
                    info: dict | None = None, predictions: Any = None, error: str | None = None,
                    traceback: str | None = None) -> bool:
        """Write one cell and its metrics in one transaction. Returns False if the key exists."""
        timings = timings or {}
        values = dict(
            cell_key=cell_key, run_id=run_id, kind=kind, seed=seed, status=status,
            n_train=n_train, n_test=n_test, prep_s=timings.get("prep_s", 0.0), fit_s=timings.get("fit_s", 0.0),
            predict_s=timings.get("predict_s", 0.0), error=error, traceback=traceback,
            info_json=json.dumps(info, default=str) if info is not None else None,
            predictions_json=json.dumps(predictions, default=str) if predictions is not None else None,
            created_at=_now(), **coords,
        )

        def write() -> bool:  # a fresh row per attempt: a failed session must not keep it
            try:
                with Session(self.engine) as s, s.begin():
                    cell = Cell(**values)
                    s.add(cell)
                    s.flush()  # assigns cell.id
                    s.add_all(Result(cell_id=cell.id, metric=m, value=float(v)) for m, v in (metrics or {}).items())
                return True
            except IntegrityError:
                return False  # another process stored this cell first: nothing to do

        return bool(self._retry(write))

    # ------------------------------------------------------------------ reads
    def runs_frame(self) -> pd.DataFrame:
        with self.engine.connect() as conn:
            return pd.read_sql(select(Run).order_by(Run.id), conn)

    def cells_frame(self, run_ids: Iterable[int] | None = None) -> pd.DataFrame:
        q = select(Cell).order_by(Cell.id)
        if run_ids is not None:
            q = q.where(Cell.run_id.in_(list(run_ids)))
        with self.engine.connect() as conn:
            return pd.read_sql(q, conn)

    def results_frame(self, superseded: bool = False) -> pd.DataFrame:
        """One row per (done cell, metric), with the cell's coordinates and run id.

        A cell is *superseded* when a newer cell has the same coordinates (dataset, models,
        conditions, SNRs, corruptions, fold, metric) but another content key: the same experiment rerun with
        other settings, e.g. a retrained checkpoint or other plugin options under the same enhancer
        name. Only the newest is returned unless ``superseded``; how many were left out, and from
        which runs, is in ``frame.attrs["superseded"]`` (reports say so rather than average the
        two configurations as if they were one).
        """
        q = (
            select(Cell.id.label("cell_id"), Cell.run_id, Cell.kind, Cell.dataset, Cell.ser_model, Cell.enhancer,
                   Cell.noise, Cell.protocol, Cell.train_condition, Cell.train_snr, Cell.test_condition,
                   Cell.test_snr, Cell.fold, Cell.cell_key, Cell.n_test, Cell.train_corruption, Cell.test_corruption,
                   Cell.corruption_json, Result.metric, Result.value)
            .join(Result, Result.cell_id == Cell.id)
            .where(Cell.status == "done")
            .order_by(Cell.id, Result.metric)
        )
        with self.engine.connect() as conn:
            df = pd.read_sql(q, conn)
        if superseded or df.empty:
            df.attrs["superseded"] = {"results": 0, "runs": []}
            return df
        coords = ["kind", "dataset", "ser_model", "enhancer", "noise", "protocol", "train_condition", "train_snr",
                  "test_condition", "test_snr", "train_corruption", "test_corruption", "fold", "metric"]
        newest = df.groupby(coords, dropna=False, sort=False)["cell_id"].transform("max")
        old = df[df.cell_id != newest]
        df = df[df.cell_id == newest].reset_index(drop=True)
        df.attrs["superseded"] = {"results": int(len(old)), "runs": sorted(int(r) for r in set(old.run_id))}
        return df

    def count(self, table: str = "results") -> int:
        model = {"results": Result, "cells": Cell, "runs": Run}[table]
        with Session(self.engine) as s:
            return s.scalar(select(func.count()).select_from(model)) or 0

    # ------------------------------------------------------------------ utterance notes
    def record_utterance_notes(self, run_id: int, notes: Iterable[dict[str, Any]]) -> int:
        """Record per-utterance notes of a run (keys: dataset, utterance_id, kind, path, detail).

        Idempotent: a note already stored for (run, dataset, utterance, kind) is left as it is.
        Returns the number of notes added.
        """
        notes = list(notes)
        if not notes:
            return 0
        return self._add_new(run_id, UtteranceNote, ("dataset", "utterance_id", "kind"), notes, lambda n: UtteranceNote(
            run_id=run_id, dataset=n["dataset"], utterance_id=n["utterance_id"], kind=n["kind"], path=n.get("path"),
            detail=n["detail"], created_at=_now()))

    def record_corruption_draws(self, run_id: int, rows: Iterable[dict[str, Any]]) -> int:
        """Record what corruption chains drew per utterance (keys: dataset, utterance_id,
        corruption, draws: a JSON-able list, one entry per step). Idempotent per (run, dataset,
        utterance, corruption). Returns the number of rows added."""
        rows = list(rows)
        if not rows:
            return 0
        return self._add_new(run_id, CorruptionDraw, ("dataset", "utterance_id", "corruption"), rows,
                             lambda r: CorruptionDraw(run_id=run_id, dataset=r["dataset"], utterance_id=r["utterance_id"],
                                                      corruption=r["corruption"],
                                                      draws_json=json.dumps(r["draws"], default=str), created_at=_now()))

    def _add_new(self, run_id: int, model: Any, key: tuple[str, ...], rows: list[dict[str, Any]], make) -> int:  # noqa: ANN001
        """Add ``make(row)`` for each row whose ``key`` columns the run has not stored yet (idempotent
        per run and key; retried like every write). Returns the number of rows added."""

        def work() -> int:
            with Session(self.engine) as s, s.begin():
                have = set(s.execute(select(*(getattr(model, c) for c in key)).where(model.run_id == run_id)).all())
                added = 0
                for r in rows:
                    k = tuple(r[c] for c in key)
                    if k in have:
                        continue
                    have.add(k)
                    s.add(make(r))
                    added += 1
                return added

        return int(self._retry(work) or 0)

    def corruption_draws_frame(self, run_ids: Iterable[int] | None = None) -> pd.DataFrame:
        q = select(CorruptionDraw).order_by(CorruptionDraw.run_id, CorruptionDraw.corruption, CorruptionDraw.dataset,
                                            CorruptionDraw.utterance_id)
        if run_ids is not None:
            q = q.where(CorruptionDraw.run_id.in_(list(run_ids)))
        with self.engine.connect() as conn:
            return pd.read_sql(q, conn)

    def utterance_notes_frame(self, run_ids: Iterable[int] | None = None) -> pd.DataFrame:
        q = select(UtteranceNote).order_by(UtteranceNote.run_id, UtteranceNote.dataset, UtteranceNote.utterance_id,
                                           UtteranceNote.kind)
        if run_ids is not None:
            q = q.where(UtteranceNote.run_id.in_(list(run_ids)))
        with self.engine.connect() as conn:
            return pd.read_sql(q, conn)
