"""IEMOCAP loader on a fixture in the release layout (Session{n}/sentences/wav, dialog/EmoEvaluation)."""
from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest
from click.testing import CliRunner

from ser_bench.cli import cli
from ser_bench.config import make_config
from ser_bench.errors import ConfigError, PluginError
from ser_bench.interfaces import TimeSeries
from ser_bench.plugins import build_registry, make_plugin_manager
from ser_bench.protocols import make_folds
from ser_bench.runner import plan
from ser_bench.testing import check_dataset
from ser_bench_plugins.iemocap import Iemocap, write_fixture


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_fixture(tmp_path_factory.mktemp("iemocap") / "IEMOCAP_full_release")


def test_the_fixture_is_the_release_layout(root):
    assert (root / "Session3" / "sentences" / "wav" / "Ses03F_impro01" / "Ses03F_impro01_M000.wav").is_file()
    text = (root / "Session3" / "dialog" / "EmoEvaluation" / "Ses03F_impro01.txt").read_text()
    assert text.startswith("% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]")
    assert re.search(r"^\[\d+\.\d{4} - \d+\.\d{4}\]\tSes03F_impro01_M000\texc\t\[\d\.\d{4}, \d\.\d{4}, \d\.\d{4}\]$", text, re.M)
    assert "A-E3:\tval " in text and "C-E2:\tNeutral;" in text


def test_default_is_four_classes_with_exc_merged_into_hap(root):
    ds = Iemocap(root=root)
    utts = ds.utterances()
    assert len(utts) == 45
    assert Counter(u.label for u in utts) == {"neu": 10, "hap": 15, "ang": 10, "sad": 10}
    assert next(u for u in utts if u.id == "Ses02F_impro01_M000").label == "hap"  # exc -> hap
    assert len({u.speaker for u in utts}) == 10
    assert next(u for u in utts if u.id == "Ses02F_impro01_M000").speaker == "Ses02M"  # speaker from the utterance


def test_label_options(root):
    assert Counter(u.label for u in Iemocap(root=root, merge_exc=False).utterances()) == {
        "neu": 10, "hap": 5, "ang": 10, "sad": 10}
    full = Iemocap(root=root, label_set="all", merge_exc=False).utterances()
    assert len(full) == 55 and Counter(u.label for u in full) == {
        "neu": 10, "hap": 5, "exc": 10, "ang": 10, "sad": 10, "fru": 5, "sur": 5}
    assert "xxx" not in {u.label for u in Iemocap(root=root, label_set="all").utterances()}
    impro = Iemocap(root=root, dialogs="improvised").utterances()
    scripted = Iemocap(root=root, dialogs="scripted").utterances()
    assert (len(impro), len(scripted)) == (25, 20)
    assert all("_impro" in u.id for u in impro) and all("_script" in u.id for u in scripted)
    assert len(Iemocap(root=root, sessions=[1, 2]).utterances()) == 18


def test_five_session_folds_share_no_speaker(root):
    utts = Iemocap(root=root).utterances()
    folds = make_folds(utts, "auto", "iemocap", False)
    assert [f.name for f in folds] == [f"Session{n}" for n in range(1, 6)]
    spk = {u.id: u.speaker for u in utts}
    for f in folds:
        assert len(f.test) == 9 and set(f.train).isdisjoint(f.test) and len(f.train) + len(f.test) == 45
        assert {spk[i] for i in f.test}.isdisjoint({spk[i] for i in f.train})
        assert {spk[i][:5] for i in f.test} == {f"Ses0{f.name[-1]}"}
    assert len(make_folds(utts, "loso", "iemocap", False)) == 10  # speakers, when asked


