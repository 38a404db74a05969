import numpy as np
import pytest

from ser_bench.db import Store
from ser_bench.runner import run


def test_mismatched_run_stores_every_cell(registry, tiny_config, tmp_path):
    store = Store()
    cfg = tiny_config("mismatched")
    s = run(cfg, store=store, registry=registry, progress=False)
    # 3 LOSO folds x (clean + 2 SNR x (noisy + enhanced))
    assert (s.n_cells, s.n_done, s.n_failed) == (15, 15, 0)
    df = store.results_frame()
    uar = df[df.metric == "uar"]
    assert set(uar.test_condition) == {"clean", "noisy", "enhanced"}
    assert uar[uar.test_condition == "clean"].value.mean() == 1.0  # tones are trivially separable
    assert set(uar.test_snr.dropna()) == {0.0, 20.0}
    assert (df.groupby(["cell_id", "metric"]).size() == 1).all()


def test_rerun_adds_no_rows_and_recomputes_nothing(registry, tiny_config):
    store = Store()
    cfg = tiny_config("matched")
    run(cfg, store=store, registry=registry, progress=False)
    n = store.count("results")
    s2 = run(cfg, store=store, registry=registry, progress=False)
    assert s2.n_done == 0 and s2.n_skipped == s2.n_cells
    assert store.count("results") == n and store.count("runs") == 1


def test_resume_after_interruption(registry, tiny_config, monkeypatch):
    import ser_bench.runner as R

    store = Store()
    cfg = tiny_config("mismatched")
    real = R.cell_job
    calls = {"n": 0}

    def flaky(payload):
        calls["n"] += 1
        if calls["n"] == 2:  # one job per fold (fit once, score its 5 cells)
            raise KeyboardInterrupt  # the user pressed Ctrl-C mid-run
        return real(payload)

    monkeypatch.setattr(R, "cell_job", flaky)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, store=store, registry=registry, progress=False)
    assert store.count("cells") == 5
    assert store.runs_frame().status.tolist() == ["interrupted"]
    monkeypatch.setattr(R, "cell_job", real)
    s = run(cfg, store=store, registry=registry, progress=False)
    assert (s.n_skipped, s.n_done) == (5, 10)
    fresh = Store(str(store.url.replace("registry.db", "fresh.db")))
    run(cfg, store=fresh, registry=registry, progress=False, cache_dir="other-cache")
    a = store.results_frame().sort_values(["cell_key", "metric"]).value.to_numpy()
    b = fresh.results_frame().sort_values(["cell_key", "metric"]).value.to_numpy()
    assert np.array_equal(a, b)  # resumed == uninterrupted


def test_plugin_error_fails_the_cell_not_the_run(registry, tiny_config):
    store = Store()
    cfg = tiny_config("clean", ser_models=["peak", "boom"])
    s = run(cfg, store=store, registry=registry, progress=False)
    assert s.n_failed == 3 and s.n_done == 3
    cells = store.cells_frame()
    failed = cells[cells.status == "failed"]
    assert set(failed.ser_model) == {"boom"}
    assert failed.traceback.str.contains("boom in fit").all()
    assert store.runs_frame().status.tolist() == ["failed"]
    # the next run retries the failed cells (and only them)
    s2 = run(cfg, store=store, registry=registry, progress=False)
    assert s2.n_skipped == 3 and s2.n_failed == 3


def test_features_are_cached_on_disk(registry, tiny_config, tmp_path):
    store = Store()
    run(tiny_config("mismatched", keep_audio="all"), store=store, registry=registry, progress=False)
    feats = list((tmp_path / "cache" / "features").rglob("*.npy"))
    audio = list((tmp_path / "cache" / "audio").rglob("*.flac"))
    # 12 utterances x (clean + 2 noisy + 2 enhanced) features; 12 x 4 noisy/enhanced signals (kept: "all")
    assert len(feats) == 12 * 5 and len(audio) == 12 * 4
