"""The results registry on every backend: SQLite always, PostgreSQL when BENCH_TEST_PG_URL is set
(`.ci/postgres` starts a local server and sets it, e.g. postgresql+psycopg://postgres@127.0.0.1:54329/bench_test).

Each PostgreSQL test gets a database of its own, created from that URL and dropped afterwards.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import threading
import uuid

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from ser_bench.cli import cli
from ser_bench.config import RunConfig
from ser_bench.db import Store
from ser_bench.db.migrations import MIGRATIONS, m0001_initial, schema_version
from ser_bench.db.schema import Base
from ser_bench.runner import run

PG_URL = os.environ.get("BENCH_TEST_PG_URL")
EXTRA = ["ser_bench.testing:testing_plugin"]
COORDS = dict(dataset="d", ser_model="m", enhancer="none", noise="-", protocol="clean", train_condition="clean",
              train_snr=None, test_condition="clean", test_snr=None, fold="f")


def _pg_skip_reason() -> str | None:
    if not PG_URL:
        return "BENCH_TEST_PG_URL is not set (run `. .ci/postgres` to start a local PostgreSQL and set it)"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install 'ser-bench[postgres]')"
    return None


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """A blank database URL on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'reg.db'}"
        return
    reason = _pg_skip_reason()
    if reason:
        pytest.skip(reason)
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    name = f"bench_t_{uuid.uuid4().hex[:12]}"
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _run(store: Store, h: str = "h1") -> int:
    return store.start_run(config_json="{}", config_hash=h, protocol="clean", name=None, code_version="t",
                           plugins={}, env={}, seed=0, snr_definition="x", n_cells=1)


def test_migrating_a_blank_database_gives_the_orm_schema(db_url):
    store = Store(db_url)
    insp = inspect(store.engine)
    for table in Base.metadata.sorted_tables:
        cols = {c["name"] for c in insp.get_columns(table.name)}
        assert cols == {c.name for c in table.columns}, table.name
    assert schema_version(store.engine) == [n for n, _ in MIGRATIONS]
    assert [n for n, _ in MIGRATIONS] == ["0001_initial", "0002_utterance_notes", "0003_bigint_seeds",
                                          "0004_run_peak_rss", "0005_corruptions"]
    Store(db_url)  # idempotent
    assert schema_version(store.engine) == [n for n, _ in MIGRATIONS]


def test_an_old_database_is_upgraded_keeping_its_rows(db_url):
    """A registry written before 0002 (only 0001 applied) gains the new table, loses nothing."""
    engine = create_engine(db_url)
    with engine.begin() as conn:
        m0001_initial(conn)
        conn.execute(text("CREATE TABLE schema_migrations (name VARCHAR(100) PRIMARY KEY, applied_at TIMESTAMP NOT NULL)"))
        conn.execute(text("INSERT INTO schema_migrations VALUES ('0001_initial', CURRENT_TIMESTAMP)"))
        conn.execute(text(
            "INSERT INTO runs (created_at, status, protocol, config_json, config_hash, code_version, plugins_json, "
            "env_json, seed, snr_definition, n_cells, n_done, n_failed) VALUES (CURRENT_TIMESTAMP, 'done', 'clean', "
            "'{}', 'old', 'v0', '{}', '{}', 0, 'x', 0, 0, 0)"))
    engine.dispose()
    store = Store(db_url)
    assert schema_version(store.engine) == ["0001_initial", "0002_utterance_notes", "0003_bigint_seeds",
                                            "0004_run_peak_rss", "0005_corruptions"]
    assert store.runs_frame().config_hash.tolist() == ["old"]
    assert store.runs_frame().peak_rss_mb.isna().all()  # runs before 0004 have no peak memory recorded
    rid = int(store.runs_frame().id.iloc[0])
    assert store.record_cell(rid, "big", COORDS, status="done", seed=2**32 - 1, metrics={"uar": 1.0})
    assert int(store.cells_frame().seed.iloc[0]) == 2**32 - 1  # per-cell seeds are unsigned 32-bit
    assert store.record_utterance_notes(1, [dict(dataset="d", utterance_id="u", kind="skipped", detail="x")]) == 1


