"""Crash safety: SIGKILLed runs resume to exactly the rows of an uninterrupted run; a damaged
cache entry is recomputed; an interrupted run's row is finished by the next run.

The kill-and-resume check is benchmarks/kill_resume.py; here a short variant (in-process, one
trial killed three times: at a random time, then twice while cells are being stored) runs in the
default suite and a longer one (2-process pool, three trials) is marked slow.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from ser_bench.config import RunConfig
from ser_bench.db import Store
from ser_bench.runner import run

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["mismatched", "--snr", "0", "-o", "synthetic.per_class=1", "-o", 'synthetic.speakers=["f1","m1","f2"]']


def _kill_resume():
    spec = importlib.util.spec_from_file_location("kill_resume", ROOT / "benchmarks" / "kill_resume.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _check(report: dict, n_cells: int) -> None:
    assert not report["reference_problems"]
    for trial in report["trials"]:
        assert trial["resume_rc"] == 0, trial.get("resume_output")
        assert trial["db_equal"], trial["db_diff"]
        assert not trial["db_problems"], trial["db_problems"]
        assert trial["cache_equal"], (trial["cache_diff"], trial["corrupt_cache_entries"])
        assert trial["rows"]["cells"] == n_cells and trial["rows"]["results"] == 2 * n_cells
        assert trial["rows"]["runs"] == 1
        for k in trial["kills"]:
            assert k["orphans_s"] is not None, "processes outlived the SIGKILLed driver"
    assert report["all_ok"]


def test_sigkill_at_three_points_then_resume_matches_an_uninterrupted_run(tmp_path):
    kr = _kill_resume()
    rep = kr.kill_resume(SMALL, trials=1, time_kills=1, cell_kills=2, jobs=1, seed=1, workdir=tmp_path,
                         log=lambda s: None)
    _check(rep, n_cells=9)
    kills = rep["trials"][0]["kills"]
    assert [k["killed"] for k in kills[1:]] == [True, True]  # both killed mid-way through storing cells
    assert 0 < kills[1]["cells_stored"] <= kills[2]["cells_stored"] < 9


@pytest.mark.slow
def test_sigkill_with_a_process_pool_then_resume(tmp_path):
    kr = _kill_resume()
    rep = kr.kill_resume(SMALL + ["--snr", "10"], trials=3, time_kills=2, cell_kills=1, jobs=2, seed=2,
                         workdir=tmp_path, log=lambda s: None)
    _check(rep, n_cells=15)


def test_compare_detects_a_missing_row_and_a_damaged_cache_entry(tmp_path):
    """The checker itself must be able to fail."""
    kr = _kill_resume()
    db = tmp_path / "a.db"
    store = Store(str(db))
    rid = store.start_run(config_json="{}", config_hash="h", protocol="clean", name=None, code_version="t",
                          plugins={}, env={}, seed=0, snr_definition="x", n_cells=2)
    coords = dict(dataset="d", ser_model="m", enhancer="none", noise="-", protocol="clean", train_condition="clean",
                  train_snr=None, test_condition="clean", test_snr=None, fold="f")
    for k in ("k1", "k2"):
        store.record_cell(rid, k, coords, status="done", metrics={"uar": 0.5, "accuracy": 0.5})
    store.finish_run(rid, "done")
    store.engine.dispose()  # checkpoints the WAL into a.db before the copy
    cache = tmp_path / "c" / "features" / "ab"
    cache.mkdir(parents=True)
    np.save(cache / "ab01.npy", np.arange(3.0))
    import shutil

    shutil.copy(db, tmp_path / "b.db")
    shutil.copytree(tmp_path / "c", tmp_path / "d")
    same = kr.compare(db, tmp_path / "c", tmp_path / "b.db", tmp_path / "d")
    assert same["db_equal"] and same["cache_equal"] and not same["db_problems"]
    Store(str(tmp_path / "b.db")).delete_cells(["k2"])
    (tmp_path / "d" / "features" / "ab" / "ab01.npy").write_bytes(b"\x93NUMPY garbage")
    diff = kr.compare(db, tmp_path / "c", tmp_path / "b.db", tmp_path / "d")
    assert not diff["db_equal"] and diff["db_diff"]["cells"]["missing"] == 1
    assert diff["db_diff"]["results"]["missing"] == 2
    assert not diff["cache_equal"] and diff["corrupt_cache_entries"] == ["features/ab/ab01.npy"]
    assert "runs table" in " ".join(diff["db_problems"])  # n_done no longer matches n_cells


# ----------------------------------------------------------------------------- in-process checks (fast)

EXTRA = ["ser_bench.testing:testing_plugin"]


def _config(**kw) -> RunConfig:
    base = dict(protocol="mismatched", datasets=["tones"], ser_models=["centroid"], enhancers=["none", "wiener"],
                noise_sources=["fake-noise"], snrs=[0.0], options={"tones": {"per_class": 2}})
    base.update(kw)
    return RunConfig(**base)


def _numbers(store: Store) -> dict:
    df = store.results_frame()
    return {(k, m): v for k, m, v in zip(df.cell_key, df.metric, df.value)}


def test_a_damaged_cache_entry_is_recomputed_not_used(tmp_path):
    cfg = _config()
    a = Store(str(tmp_path / "a.db"))
    run(cfg, store=a, executor="inline", extra_plugins=EXTRA, progress=False, cache_dir=str(tmp_path / "c"))
    files = sorted((tmp_path / "c" / "features").rglob("*.npy"))
    good = {f: f.read_bytes() for f in files}
    files[0].write_bytes(good[files[0]][:40])  # truncated (a disk error; atomic writes never leave this)
    files[1].write_bytes(b"not a numpy file at all")
    b = Store(str(tmp_path / "b.db"))
    run(cfg, store=b, executor="inline", extra_plugins=EXTRA, progress=False, cache_dir=str(tmp_path / "c"))
    assert _numbers(a) == _numbers(b) and len(_numbers(a)) == 2 * 9
    assert {f: f.read_bytes() for f in files} == good  # rewritten with the same bytes


def test_the_next_run_finishes_an_interrupted_run_row(tmp_path):
    cfg = _config()
    store = Store(str(tmp_path / "a.db"))
    rid = store.start_run(config_json=cfg.to_json(), config_hash=cfg.config_hash(), protocol=cfg.protocol,
                          name=None, code_version="x", plugins={}, env={}, seed=0, snr_definition="x", n_cells=9)
    assert store.runs_frame().status.tolist() == ["running"]  # as a SIGKILLed run leaves it
    s = run(cfg, store=store, executor="inline", extra_plugins=EXTRA, progress=False)
    runs = store.runs_frame()
    assert s.run_id == rid and len(runs) == 1
    assert runs.status.tolist() == ["done"] and runs.n_done.tolist() == [9] and runs.finished_at.notna().all()
