"""Report tables a reviewer can trust: deterministic intervals, honest bolding, true counts and
warnings about folds that cannot carry the statistic (issue 11)."""
from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from ser_bench import Dataset, Utterance, hookimpl
from ser_bench.db import Store
from ser_bench.metrics import uar
from ser_bench.plugins import build_registry, make_plugin_manager
from ser_bench.report.build import build_report, collect
from ser_bench.runner import run

from conftest import FakePlugin, tone

TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?( UTC)?")


class Tds(HTMLParser):
    """Leaderboard cells: (row label, classes, value text)."""

    def __init__(self):
        super().__init__()
        self.rows, self._row, self._td = [], None, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr":
            self._row = []
        elif tag == "td" and self._row is not None:
            self._td = [a.get("class") or "", ""]

    def handle_endtag(self, tag):
        if tag == "td" and self._td is not None:
            self._row.append(self._td)
            self._td = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._td is not None:
            self._td[1] += data


def _board_rows(html: str) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """(model, enhancer) -> [(class, "value ±sd [marker] [lo, hi]")] of the first leaderboard's value cells."""
    p = Tds()
    p.feed(html.split("<h2>Runs</h2>")[0])
    return {(r[0][1], r[1][1]): [(c, " ".join(t.split())) for c, t in r[2:]] for r in p.rows if len(r) > 2}


# ----------------------------------------------------------------------------- point 7: determinism


def _results() -> list[dict]:
    """Imperfect per-utterance results of one model, clean / noisy / enhanced, over 3 folds."""
    import numpy as np

    rng = np.random.default_rng(5)
    out = []
    for fold in ("spk:a", "spk:b", "spk:c"):
        truth = [["x", "y", "z"][i % 3] for i in range(12)]
        for enh, cond, snr, p_ok in (("none", "clean", None, 0.8), ("none", "noisy", 0.0, 0.5),
                                     ("A", "enhanced", 0.0, 0.6)):
            pred = [t if rng.random() < p_ok else "x" for t in truth]
            coords = dict(dataset="d", ser_model="m", enhancer=enh, noise="-" if cond == "clean" else "nz",
                          protocol="mismatched", train_condition="clean", train_snr=None, test_condition=cond,
                          test_snr=snr, fold=fold)
            out.append(dict(key=f"{fold}/{cond}", coords=coords, metrics={"uar": uar(truth, pred)},
                            predictions=[[f"{fold}-{i}", t, q] for i, (t, q) in enumerate(zip(truth, pred))]))
    return out


def _registry(path: Path, cells: list[dict]) -> Store:
    store = Store(str(path))
    rid = store.start_run(config_json="{}", config_hash="h", protocol="mismatched", name=None, code_version="t",
                          plugins={}, env={}, seed=0, snr_definition="s", n_cells=len(cells))
    for c in cells:
        store.record_cell(rid, c["key"], c["coords"], status="done", metrics=c["metrics"], n_test=12,
                          predictions=c["predictions"])
    store.finish_run(rid, "done", wall_s=3.0)
    return store


def test_same_results_stored_in_another_order_give_the_same_report(tmp_path):
    db = tmp_path / "same.db"
    cells = _results()
    a = _registry(db, cells)
    html_a = build_report(a, tmp_path / "a").read_text()
    ids_a = dict(zip(a.cells_frame().cell_key, a.cells_frame().id))
    a.engine.dispose()
    for p in tmp_path.glob("same.db*"):
        p.unlink()
    b = _registry(db, cells[::-1])  # the same path (the page names its database), the reverse order
    assert dict(zip(b.cells_frame().cell_key, b.cells_frame().id)) != ids_a  # every row id differs
    html_b = build_report(b, tmp_path / "b").read_text()
    assert re.search(r"95% CI \[\d+\.\d, \d+\.\d\]", html_a) and "[100.0, 100.0]" not in html_a
    assert TIMESTAMP.sub("T", html_a) == TIMESTAMP.sub("T", html_b)