def test_dimensional_targets_are_regression_traces(root):
    ds = Iemocap(root=root, target="arousal")
    utts = ds.utterances()
    assert ds.task == "regression" and len(utts) == 60  # every rated utterance, xxx included
    u = next(u for u in utts if u.id == "Ses01F_impro01_F000")
    assert isinstance(u.label, TimeSeries) and u.label.hop_s == 0.04 and len(u.label) == 10  # 0.4 s
    line = next(ln for ln in (root / "Session1/dialog/EmoEvaluation/Ses01F_impro01.txt").read_text().splitlines()
                if "\tSes01F_impro01_F000\t" in ln)
    v, a, d = (float(x) for x in line.split("[")[-1].rstrip("]").split(","))
    assert np.allclose(u.label.values, a)
    assert np.allclose(next(x for x in Iemocap(root=root, target="valence").utterances() if x.id == u.id).label.values, v)
    check_dataset(Iemocap, options={"root": str(root), "target": "dominance"})


def test_conformance(root):
    check_dataset(Iemocap, options={"root": str(root)})


def test_registered_lazily():
    reg = build_registry(make_plugin_manager(entry_points=False))
    assert reg.get("dataset", "iemocap") is Iemocap


def test_wrong_root_names_what_it_expected(tmp_path):
    with pytest.raises(PluginError, match=r"no Session1 folder .*Session\{1\.\.5\}/sentences/wav"):
        Iemocap(root=tmp_path).utterances()
    with pytest.raises(ConfigError, match="unknown class"):
        Iemocap(root=tmp_path, classes=["neu", "exc"]).utterances()  # exc is merged into hap


def test_unlabelled_and_missing_audio_are_bad_entries(tmp_path):
    root = write_fixture(tmp_path / "iem", sessions=5)
    (root / "Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F000.wav").unlink()
    extra = root / "Session2/sentences/wav/Ses02F_impro01/Ses02F_impro01_F099.wav"
    extra.write_bytes((root / "Session2/sentences/wav/Ses02F_impro01/Ses02F_impro01_F001.wav").read_bytes())
    with pytest.raises(PluginError, match=r"2 bad entries(?s:.*)no audio(?s:.*)unlabelled"):
        Iemocap(root=root).utterances()
    assert len(Iemocap(root=root, on_bad_entry="skip").utterances()) == 44


def test_dry_run_prints_five_session_folds(root):
    r = CliRunner().invoke(cli, ["run", "mismatched", "--dataset", "iemocap", "--data-root", f"iemocap={root}", "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "iemocap: 5 folds" in r.output
    assert {m for m in re.findall(r"\bSession\d\b", r.output)} == {f"Session{n}" for n in range(1, 6)}


def test_plan_with_cv_loso_and_emobox_errors(root):
    reg = build_registry(make_plugin_manager(entry_points=False))
    cfg = make_config({"protocol": "clean", "datasets": ["iemocap"], "cv": "loso", "options": {"iemocap": {"root": str(root)}}})
    _, folds, _ = plan(cfg, reg)
    assert len(folds["iemocap"]) == 10
    cfg = make_config({"protocol": "clean", "datasets": ["iemocap"], "cv": "emobox", "options": {"iemocap": {"root": str(root)}}})
    with pytest.raises(ConfigError, match=r"no EmoBox folds: --cv emobox needs the option iemocap\.emobox=PATH"):
        plan(cfg, reg)


def test_inside_a_run_bad_entries_go_to_the_runs_policy(tmp_path):
    root = write_fixture(tmp_path / "iem")
    extra = root / "Session2/sentences/wav/Ses02F_impro01/Ses02F_impro01_F099.wav"
    extra.write_bytes((root / "Session2/sentences/wav/Ses02F_impro01/Ses02F_impro01_F001.wav").read_bytes())
    reg = build_registry(make_plugin_manager(entry_points=False))
    cfg = make_config({"protocol": "clean", "datasets": ["iemocap"], "on_bad_audio": "skip",
                       "options": {"iemocap": {"root": str(root)}}})
    ctx, folds, _ = plan(cfg, reg)  # the loader hands its bad entries over instead of raising
    (entry,) = ctx.bad_entries["iemocap"]
    assert entry.utterance_id == "Ses02F_impro01_F099" and entry.reason.startswith("unlabelled")
    assert entry.note()["kind"] == "skipped" and len(folds["iemocap"]) == 5
