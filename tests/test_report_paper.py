"""The paper's Tables 1-6 (package data) and the paper view: ours beside the paper, with CIs,
differences, recovered gap shares, data notes, and no difference where the runs are not comparable."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ser_bench.report.paper import (PAPER_TABLES, CorpusFacts, gap_share, latest, load_paper_tables, paper_table,
                                  paper_view, render, text)  # fmt: skip

SHARED_TABLES = Path(__file__).resolve().parents[1].parent / "shared" / "paper" / "tables.json"
EMODB6 = ["anger", "boredom", "fear", "joy", "sadness", "neutral"]
FACTS6 = {"emodb": CorpusFacts(classes=EMODB6, n_utterances=489, n_speakers=10)}
PAPER = load_paper_tables()


def by_label(tables, label, dataset=None):
    return [t for t in tables if t.label == label and (dataset is None or t.dataset == dataset)]


def row(t, features, snr, condition):
    (r,) = [r for r in t.rows if (r.features, r.snr, r.condition) == (features, snr, condition)]
    return r


# ----------------------------------------------------------------------------- the data file


def test_tables_carry_the_papers_real_numbering():
    tables = PAPER["tables"]
    assert [t["label"] for t in tables] == [f"Table {i}" for i in range(1, 7)]
    kinds = {t["id"]: (t["kind"], t.get("protocol")) for t in tables}
    assert kinds == {"table1": ("corpora", None), "table2": ("means", "matched"), "table3": ("means", "mismatched"),
                     "table4": ("per_snr", "mismatched"), "table5": ("per_snr", "mismatched"),
                     "table6": ("multi_snr", "multi-snr")}
    assert set(paper_table(PAPER, "table2")["values"]) == {"EMO-DB", "eNTERFACE"}
    assert set(paper_table(PAPER, "table3")["values"]) == {"RECOLA", "EMO-DB", "eNTERFACE"}
    assert set(paper_table(PAPER, "table4")["values"]) == {"RECOLA"}
    assert paper_table(PAPER, "table4")["metric"] == "ccc" and paper_table(PAPER, "table5")["metric"] == "uar"
    t1 = paper_table(PAPER, "table1")["corpora"]
    assert t1["EMO-DB"]["utterances"] == 465 and t1["eNTERFACE"]["subjects_m_f"] == [34, 8]


def test_spot_values_of_every_table():
    v = {t["id"]: t.get("values") for t in PAPER["tables"]}
    assert v["table2"]["EMO-DB"]["ComParE"] == {"clean": 72.34, "noisy": 52.23, "enhanced": 58.06}
    assert v["table2"]["eNTERFACE"]["eGeMAPS"]["enhanced"] == 37.19
    assert v["table3"]["RECOLA"]["raw signal (end-to-end)"] == {"clean": 0.4781, "noisy": 0.4066, "enhanced": 0.4337}
    assert v["table4"]["RECOLA"]["raw signal (end-to-end)"]["noisy"]["-5"] == 0.2167
    assert v["table5"]["EMO-DB"]["eGeMAPS"]["enhanced"]["0"] == 45.07
    assert v["table5"]["eNTERFACE"]["ComParE"]["noisy"]["20"] == 53.6
    rows = v["table6"]["RECOLA"]["raw signal (end-to-end)"]["rows"]
    assert len(rows) == 9 and rows[6] == {"train_snr": 15, "test_snr": 5, "noisy": 0.4545, "enhanced": 0.504}


def test_table3_is_the_mean_of_tables_4_and_5_and_table6_average_its_rows():
    t3 = paper_table(PAPER, "table3")["values"]
    for corpus, src in (("RECOLA", "table4"), ("EMO-DB", "table5"), ("eNTERFACE", "table5")):
        per = paper_table(PAPER, src)["values"][corpus]
        for features, vals in per.items():
            for cond in ("noisy", "enhanced"):
                assert len(vals[cond]) == 6
                tol = 1e-4 if corpus == "RECOLA" else 0.01  # the paper rounds to 2 (UAR) or 4 (CCC) decimals
                assert np.mean(list(vals[cond].values())) == pytest.approx(t3[corpus][features][cond], abs=tol)
            assert vals["clean"] == t3[corpus][features]["clean"]
    t6 = paper_table(PAPER, "table6")["values"]["RECOLA"]["raw signal (end-to-end)"]
    for cond in ("noisy", "enhanced"):
        assert np.mean([r[cond] for r in t6["rows"]]) == pytest.approx(t6["average"][cond], abs=1e-4)


@pytest.mark.skipif(not SHARED_TABLES.is_file(), reason="../shared/paper/tables.json is not on this machine")
def test_every_number_matches_the_shared_transcription():
    src = json.loads(SHARED_TABLES.read_text())
    v = {t["id"]: t.get("values") for t in PAPER["tables"]}
    assert paper_table(PAPER, "table1")["corpora"] == src["table1_corpora"]
    for corpus in ("EMO-DB", "eNTERFACE"):
        assert v["table2"][corpus] == src["table2_matched_mean_over_snrs"][corpus]
        assert v["table3"][corpus] == src["table3_mismatched_mean_over_snrs"][corpus]
        for f, vals in src["table5_mismatched_per_snr"][corpus].items():
            assert {k: v["table5"][corpus][f][k] for k in ("noisy", "enhanced")} == vals
    assert v["table3"]["RECOLA"] == src["table3_mismatched_mean_over_snrs"]["RECOLA"]
    assert v["table4"]["RECOLA"]["raw signal (end-to-end)"] == src["table4_recola_mismatched_per_snr"]
    t6 = v["table6"]["RECOLA"]["raw signal (end-to-end)"]
    assert t6["rows"] == src["table6_recola_multi_snr"]["rows"]
    assert t6["average"] == src["table6_recola_multi_snr"]["average"]
    assert PAPER["source"]["snrs_db"] == src["snrs_db"]


def test_the_data_ships_inside_the_package():
    import ser_bench

    assert PAPER_TABLES.is_relative_to(Path(ser_bench.__file__).parent)
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert re.search(r'ser_bench = \[[^\]]*"data/\*"', pyproject)


# ----------------------------------------------------------------------------- constructed results

BASE = dict(kind="ser", metric="uar")


def mismatched(dataset="emodb", snrs=(0.0, 20.0), enhancers=("rescnn",), protocol="mismatched", run_id=1):
    """Two folds; clean 0.70 (ComParE) / 0.58 (eGeMAPS); noisy 0.30 + snr/100; enhanced +0.10 (+0.01 per enhancer)."""
    rows = []
    for model, clean in (("svm-egemaps", 0.58), ("svm-compare", 0.70)):
        for fold, off in (("spk:03", -0.02), ("spk:08", 0.02)):
            rows.append(dict(BASE, run_id=run_id, dataset=dataset, ser_model=model, enhancer="none", noise="-",
                             protocol=protocol, train_condition="clean", train_snr=None, test_condition="clean",
                             test_snr=None, fold=fold, value=clean + off))
            for s in snrs:
                tc = "clean" if protocol == "mismatched" else "noisy"
                rows.append(dict(BASE, run_id=run_id, dataset=dataset, ser_model=model, enhancer="none", noise="folder",
                                 protocol=protocol, train_condition=tc, train_snr=None if tc == "clean" else s,
                                 test_condition="noisy", test_snr=s, fold=fold, value=0.30 + s / 100))
                for i, e in enumerate(enhancers):
                    te = "clean" if protocol == "mismatched" else "enhanced"
                    rows.append(dict(BASE, run_id=run_id, dataset=dataset, ser_model=model, enhancer=e, noise="folder",
                                     protocol=protocol, train_condition=te, train_snr=None if te == "clean" else s,
                                     test_condition="enhanced", test_snr=s, fold=fold, value=0.40 + i / 100 + s / 100))
    return pd.DataFrame(rows)


def test_table5_rows_beside_the_paper_with_differences_and_gap_shares():
    runs = pd.DataFrame([{"id": 1, "wall_s": 123.4, "status": "done", "config_json": "{}"}])
    (t,) = by_label(paper_view(mismatched(), runs, facts=FACTS6), "Table 5")
    assert (t.corpus, t.dataset, t.noise, t.metric, t.comparable) == ("EMO-DB", "emodb", "folder", "uar", True)
    clean = row(t, "eGeMAPS", "", "clean")
    assert (clean.paper, clean.ours.value) == (61.04, pytest.approx(58.0))
    assert clean.delta == pytest.approx(58.0 - 61.04)
    noisy = row(t, "eGeMAPS", "0 dB", "noisy")
    assert (noisy.paper, noisy.ours.value, noisy.delta) == (19.82, pytest.approx(30.0), pytest.approx(30.0 - 19.82))
    enh = row(t, "eGeMAPS", "0 dB", "enhanced (rescnn)")
    assert enh.paper == 45.07 and enh.ours.value == pytest.approx(40.0)
    # share of the clean - noisy gap recovered, the paper's and ours
    assert enh.gap_paper == pytest.approx((45.07 - 19.82) / (61.04 - 19.82))
    assert enh.gap_ours == pytest.approx((40.0 - 30.0) / (58.0 - 30.0))
    assert t.runs == [{"run_id": 1, "wall_s": 123.4, "status": "done"}]
    html = render([t])
    assert "<td class=\"num gap\">+61 %</td>" in html and "<td class=\"num gap\">+36 %</td>" in html


def test_gap_share_edge_cases():
    assert gap_share(60.0, 30.0, 45.0) == pytest.approx(0.5)
    assert gap_share(60.0, 30.0, 20.0) == pytest.approx(-1 / 3)
    assert gap_share(0.47, 0.50, 0.49) is None  # noisy above clean: no gap to recover
    assert gap_share(60.0, 59.0, 70.0, min_gap=2.0) is None
    assert gap_share(None, 30.0, 40.0) is None


def test_table3_mean_over_our_snrs_is_recomputed_from_table5():
    (t,) = by_label(paper_view(mismatched(), facts=FACTS6), "Table 3")
    noisy = row(t, "ComParE", "mean of 0, 20 dB", "noisy")
    assert noisy.paper == pytest.approx((18.05 + 40.27) / 2)
    assert noisy.ours.value == pytest.approx(40.0) and noisy.delta == pytest.approx(40.0 - 29.16)
    enh = row(t, "ComParE", "mean of 0, 20 dB", "enhanced (rescnn)")
    assert enh.paper == pytest.approx((26.85 + 40.39) / 2)
    assert any("SNRs: ours 0, 20 dB" in n for n in t.notes)


def test_table2_means_over_other_snrs_are_not_differenced_but_all_six_are():
    (t,) = by_label(paper_view(mismatched(protocol="matched"), facts=FACTS6), "Table 2")
    noisy = row(t, "eGeMAPS", "mean", "noisy")
    assert noisy.paper == 46.42 and noisy.ours.value == pytest.approx(40.0) and noisy.delta is None
    assert row(t, "eGeMAPS", "", "clean").delta == pytest.approx(58.0 - 61.04)  # clean needs no SNR
    assert any("six SNRs" in w for w in t.not_differenced)
    full = mismatched(protocol="matched", snrs=(-5.0, 0.0, 5.0, 10.0, 15.0, 20.0))
    (t,) = by_label(paper_view(full, facts=FACTS6), "Table 2")
    noisy = row(t, "eGeMAPS", "mean", "noisy")
    assert noisy.ours.value == pytest.approx(30.0 + 7.5) and noisy.delta == pytest.approx(37.5 - 46.42)
    assert not t.not_differenced


def test_runs_with_other_classes_are_not_differenced_and_say_why():
    facts = {"emodb": CorpusFacts(classes=["anger", "neutral"], n_utterances=127, n_speakers=10)}
    tables = paper_view(mismatched(), facts=facts)
    assert {t.label for t in tables} == {"Table 3", "Table 5"}
    for t in tables:
        assert not t.comparable and all(r.delta is None for r in t.rows)
        assert any("ours has 2 classes (anger, neutral)" in w and "6" in w for w in t.not_differenced)
        assert row(t, "ComParE", "", "clean").paper == 72.34  # the paper's number is still shown beside ours
    html = render(tables)
    assert "Not differenced against the paper" in html
    assert "<td class=\"num delta\"></td>" in html and "<td class=\"num delta\">-2.3" not in html
    # the recovered share is a relative measure: still shown
    assert row(by_label(tables, "Table 5")[0], "eGeMAPS", "0 dB", "enhanced (rescnn)").gap_ours is not None


def test_ravdess_stands_in_for_enterface_without_differences():
    facts = {"ravdess": CorpusFacts(classes=["anger", "disgust", "fear", "happiness", "sadness", "surprise"],
                                    n_utterances=1056, n_speakers=24)}
    (t,) = by_label(paper_view(mismatched(dataset="ravdess"), facts=facts), "Table 5")
    assert (t.corpus, t.dataset) == ("eNTERFACE", "ravdess")
    assert row(t, "ComParE", "20 dB", "noisy").paper == 53.6
    assert all(r.delta is None for r in t.rows)
    assert any("different corpus standing in for eNTERFACE" in w for w in t.not_differenced)
    assert any(n.startswith("RAVDESS stands in for eNTERFACE'05") for n in t.notes)


def test_data_notes_and_no_notes_about_how_the_package_was_built():
    notes = {"emodb": ["emodb: possibly degraded copy: 489 of 489 files last exactly 2.00 s"]}
    tables = paper_view(mismatched(enhancers=("rescnn", "wiener")), dataset_notes=notes, facts=FACTS6,
                        enhancer_descriptions={"wiener": "Wiener filter"})
    (t,) = by_label(tables, "Table 5")
    assert "emodb: possibly degraded copy: 489 of 489 files last exactly 2.00 s" in t.notes
    assert any(n.startswith("Noise: ours mixes clips of the 'folder' noise source") and "AudioSet" in n for n in t.notes)
    assert any(n.startswith("Enhancer rescnn") and "paper's" in n for n in t.notes)
    assert any(n.startswith("Enhancer wiener (Wiener filter): not the paper's") for n in t.notes)
    assert any("ours 489 utterances from 10 speakers" in n and "465" in n for n in t.notes)
    # the wiener row is set against the paper's (ResNet) enhanced number as a reference
    assert row(t, "eGeMAPS", "0 dB", "enhanced (wiener)").delta == pytest.approx(41.0 - 45.07)
    html = re.sub(r"<svg.*?</svg>", "", render(tables), flags=re.S).lower()
    for word in ("issue", "transcri", "reconstruct", "engineer", "branch", "todo", "not verified", "project"):
        assert word not in html, word


def test_cis_from_stored_predictions(tmp_path):
    """Ours carries a 95 % bootstrap interval around the value; the means over SNRs too."""
    from ser_bench.db import Store

    store = Store(str(tmp_path / "r.db"))
    run_id = store.start_run(config_json=json.dumps({"datasets": ["emodb"], "options": {}}), config_hash="h",
                             protocol="mismatched", name=None, code_version="t", plugins={}, env={}, seed=0,
                             snr_definition="t", n_cells=1)  # fmt: skip
    rng = np.random.default_rng(0)
    coords = dict(dataset="emodb", ser_model="svm-egemaps", protocol="mismatched", train_condition="clean",
                  train_snr=None)  # fmt: skip
    accuracy = {("clean", None): 0.8, ("noisy", 0.0): 0.3, ("noisy", 20.0): 0.5, ("enhanced", 0.0): 0.5,
                ("enhanced", 20.0): 0.6}  # fmt: skip
    for (cond, snr), acc in accuracy.items():
        for spk in ("03", "08", "09"):
            y = [EMODB6[i % 6] for i in range(80)]
            pred = [t if rng.random() < acc else EMODB6[(EMODB6.index(t) + 1) % 6] for t in y]
            preds = [[f"{spk}_{i}", t, p] for i, (t, p) in enumerate(zip(y, pred))]
            uar = np.mean([np.mean([p == t for t, p in zip(y, pred) if t == c]) for c in EMODB6])
            store.record_cell(run_id, f"{cond}{snr}{spk}", dict(coords, enhancer="rescnn" if cond == "enhanced" else "none",
                              noise="-" if cond == "clean" else "folder", test_condition=cond, test_snr=snr,
                              fold=f"spk:{spk}"), status="done", metrics={"uar": float(uar)}, predictions=preds)
    store.finish_run(run_id, "done", wall_s=9.0)
    from ser_bench.report.paper import tables_from_store

    tables = tables_from_store(store, figures=True)
    (t5,) = by_label(tables, "Table 5")
    for r in t5.rows:
        assert r.ours.lo is not None and r.ours.lo <= r.ours.value <= r.ours.hi, r
        assert r.ours.hi - r.ours.lo < 20
    (t3,) = by_label(tables, "Table 3")
    m = row(t3, "eGeMAPS", "mean of 0, 20 dB", "noisy")
    assert m.ours.lo < m.ours.value < m.ours.hi
    # the stored predictions say which classes and how many utterances/speakers were used
    assert t5.comparable and any("ours 240 utterances from 3 speakers" in n for n in t5.notes)
    assert len(t5.figures) == 1 and "(paper)" in t5.figures[0] and "(ours)" in t5.figures[0]
    assert "UAR (%)" in t5.figures[0] and "SNR (dB)" in t5.figures[0]
    html = render(tables)
    assert re.search(r'<td class="num ci">\[\d+\.\d, \d+\.\d\]</td>', html)


def recola(multi=True, n_test=9, seconds=300.0):
    rows = []
    add = lambda **kw: rows.append(dict(kind="ser", metric="ccc", run_id=1, dataset="recola",  # noqa: E731
                                        ser_model="e2e-arousal", fold="partition", **kw))
    add(enhancer="none", noise="-", protocol="mismatched", train_condition="clean", train_snr=None,
        test_condition="clean", test_snr=None, value=0.50)
    for s in (-5.0, 0.0, 5.0, 10.0, 15.0, 20.0):
        add(enhancer="none", noise="folder", protocol="mismatched", train_condition="clean", train_snr=None,
            test_condition="noisy", test_snr=s, value=0.20 + s / 100)
        add(enhancer="rescnn", noise="folder", protocol="mismatched", train_condition="clean", train_snr=None,
            test_condition="enhanced", test_snr=s, value=0.30 + s / 100)
    if multi:
        for a in (5.0, 10.0, 15.0):
            for b in (5.0, 10.0, 15.0):
                add(enhancer="none", noise="folder", protocol="multi-snr", train_condition="noisy", train_snr=a,
                    test_condition="noisy", test_snr=b, value=0.30 + a / 100)
                add(enhancer="rescnn", noise="folder", protocol="multi-snr", train_condition="enhanced",
                    train_snr=a, test_condition="enhanced", test_snr=b, value=0.32 + a / 100)
    return pd.DataFrame(rows), {"recola": CorpusFacts(test_recordings=n_test, test_seconds=n_test * seconds)}


def test_recola_tables_3_4_and_6():
    df, facts = recola()
    tables = paper_view(df, facts=facts, figures=True)
    assert [t.label for t in tables] == ["Table 3", "Table 4", "Table 6"]
    t3, t4, t6 = tables
    assert row(t3, "raw signal (end-to-end)", "mean", "noisy").paper == 0.4066
    assert row(t3, "raw signal (end-to-end)", "mean", "noisy").delta == pytest.approx(0.275 - 0.4066)
    r = row(t4, "raw signal (end-to-end)", "-5 dB", "enhanced (rescnn)")
    assert (r.paper, r.ours.value) == (0.4022, pytest.approx(0.25))
    assert r.gap_paper == pytest.approx((0.4022 - 0.2167) / (0.4781 - 0.2167))
    # the paper's noisy CCC at 20 dB beats its clean one: no gap, no share
    assert row(t4, "raw signal (end-to-end)", "20 dB", "enhanced (rescnn)").gap_paper is None
    m = row(t6, "raw signal (end-to-end)", "train 15 → test 5 dB", "enhanced (rescnn)")
    assert (m.paper, m.ours.value) == (0.504, pytest.approx(0.47))
    avg = row(t6, "raw signal (end-to-end)", "average", "noisy")
    assert avg.paper == 0.4571 and avg.ours.value == pytest.approx(0.40)
    assert row(t6, "raw signal (end-to-end)", "", "clean").paper == 0.4781
    assert t6.figures and "test SNR (dB)" in t6.figures[0] and "CCC" in t6.figures[0]
    assert not any(n.startswith("SNRs:") for n in t6.notes)  # Table 6's grid is 5, 10, 15 dB, as ours
    assert not any(n.startswith("SNRs:") for n in t4.notes)
    out = text(tables)
    assert "Table 6 · RECOLA" in out and "train 15 → test 5 dB" in out and "0.504" in out


def test_a_small_subset_of_a_corpus_is_not_differenced():
    facts = {"emodb": CorpusFacts(classes=EMODB6, n_utterances=18, n_speakers=3)}
    for t in paper_view(mismatched(), facts=facts):
        assert all(r.delta is None for r in t.rows)
        assert any("ours has 18 utterances from 3 speakers, the paper's EMO-DB 465 from 10" in w
                   for w in t.not_differenced)


def test_a_small_recola_layout_corpus_is_not_differenced():
    df, facts = recola(multi=False, n_test=2, seconds=60.0)
    for t in paper_view(df, facts=facts):
        assert all(r.delta is None for r in t.rows)
        assert any("2 recording(s), 2.0 min" in w and "9 recordings" in w for w in t.not_differenced)


def test_latest_run_wins_per_cell_and_unrelated_data_gives_no_table():
    df = pd.concat([mismatched(run_id=1), mismatched(run_id=2).assign(value=lambda d: d.value + 0.1)])
    assert len(latest(df)) == len(mismatched())
    (t,) = by_label(paper_view(df, facts=FACTS6), "Table 5")
    assert row(t, "eGeMAPS", "", "clean").ours.value == pytest.approx(68.0)
    assert [r["run_id"] for r in t.runs] == [2]
    assert paper_view(mismatched(dataset="synthetic")) == []
    assert paper_view(pd.DataFrame()) == []


def test_render_escapes():
    df = mismatched()
    df["enhancer"] = df["enhancer"].replace("rescnn", "<b>x</b>")
    html = render(paper_view(df, facts=FACTS6))
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html
    assert "10.21437/Interspeech.2019-1811" in html


def test_paper_models_and_datasets_are_registered():
    from ser_bench.plugins import build_registry, make_plugin_manager

    reg = build_registry(make_plugin_manager(entry_points=False))
    assert set(PAPER["datasets"]) <= set(reg.names("dataset"))
    assert set(PAPER["ser_models"]) <= set(reg.names("ser_model"))
    assert set(PAPER["comparable_enhancers"]) <= set(reg.names("enhancer"))


def test_bench_report_includes_the_paper_view(tmp_path):
    from ser_bench.db import Store
    from ser_bench.report.build import build_report

    store = Store(str(tmp_path / "r.db"))
    run_id = store.start_run(config_json=json.dumps({"datasets": ["emodb"], "options": {}}), config_hash="h1",
                             protocol="mismatched", name=None, code_version="test", plugins={}, env={}, seed=0,
                             snr_definition="test", n_cells=4)  # fmt: skip
    coords = dict(dataset="emodb", ser_model="svm-compare", enhancer="none", protocol="mismatched",
                  train_condition="clean", train_snr=None)  # fmt: skip
    for i, fold in enumerate(("spk:03", "spk:08")):
        store.record_cell(run_id, f"c{i}", dict(coords, noise="-", test_condition="clean", test_snr=None, fold=fold),
                          status="done", metrics={"uar": 0.70})
        store.record_cell(run_id, f"n{i}", dict(coords, noise="folder", test_condition="noisy", test_snr=0.0, fold=fold),
                          status="done", metrics={"uar": 0.40})
    store.finish_run(run_id, "done", wall_s=42.0)
    html = build_report(store, tmp_path / "reports").read_text()
    assert "The paper&#39;s tables beside ours" in html or "The paper's tables beside ours" in html
    assert '<td class="num ours">70.0</td>' in html and '<td class="num paper">72.34</td>' in html
    assert '<td class="num delta">-2.3</td>' in html and "42 s wall" in html
    assert '<td class="num paper">18.05</td>' in html  # Table 5, ComParE, 0 dB noisy (18.05)


def test_no_paper_section_without_paper_corpora(tmp_path):
    from ser_bench.db import Store
    from ser_bench.report.paper import section

    assert section(Store(str(tmp_path / "empty.db"))) is None