def test_bootstrap_ci_does_not_depend_on_the_order_of_folds():
    from ser_bench.report.ci import bootstrap_ci, paired_delta_ci, parse_detail

    details = [parse_detail(c["coords"]["fold"], json.dumps(c["predictions"])) for c in _results()
               if c["coords"]["test_condition"] == "noisy"]
    enhanced = [parse_detail(c["coords"]["fold"], json.dumps(c["predictions"])) for c in _results()
                if c["coords"]["test_condition"] == "enhanced"]
    assert bootstrap_ci(details) == bootstrap_ci(details[::-1])
    assert paired_delta_ci(details, enhanced) == paired_delta_ci(details[::-1], enhanced[::-1])


# ----------------------------------------------------------------------------- point 9: bolding, counts

CELL = dict(dataset="d", noise="nz", protocol="mismatched", train_condition="clean", train_snr=None, fold="f1")


def _cell(store, rid, key, *, model, enh, cond, snr, y_true, y_pred):
    coords = dict(CELL, ser_model=model, enhancer=enh, test_condition=cond, test_snr=snr,
                  noise="-" if cond == "clean" else "nz")
    store.record_cell(rid, key, coords, status="done", metrics={"uar": uar(y_true, y_pred)}, n_test=len(y_true),
                      predictions=[[f"u{i}", t, p] for i, (t, p) in enumerate(zip(y_true, y_pred))])


def test_best_per_column_skips_repeats_and_significantly_worse_values():
    store = Store()
    rid = store.start_run(config_json="{}", config_hash="h", protocol="mismatched", name=None, code_version="t",
                          plugins={}, env={}, seed=0, snr_definition="s", n_cells=8)
    truth = ["a", "b"] * 40
    right = list(truth)
    wrong = ["b" if t == "a" else "a" for t in truth]
    for model, clean_ok in (("m1", 80), ("m2", 60)):
        _cell(store, rid, f"{model}c", model=model, enh="none", cond="clean", snr=None, y_true=truth,
              y_pred=right[:clean_ok] + wrong[clean_ok:])
        _cell(store, rid, f"{model}n", model=model, enh="none", cond="noisy", snr=0.0, y_true=truth,
              y_pred=right[: clean_ok - 10] + wrong[clean_ok - 10 :])
        # both enhancers are far below noisy on the same utterances: significantly worse
        _cell(store, rid, f"{model}A", model=model, enh="A", cond="enhanced", snr=0.0, y_true=truth,
              y_pred=right[:30] + wrong[30:])
        _cell(store, rid, f"{model}B", model=model, enh="B", cond="enhanced", snr=0.0, y_true=truth,
              y_pred=right[:20] + wrong[20:])
    store.finish_run(rid, "done")
    rows = _board_rows(build_report(store, Path("rep")).read_text())
    # columns: clean, 0 dB noisy, 0 dB enhanced
    value = lambda cell: float(cell[1].split()[0])  # noqa: E731
    assert rows[("m1", "none")][0][0] == "best" and value(rows[("m1", "none")][0]) == 100.0
    assert rows[("m1", "none")][1][0] == "best" and value(rows[("m1", "none")][1]) == 87.5
    for enh in ("A", "B"):  # the model's clean / noisy values repeated: grey, never bold again
        assert rows[("m1", enh)][0][0] == "repeat" and value(rows[("m1", enh)][0]) == 100.0
        assert rows[("m1", enh)][1][0] == "repeat"
        assert rows[("m2", enh)][0][0] == "repeat"
    enhanced = {k: v[2] for k, v in rows.items() if k[1] != "none"}
    assert max(value(c) for c in enhanced.values()) == 37.5 and "▼" in enhanced[("m1", "A")][1]
    assert all(c != "best" for c, _ in enhanced.values())  # the best enhanced value is significantly worse


def test_a_run_whose_cells_another_run_stored_counts_them(registry, tiny_config, tmp_path):
    store = Store()
    run(tiny_config("mismatched", snrs=[0.0]), store=store, registry=registry, progress=False)
    s = run(tiny_config("mismatched", snrs=[0.0, 20.0]), store=store, registry=registry, progress=False)
    assert s.n_skipped == 9 and s.n_done == 6
    r = store.runs_frame().set_index("id").loc[s.run_id]
    assert (r.status, r.n_done, r.n_cells) == ("done", 15, 15)
    html = build_report(store, tmp_path / "rep").read_text()
    assert "<td>15 / 15</td>" in html