def test_cells_are_written_once_with_their_metrics(db_url):
    store = Store(db_url)
    rid = _run(store)
    assert store.record_cell(rid, "k1", COORDS, status="done", seed=4_000_000_000,
                             metrics={"uar": 0.1 + 0.2, "accuracy": 1 / 3})
    assert not store.record_cell(rid, "k1", COORDS, status="done", metrics={"uar": 0.9})  # already there
    df = store.results_frame()
    assert sorted(zip(df.metric, df.value)) == [("accuracy", 1 / 3), ("uar", 0.1 + 0.2)]  # exact float round trip
    assert df.test_snr.isna().all()
    assert store.count("cells") == 1 and store.count("results") == 2
    assert int(store.cells_frame().seed.iloc[0]) == 4_000_000_000
    assert _run(store) == rid and store.count("runs") == 1  # same config hash: resumed
    assert _run(store, "h2") != rid


def test_existing_and_delete_work_in_chunks(db_url):
    store = Store(db_url)
    rid = _run(store)
    keys = [f"k{i:04d}" for i in range(530)]  # more than one chunk of 500
    for k in keys:
        store.record_cell(rid, k, COORDS, status="failed" if k.endswith("7") else "done", metrics={"uar": 0.5})
    have = store.existing(keys + ["nope"])
    assert len(have) == 530 and sum(st == "failed" for st in have.values()) == 53
    store.delete_cells([k for k, st in have.items() if st == "failed"] + keys[:3])
    assert store.count("cells") == 530 - 53 - 3 and store.count("results") == 530 - 53 - 3


def test_utterance_notes_are_idempotent(db_url):
    store = Store(db_url)
    rid = _run(store)
    notes = [dict(dataset="d", utterance_id=f"u{i}", kind="skipped", path=f"/x/u{i}.wav", detail="bad")
             for i in range(3)] + [dict(dataset="d", utterance_id="u0", kind="converted", detail="resampled")]
    assert store.record_utterance_notes(rid, notes) == 4
    assert store.record_utterance_notes(rid, notes) == 0
    df = store.utterance_notes_frame([rid])
    assert len(df) == 4 and df[df.kind == "converted"].detail.tolist() == ["resampled"]


def test_concurrent_stores_migrate_and_start_one_run(db_url):
    """Threads with their own engines: migrate a blank database and start the same config at once."""
    barrier = threading.Barrier(6)
    ids, errors = [], []

    def worker() -> None:
        try:
            barrier.wait()
            store = Store(db_url)
            ids.append(_run(store, "same"))
            for k in ("a", "b", "c"):  # everyone writes the same cells
                store.record_cell(ids[-1], k, COORDS, status="done", metrics={"uar": 0.5})
            store.engine.dispose()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and len(ids) == 6
    store = Store(db_url)
    assert len(set(ids)) == 1 and store.count("runs") == 1
    assert store.count("cells") == 3 and store.count("results") == 3


def _writer(url: str, offset: int, q) -> None:  # noqa: ANN001 - runs in a spawned process
    try:
        store = Store(url)
        rid = _run(store, "procs")
        added = sum(store.record_cell(rid, f"k{i}", COORDS, status="done", metrics={"uar": i / 100, "accuracy": 1.0})
                    for i in range(offset, offset + 60))
        q.put(("ok", rid, added))
    except Exception as exc:  # noqa: BLE001
        q.put(("error", repr(exc), 0))


