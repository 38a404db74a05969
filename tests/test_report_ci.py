"""Bootstrap CIs over utterances, the paired enhanced-vs-noisy test, and their place in the report."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ser_bench.report.ci import (
    FoldDetail, bootstrap_ci, mean_ci, paired_delta_ci, parse_detail, significance,
)


def fold(name, truth, pred, ids=None):
    ids = ids or [f"{name}-{i}" for i in range(len(truth))]
    return FoldDetail(name, ids, "classification", list(truth), list(pred), [])


def test_parse_detail_reads_both_stored_shapes():
    c = parse_detail("spk:1", json.dumps([["u1", "angry", "sad"], ["u2", "sad", "sad"]]))
    assert (c.task, c.ids, c.y_true, c.y_pred) == ("classification", ["u1", "u2"], ["angry", "sad"], ["sad", "sad"])
    r = parse_detail("p", json.dumps([["u1", 50, 0.4], ["u2", 1, None], ["u3", 20, 0.6]]))
    assert (r.task, r.ids, r.scores) == ("regression", ["u1", "u3"], [0.4, 0.6])
    assert parse_detail("p", None) is None and parse_detail("p", "{}") is None and parse_detail("p", "not json") is None


def test_ci_is_for_the_mean_over_folds_of_the_fold_uar():
    perfect = [fold("a", ["x", "y"] * 10, ["x", "y"] * 10), fold("b", ["x", "y"] * 10, ["x", "y"] * 10)]
    assert bootstrap_ci(perfect, n_boot=200) == (1.0, 1.0, 1.0)
    # fold a: UAR 1.0, fold b: UAR 0.5 (always "x") -> the table shows 0.75
    mixed = [fold("a", ["x", "y"] * 20, ["x", "y"] * 20), fold("b", ["x", "y"] * 20, ["x"] * 40)]
    point, lo, hi = bootstrap_ci(mixed, n_boot=500)
    assert point == pytest.approx(0.75)
    assert lo <= point <= hi


def test_ci_width_matches_the_binomial_standard_error():
    rng = np.random.default_rng(1)
    n = 400
    truth = ["x", "y"] * (n // 2)
    pred = [t if rng.random() < 0.7 else ("y" if t == "x" else "x") for t in truth]
    point, lo, hi = bootstrap_ci([fold("all", truth, pred)], n_boot=2000)
    se = np.sqrt(point * (1 - point) / n)
    assert hi - lo == pytest.approx(2 * 1.96 * se, rel=0.2)
    assert lo < point < hi


def test_paired_test_detects_a_real_gain_and_no_gain():
    truth = ["x", "y", "z"] * 20
    noisy = [fold("a", truth, ["x"] * 60), fold("b", truth, ["x"] * 60, ids=[f"b-{i}" for i in range(60)])]
    enhanced = [fold("a", truth, truth), fold("b", truth, truth, ids=[f"b-{i}" for i in range(60)])]
    d = paired_delta_ci(noisy, enhanced, n_boot=500)
    assert d["delta"] == pytest.approx(2 / 3) and d["lo"] > 0 and d["n_utts"] == 120 and d["n_folds"] == 2
    assert significance(d) == "better"
    assert significance(paired_delta_ci(enhanced, noisy, n_boot=500)) == "worse"
    same = paired_delta_ci(noisy, noisy, n_boot=500)
    assert same["delta"] == 0.0 and significance(same) == "n.s."
    assert significance(None) == ""


def test_paired_test_pairs_by_utterance_id_not_position():
    truth = ["x", "y"] * 10
    ids = [f"u{i}" for i in range(20)]
    a = fold("f", truth, truth, ids=ids)
    b = fold("f", truth[::-1], truth[::-1], ids=ids[::-1])  # the same predictions, stored in reverse order
    d = paired_delta_ci([a], [b], n_boot=200)
    assert d["delta"] == 0.0 and d["lo"] == 0.0 and d["hi"] == 0.0
    assert paired_delta_ci([a], [fold("other-fold", truth, truth)], n_boot=50) is None


def test_small_differences_on_few_utterances_are_not_significant():
    truth = ["x", "y"] * 15
    noisy = ["x" if i in (1, 3, 5, 7, 9, 11) else t for i, t in enumerate(truth)]  # 6 "y" missed
    enh = list(noisy)
    enh[1] = "y"  # one more correct utterance out of 30
    d = paired_delta_ci([fold("f", truth, noisy)], [fold("f", truth, enh)], n_boot=1000)
    assert d["delta"] > 0 and significance(d) == "n.s."


def test_regression_ci_uses_per_utterance_ccc():
    d = FoldDetail("p", ["a", "b", "c", "d"], "regression", [], [], [0.2, 0.4, 0.6, 0.8])
    point, lo, hi = bootstrap_ci([d], n_boot=500)
    assert point == pytest.approx(0.5) and 0.2 <= lo < 0.5 < hi <= 0.8


def test_mean_ci():
    lo, hi = mean_ci([1.0, 2.0, 3.0, 4.0, None, float("nan")], n_boot=500)
    assert 1.0 <= lo < 2.5 < hi <= 4.0
    assert mean_ci([1.0]) is None


def test_report_shows_cis_and_significance_markers(registry, tiny_config, tmp_path):
    from ser_bench.db import Store
    from ser_bench.report.build import build_report, collect
    from ser_bench.runner import run

    store = Store()
    run(tiny_config("mismatched"), store=store, registry=registry, progress=False)
    (board,) = collect(store)["tables"]
    enhanced_cols = [j for j, (_, sub) in enumerate(board.columns) if sub == "enhanced"]
    half = next(r for r in board.rows if r["label"][1] == "half")
    for j, v in enumerate(half["cells"]):
        if v is None:
            continue
        assert v.ci is not None and v.ci[0] <= v.mean + 1e-12 and v.mean <= v.ci[1] + 1e-12
        if j in enhanced_cols:
            assert v.delta is not None and v.sig in ("better", "worse", "n.s.")
            assert v.delta["n_utts"] == 12  # every test utterance of the 3 folds, paired
    html = build_report(store, tmp_path / "rep").read_text()
    assert 'class="ci">[' in html and "95% CI" in html
    assert "enhanced − noisy" in html and 'class="sig sig-' in html
