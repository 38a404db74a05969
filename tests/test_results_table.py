"""The results table printed at the end of ``bench run`` / ``bench paper`` and by ``bench runs show N
--table``: per SER model and enhancer, the metric at each SNR with its CI and significance mark;
``-q`` leaves only the table on stdout, ``--json`` prints it machine-readable."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from ser_bench.cli import cli
from ser_bench.config import RunConfig
from ser_bench.db import Store
from ser_bench.report import terminal
from ser_bench.report.build import collect


def invoke(*args):
    r = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return r


# --------------------------------------------------------------------------- a real run (synthetic data)


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """One small real mismatched run (clean, 0 and 20 dB, noisy / wiener), printed as a human would see it."""
    tmp = tmp_path_factory.mktemp("table")
    db, cache = f"sqlite:///{tmp / 'r.db'}", str(tmp / "cache")
    args = ["run", "mismatched", "--snr", "0", "--snr", "20", "-o", "synthetic.per_class=2", "-j", "1",
            "--executor", "inline", "--db", db, "--cache", cache]
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    return {"db": db, "args": args, "first": first}


def test_bench_run_ends_with_its_results_table(real):
    out = real["first"].stdout
    summary, table = out.split("\n\n", 1)  # the run's messages, a blank line, the table
    assert "run 1: 30 cells" in summary and summary.splitlines()[-1].startswith("run 1: 30 computed")
    lines = table.strip().splitlines()
    assert lines[0] == "synthetic · mismatched · noise synthetic-noise · UAR %"
    assert lines[1].split() == ["SER", "model", "enhancer", "clean", "0", "dB", "20", "dB"]
    assert lines[2].split()[:2] == ["svm-egemaps", "none"] and lines[3].split()[:2] == ["svm-egemaps", "wiener"]
    assert "+ / -: enhanced significantly better / worse than noisy" in table
    # the numbers are the HTML leaderboard's, CIs included
    board = collect(Store(real["db"]))["tables"][0]
    none, wiener = board.rows[0]["cells"], board.rows[1]["cells"]
    clean = none[0]
    assert f"{100 * clean.mean:.1f} " in lines[2] and f"[{100 * clean.ci[0]:.1f},{100 * clean.ci[1]:.1f}]" in lines[2]
    noisy20, enh20 = none[3], wiener[4]  # columns: clean, 0 noisy, 0 enhanced, 20 noisy, 20 enhanced
    assert lines[2].split()[-2] == f"{100 * noisy20.mean:.1f}"
    mark = {"better": "+", "worse": "-"}.get(enh20.sig, "")
    assert lines[3].split()[-2] == f"{100 * enh20.mean:.1f}{mark}"


def test_quiet_leaves_only_the_table_on_stdout(real):
    r = invoke(*real["args"], "-q")
    assert r.exit_code == 0
    assert r.stdout.splitlines()[0] == "synthetic · mismatched · noise synthetic-noise · UAR %"
    assert "computed" not in r.stdout and "0 computed, 30 already stored" in r.stderr
    # the same table as at the end of the first run, and as `bench runs show 1 --table`
    assert r.stdout == real["first"].stdout.split("\n\n", 1)[1]
    assert invoke("runs", "show", "1", "--table", "--db", real["db"]).stdout == r.stdout


def test_json_is_the_same_table_machine_readable(real):
    r = invoke(*real["args"], "--json")
    doc = json.loads(r.stdout)  # nothing else on stdout
    assert doc["runs"] == [1] and len(doc["tables"]) == 1
    t = doc["tables"][0]
    assert (t["dataset"], t["protocol"], t["noise"], t["metric"], t["snrs"]) == (
        "synthetic", "mismatched", "synthetic-noise", "uar", [0.0, 20.0])
    none, wiener = t["rows"]
    assert (none["enhancer"], none["condition"], wiener["enhancer"], wiener["condition"]) == (
        "none", "noisy", "wiener", "enhanced")
    assert wiener["clean"] is None and 0 <= none["clean"]["ci"][0] <= none["clean"]["mean"] <= none["clean"]["ci"][1]
    board = collect(Store(real["db"]))["tables"][0]
    assert [v["mean"] for v in wiener["by_snr"]] == pytest.approx([board.rows[1]["cells"][2].mean,
                                                                  board.rows[1]["cells"][4].mean])
    assert wiener["by_snr"][1]["sig"] == (board.rows[1]["cells"][4].sig or None) and none["by_snr"][0]["sig"] is None
    shown = json.loads(invoke("runs", "show", "1", "--table", "--json", "--db", real["db"]).stdout)
    assert shown == doc


def test_runs_show_table_of_a_missing_run_is_an_error(real):
    r = CliRunner().invoke(cli, ["runs", "show", "7", "--table", "--db", real["db"]])
    assert r.exit_code != 0 and "no run 7" in r.output


# --------------------------------------------------------------------------- runs written by hand


def _cfg(**kw) -> str:
    base = dict(protocol="mismatched", datasets=["d"], ser_models=["m"], enhancers=["none", "e"],
                noise_sources=["n"], snrs=[0.0, 20.0], cv="loso")
    return RunConfig(**{**base, **kw}).to_json()


def _run(store, config_json) -> int:
    return store.start_run(config_json=config_json, config_hash=str(hash(config_json)), protocol="mismatched",
                           name=None, code_version="t", plugins={}, env={}, seed=0, snr_definition="s", n_cells=0)


def _cell(store, run, key, *, enh="none", cond="clean", snr=None, fold="spk:1", acc=0.5, noise="n", n=60, seed=0,
          metric="uar", regression=False):
    rng = np.random.default_rng(seed)
    classes = ["a", "b", "c"]
    truth = [classes[i % 3] for i in range(n)]
    pred = [t if rng.random() < acc else classes[(classes.index(t) + 1) % 3] for t in truth]
    ids = [f"{fold}-u{i}" for i in range(n)]
    if regression:
        scores = np.clip(acc + 0.05 * rng.standard_normal(n), -1, 1)
        preds, value = [[u, 100, float(s)] for u, s in zip(ids, scores)], float(np.mean(scores))
    else:
        preds = [[u, t, p] for u, t, p in zip(ids, truth, pred)]
        value = float(np.mean([np.mean([p == c for p, t in zip(pred, truth) if t == c]) for c in classes]))
    coords = dict(dataset="d", ser_model="m", protocol="mismatched", enhancer=enh, noise=noise if snr is not None else "-",
                  train_condition="clean", train_snr=None, test_condition=cond, test_snr=snr, fold=fold)
    store.record_cell(run, key, coords, status="done", metrics={metric: value}, predictions=preds, n_test=n)
    return value


def test_significance_marks_and_a_run_that_reused_stored_cells(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'h.db'}")
    first = _run(store, _cfg(snrs=[0.0]))
    for f in ("spk:1", "spk:2"):
        _cell(store, first, f"c{f}", fold=f, acc=0.9)
        _cell(store, first, f"n0{f}", cond="noisy", snr=0.0, fold=f, acc=0.35, seed=1)
        _cell(store, first, f"e0{f}", enh="e", cond="enhanced", snr=0.0, fold=f, acc=0.9, seed=2)  # clearly better
    second = _run(store, _cfg())  # 0 and 20 dB: its 0 dB cells were stored by the first run
    for f in ("spk:1", "spk:2"):
        _cell(store, second, f"n20{f}", cond="noisy", snr=20.0, fold=f, acc=0.9, seed=3)
        _cell(store, second, f"e20{f}", enh="e", cond="enhanced", snr=20.0, fold=f, acc=0.35, seed=4)  # clearly worse
    # an unrelated run: another noise source, another fold scheme; neither shows in the second run's table
    other = _run(store, _cfg(noise_sources=["x"], cv="group-kfold"))
    _cell(store, other, "x0", cond="noisy", snr=0.0, noise="x", fold="group1of5", acc=0.1)
    _cell(store, other, "g", fold="group1of5", acc=0.1)

    [t] = terminal.tables(store, [second], n_boot=200)
    text = terminal.render([t])
    lines = text.splitlines()
    assert lines[0] == "d · mismatched · noise n · UAR %"
    none, enh = lines[2].split(), lines[3].split()
    assert none[:2] == ["m", "none"] and enh[:2] == ["m", "e"]
    assert enh[2].endswith("+") and enh[4].endswith("-")  # 0 dB better, 20 dB worse than noisy
    assert not none[3].endswith(("+", "-"))  # noisy is the reference: no mark
    assert [v.n_folds for v in t.rows[0]["cells"] if v is not None] == [2, 2, 2]  # the group-kfold cells stay out
    # the first run's table: its own SNR only
    [t1] = terminal.tables(store, [first], n_boot=200)
    assert t1.snrs == [0.0] and "20 dB" not in terminal.render([t1])
    # both runs at once (bench paper): one table, every SNR
    assert terminal.tables(store, [first, second], n_boot=200)[0].snrs == [0.0, 20.0]


def test_a_run_prefers_its_own_cells_over_newer_ones_at_the_same_coordinates(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'h.db'}")
    a = _run(store, _cfg(snrs=[0.0], enhancers=["none"]))
    own = _cell(store, a, "a0", cond="noisy", snr=0.0, acc=0.4, seed=5)
    b = _run(store, _cfg(snrs=[0.0], enhancers=["none"], seed=1))  # the same experiment with other settings
    newer = _cell(store, b, "b0", cond="noisy", snr=0.0, acc=0.8, seed=6)
    assert own != newer
    assert terminal.tables(store, [a], n_boot=50)[0].rows[0]["cells"][1].mean == pytest.approx(own)
    assert terminal.tables(store, [b], n_boot=50)[0].rows[0]["cells"][1].mean == pytest.approx(newer)


def test_ccc_is_shown_with_three_decimals(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'h.db'}")
    run = _run(store, _cfg(snrs=[5.0], cv="partition"))
    _cell(store, run, "c", fold="partition", acc=0.62, metric="ccc", regression=True)
    _cell(store, run, "n", cond="noisy", snr=5.0, fold="partition", acc=0.31, metric="ccc", regression=True)
    text = terminal.render(terminal.tables(store, [run], n_boot=50))
    assert text.splitlines()[0].endswith("· CCC")
    row = text.splitlines()[2]
    assert "0.62" in row and "0.31" in row and "62." not in row


def test_no_results_says_so(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'h.db'}")
    run = _run(store, _cfg())
    assert terminal.tables(store, [run]) == []
    assert "no results" in terminal.render([])
    assert terminal.as_dict([], [run]) == {"runs": [run], "significance": terminal.as_dict([], [])["significance"],
                                           "tables": []}