def test_a_rerun_with_other_settings_supersedes_rather_than_averages(registry, tiny_config, tmp_path):
    """The same cells computed again with other settings (here another seed; in practice a
    retrained checkpoint under the same enhancer name) replace the older results in the report,
    which says so, instead of pooling two configurations into one mean."""
    store = Store()
    first = run(tiny_config("mismatched", snrs=[0.0]), store=store, registry=registry, progress=False)
    second = run(tiny_config("mismatched", snrs=[0.0], seed=1), store=store, registry=registry, progress=False)
    assert second.n_skipped == 0  # other settings: other cells
    every = store.results_frame(superseded=True)
    current = store.results_frame()
    assert len(every) == 2 * len(current) and set(current.run_id) == {second.run_id}
    assert current.attrs["superseded"] == {"results": len(current), "runs": [first.run_id]}
    folds = {row["label"][1]: row["cells"][0].n_folds for row in collect(store)["tables"][0].rows}
    assert folds["none"] == current[(current.test_condition == "clean") & (current.metric == "uar")].shape[0]
    html = build_report(store, tmp_path / "rep").read_text()
    assert f"older result(s) of run(s) {first.run_id} are not shown" in html


# ----------------------------------------------------------------------------- point 8: tiny / single-class folds


class OneEmotionPerSpeaker(Dataset):
    """6 speakers, each speaking one emotion (3 low, 3 high), 3 utterances each."""

    name = "one-emotion"

    def load_utterances(self):
        out = []
        for s in range(6):
            label, f = (("low", 220.0), ("high", 880.0))[s % 2]
            for i in range(3):
                out.append(Utterance(id=f"s{s}_{i}", speaker=f"s{s}", label=label,
                                     loader=lambda f=f, s=s, i=i: tone(f * (1 + 0.02 * s), seed=10 * s + i),
                                     fingerprint=f"one:{s}:{i}"))
        return out


class OnePlugin:
    @hookimpl
    def register_datasets(self, register):
        register("one-emotion", OneEmotionPerSpeaker)


@pytest.fixture
def one_registry():
    return build_registry(make_plugin_manager(entry_points=False, extra=[FakePlugin(), OnePlugin()]))


def test_single_class_folds_are_warned_and_group_kfold_fixes_them(one_registry, tiny_config, tmp_path):
    store = Store()
    run(tiny_config("clean", datasets=["one-emotion"]), store=store, registry=one_registry, progress=False)
    (t,) = collect(store)["tables"]
    assert any("6 of 6 test folds hold a single emotion" in n and "--cv group-kfold" in n for n in t.notes), t.notes
    assert any(n.startswith("Few test utterances per fold (3–3 in 6 folds") for n in t.notes), t.notes
    html = build_report(store, tmp_path / "rep").read_text()
    assert "hold a single emotion" in html and "not the spread between folds" in html

    store2 = Store(str(tmp_path / "g.db"))
    cfg = tiny_config("clean", datasets=["one-emotion"], cv="group-kfold", cv_folds=3)
    run(cfg, store=store2, registry=one_registry, progress=False)
    assert json.loads(store2.runs_frame().iloc[0].config_json)[["cv", "cv_folds"][0]] == "group-kfold"
    assert json.loads(store2.runs_frame().iloc[0].config_json)["cv_folds"] == 3
    cells = store2.cells_frame()
    assert sorted(cells.fold) == ["group1of3", "group2of3", "group3of3"] and set(cells.n_test) == {6}
    (t2,) = collect(store2)["tables"]
    assert not any("single emotion" in n for n in t2.notes), t2.notes


def test_interval_hover_says_what_it_resamples(registry, tiny_config, tmp_path):
    store = Store()
    run(tiny_config("clean"), store=store, registry=registry, progress=False)
    html = build_report(store, tmp_path / "rep").read_text()
    assert "bootstrap over the 12 test utterances, resampled within each fold" in html
    assert "Few test utterances per fold (4–4 in 3 folds, 12 in all)" in html