def test_two_processes_write_overlapping_cells(db_url):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(db_url, off, q)) for off in (0, 30)]
    for p in procs:
        p.start()
    out = [q.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(60)
    assert all(o[0] == "ok" for o in out), out
    assert out[0][1] == out[1][1]  # one run
    assert out[0][2] + out[1][2] == 90  # 90 distinct cells, each stored by exactly one process
    store = Store(db_url)
    assert store.count("cells") == 90 and store.count("results") == 180 and store.count("runs") == 1


def test_a_run_end_to_end(db_url, tmp_path):
    cfg = RunConfig(protocol="mismatched", datasets=["tones"], ser_models=["centroid"], enhancers=["none", "wiener"],
                    noise_sources=["fake-noise"], snrs=[0.0], options={"tones": {"per_class": 2}})
    store = Store(db_url)
    s = run(cfg, store=store, executor="inline", extra_plugins=EXTRA, progress=False, cache_dir=str(tmp_path / "c"))
    assert (s.n_cells, s.n_done, s.n_failed) == (9, 9, 0)
    s2 = run(cfg, store=store, executor="inline", extra_plugins=EXTRA, progress=False, cache_dir=str(tmp_path / "c"))
    assert s2.n_skipped == 9 and s2.n_done == 0 and store.count("results") == 18
    ref = Store(f"sqlite:///{tmp_path / 'ref.db'}")  # the same numbers as on SQLite
    run(cfg, store=ref, executor="inline", extra_plugins=EXTRA, progress=False, cache_dir=str(tmp_path / "c"))

    def numbers(st: Store) -> dict:
        df = st.results_frame()
        return dict(zip(zip(df.cell_key, df.metric), df.value))

    assert numbers(store) == numbers(ref)
    runs = store.runs_frame()
    assert runs.status.tolist() == ["done"] and runs.n_done.tolist() == [9]


def test_cli_takes_the_database_url(db_url):
    r = CliRunner().invoke(cli, ["db", "migrate", "--db", db_url])
    assert r.exit_code == 0, r.output
    assert "schema 0001_initial, 0002_utterance_notes, 0003_bigint_seeds" in r.output
    r = CliRunner().invoke(cli, ["runs", "list", "--db", db_url])
    assert r.exit_code == 0 and r.output == ""


def test_migration_0005_adds_corruption_columns_to_an_old_registry(db_url):
    """A registry from before corruptions (0001-0003) keeps its cells, which read as uncorrupted."""
    engine = create_engine(db_url)
    with engine.begin() as conn:
        m0001_initial(conn)
        conn.execute(text("CREATE TABLE schema_migrations (name VARCHAR(100) PRIMARY KEY, applied_at TIMESTAMP NOT NULL)"))
        conn.execute(text("INSERT INTO schema_migrations VALUES ('0001_initial', CURRENT_TIMESTAMP)"))
    engine.dispose()
    from ser_bench.db.migrations import m0002_utterance_notes, m0003_bigint_seeds

    with create_engine(db_url).begin() as conn:
        m0002_utterance_notes(conn)
        m0003_bigint_seeds(conn)
        conn.execute(text("INSERT INTO schema_migrations VALUES ('0002_utterance_notes', CURRENT_TIMESTAMP)"))
        conn.execute(text("INSERT INTO schema_migrations VALUES ('0003_bigint_seeds', CURRENT_TIMESTAMP)"))
    store = Store(db_url)
    rid = _run(store)
    assert store.record_cell(rid, "old-style", COORDS, status="done", metrics={"uar": 0.5})
    assert store.record_cell(rid, "corrupted", dict(COORDS, test_condition="noisy", test_corruption="reverb(rt60=0.6)",
                                                      corruption_json='[{"kind": "reverb", "rt60": 0.6}]'),
                             status="done", metrics={"uar": 0.4})
    res = store.results_frame().set_index("cell_key")
    import pandas as pd

    assert pd.isna(res.loc["old-style"].test_corruption)  # an old cell: uncorrupted
    assert res.loc["corrupted"].test_corruption == "reverb(rt60=0.6)"
    assert len(res) == 2  # same coordinates otherwise, but another corruption: not superseded
    assert store.record_corruption_draws(rid, [dict(dataset="d", utterance_id="u", corruption="reverb(rt60=0.6)",
                                                     draws=[{"room": [4, 5, 3]}])]) == 1
    assert json.loads(store.corruption_draws_frame().draws_json.iloc[0]) == [{"room": [4, 5, 3]}]
