import pytest
from sqlalchemy import inspect

from ser_bench.db import Store
from ser_bench.db.migrations import MIGRATIONS, schema_version
from ser_bench.db.schema import Base


def test_migrating_blank_db_matches_orm(tmp_path):
    store = Store(str(tmp_path / "a.db"))
    insp = inspect(store.engine)
    for table in Base.metadata.sorted_tables:
        cols = {c["name"] for c in insp.get_columns(table.name)}
        assert cols == {c.name for c in table.columns}, table.name
    assert schema_version(store.engine) == [name for name, _ in MIGRATIONS]
    Store(str(tmp_path / "a.db"))  # idempotent
    assert schema_version(store.engine) == [name for name, _ in MIGRATIONS]


def _run(store):
    return store.start_run(config_json="{}", config_hash="h1", protocol="clean", name=None, code_version="t",
                           plugins={}, env={}, seed=0, snr_definition="x", n_cells=1)


COORDS = dict(dataset="d", ser_model="m", enhancer="none", noise="-", protocol="clean", train_condition="clean",
              train_snr=None, test_condition="clean", test_snr=None, fold="f")


def test_record_cell_is_idempotent(tmp_path):
    store = Store(str(tmp_path / "b.db"))
    rid = _run(store)
    assert store.record_cell(rid, "k1", COORDS, status="done", metrics={"uar": 0.5, "accuracy": 0.6})
    assert not store.record_cell(rid, "k1", COORDS, status="done", metrics={"uar": 0.9})
    assert store.count("results") == 2 and store.count("cells") == 1
    df = store.results_frame()
    assert df[df.metric == "uar"].value.tolist() == [0.5]
    assert _run(store) == rid  # same config hash -> the run is resumed, not duplicated
    assert store.count("runs") == 1


def test_failed_cells_are_deleted_for_retry(tmp_path):
    store = Store(str(tmp_path / "c.db"))
    rid = _run(store)
    store.record_cell(rid, "k2", COORDS, status="failed", error="E", traceback="tb")
    assert store.existing(["k2", "zz"]) == {"k2": "failed"}
    store.delete_cells(["k2"])
    assert store.existing(["k2"]) == {}
