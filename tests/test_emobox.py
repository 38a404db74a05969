"""EmoBox's published folds (option ``emobox``, ``--cv emobox``) on a fixture of its jsonl files."""
from __future__ import annotations

import json
from collections import Counter

import pytest

from ser_bench.config import make_config
from ser_bench.emobox import read_emobox_folds
from ser_bench.errors import ConfigError, PluginError
from ser_bench.plugins import build_registry, make_plugin_manager
from ser_bench.protocols import make_folds
from ser_bench.runner import plan
from ser_bench_plugins.corpus_utils import write_fixture_tone
from ser_bench_plugins.emodb import EmoDB
from ser_bench_plugins.iemocap import Iemocap, write_fixture
from ser_bench_plugins.savee import Savee

EMODB_RAW = {"W": "anger", "L": "boredem", "E": "disgust", "A": "fear", "F": "happy", "T": "sad", "N": "Neutral"}
EMODB_SPEAKERS = ("03", "08", "09", "10", "11")


def _line(corpus: str, wav: str, emo: str) -> str:
    key = f"{corpus}-{wav.rsplit('/', 1)[-1][:-4]}"
    return json.dumps({"key": key, "dataset": corpus, "wav": wav, "type": "raw", "sample_rate": 16000,
                       "num_frame": 4800.0, "task": "category", "length": 0.3, "emo": emo, "channel": 1})


@pytest.fixture(scope="module")
def emodb(tmp_path_factory):
    """An EMO-DB copy (5 speakers x 7 emotions) and EmoBox's data/emodb/ for it: 5 folds (one
    speaker each), fold 1 and 3 in both spellings, fold 2 only as fold2, its label_map.json
    with 'boredem'; fold 5 lists a file the copy lacks."""
    base = tmp_path_factory.mktemp("emobox")
    root = base / "emodb"
    seed = 0
    for spk in EMODB_SPEAKERS:
        for letter in EMODB_RAW:
            seed += 1
            write_fixture_tone(root / "wav" / f"{spk}a01{letter}a.wav", seed, seconds=0.3)
    data = base / "EmoBox" / "data" / "emodb"
    data.mkdir(parents=True)
    (data / "label_map.json").write_text(json.dumps({
        "anger": "Angry", "boredem": "Boredom", "disgust": "Disgust", "fear": "Fear", "happy": "Happy",
        "Neutral": "Neutral", "sad": "Sad"}, indent=4))
    for k, spk in enumerate(EMODB_SPEAKERS, 1):
        test = [_line("emodb", f"downloads/emodb/wav/{spk}a01{letter}a.wav", emo) for letter, emo in EMODB_RAW.items()]
        if k == 5:
            test.append(_line("emodb", "downloads/emodb/wav/16b10Td.wav", "sad"))  # not in this copy
        train = [_line("emodb", f"downloads/emodb/wav/{s}a01{letter}a.wav", emo)
                 for s in EMODB_SPEAKERS if s != spk for letter, emo in EMODB_RAW.items()]
        fold = data / f"fold_{k}"
        fold.mkdir()
        spellings = {1: ("_fold_1", "_fold1"), 2: ("_fold2",), 3: ("_fold_3", "_fold3")}.get(k, (f"_fold_{k}",))
        for sp in spellings:
            (fold / f"emodb_test{sp}.jsonl").write_text("\n".join(test) + "\n")
            (fold / f"emodb_train{sp}.jsonl").write_text("\n".join(train) + "\n")
    return root, data


def test_reader_reads_both_spellings_and_maps_labels(emodb):
    _, data = emodb
    folds = read_emobox_folds(data)
    assert folds.n_folds == 5 and folds.corpus == "emodb"
    assert len(folds.entries) == 5 * 7 + 1  # both spellings of a fold merged, not doubled
    assert Counter(e.fold for e in folds.entries) == {1: 7, 2: 7, 3: 7, 4: 7, 5: 8}
    assert {e.label for e in folds.entries} == {"Angry", "Boredom", "Disgust", "Fear", "Happy", "Neutral", "Sad"}
    assert next(e for e in folds.entries if e.emo == "boredem").label == "Boredom"


def test_emodb_with_emobox_folds(emodb):
    root, data = emodb
    ds = EmoDB(root=root, classes=["anger", "boredom", "disgust", "fear", "joy", "sadness", "neutral"], emobox=data)
    utts = ds.utterances()
    assert len(utts) == 35
    assert {u.label for u in utts} == {"Angry", "Boredom", "Disgust", "Fear", "Happy", "Neutral", "Sad"}
    assert ds.emobox_match.matched == 35 and ds.emobox_match.n_emobox == 36
    assert "35 of 36 EmoBox utterances matched by file name" in ds.notes
    folds = make_folds(utts, "emobox", "emodb", False)
    assert [f.name for f in folds] == [f"emobox{k}" for k in range(1, 6)]
    assert all(len(f.test) == 7 and len(f.train) == 28 for f in folds)
    assert make_folds(utts, "auto", "emodb", False)[0].name == "emobox1"


def test_the_loaders_selection_limits_what_matches(emodb):
    root, data = emodb
    ds = EmoDB(root=root, emobox=data)  # the paper's 6 classes: no disgust
    assert len(ds.utterances()) == 30
    assert "30 of 36" in ds.notes


def test_run_plan_with_cv_emobox(emodb):
    root, data = emodb
    cfg = make_config({"protocol": "clean", "datasets": ["emodb"], "cv": "emobox",
                       "options": {"emodb": {"root": str(root), "emobox": str(data)}}})
    _, folds, cells = plan(cfg, build_registry(make_plugin_manager(entry_points=False)))
    assert [f.name for f in folds["emodb"]] == [f"emobox{k}" for k in range(1, 6)] and len(cells) == 5


def test_iemocap_emobox_match_by_file_name(tmp_path):
    root = write_fixture(tmp_path / "IEMOCAP_full_release")
    data = tmp_path / "data" / "iemocap"
    lines: dict[int, list[str]] = {}
    raw = [u for u in Iemocap(root=root, label_set="all", merge_exc=False).utterances()
           if u.label in ("neu", "hap", "exc", "ang", "sad")]  # EmoBox's lines keep "exc"; its label_map merges
    for u in raw:
        n = int(u.fold[-1])
        wav = f"downloads/iemocap/Session{n}/sentences/wav/{u.path.parent.name}/{u.path.name}"
        lines.setdefault(n, []).append(_line("iemocap", wav, u.label))
    for n, ls in lines.items():
        (data / f"fold_{n}").mkdir(parents=True)
        (data / f"fold_{n}" / f"iemocap_test_fold_{n}.jsonl").write_text("\n".join(ls) + "\n")
    (data / "label_map.json").write_text(json.dumps({"neu": "Neutral", "hap": "Happy", "ang": "Angry", "sad": "Sad", "exc": "Happy"}))
    ds = Iemocap(root=root, emobox=data)
    utts = ds.utterances()
    assert len(utts) == 45 and ds.emobox_match.matched == 45
    assert Counter(u.label for u in utts) == {"Neutral": 10, "Happy": 15, "Angry": 10, "Sad": 10}
    assert {u.fold for u in utts} == {f"emobox{n}" for n in range(1, 6)}


def test_same_file_name_of_two_speakers_matched_by_folder(tmp_path):
    for i, spk in enumerate(("DC", "JE", "JK", "KL")):
        for code in ("a01", "n01"):
            write_fixture_tone(tmp_path / "AudioData" / spk / f"{code}.wav", i * 2 + len(code), seconds=0.3)
    data = tmp_path / "savee-emobox"
    for k, spk in enumerate(("DC", "JE", "JK", "KL"), 1):
        (data / f"fold_{k}").mkdir(parents=True)
        (data / f"fold_{k}" / f"savee_test_fold_{k}.jsonl").write_text("\n".join(
            _line("savee", f"downloads/savee/AudioData/{spk}/{c}.wav", e) for c, e in (("a01", "angry"), ("n01", "neutral"))))
    utts = Savee(root=tmp_path, emobox=data).utterances()
    assert len(utts) == 8 and {(u.speaker, u.fold) for u in utts} == {(s, f"emobox{k}") for k, s in enumerate(("DC", "JE", "JK", "KL"), 1)}


def test_clear_errors(emodb, tmp_path):
    root, data = emodb
    with pytest.raises(ConfigError, match=r"no fold_<k> folders there; expected EmoBox's data/<corpus>/fold_<k>"):
        EmoDB(root=root, emobox=tmp_path).utterances()
    other = tmp_path / "other"
    (other / "fold_1").mkdir(parents=True)
    (other / "fold_1" / "x_test_fold_1.jsonl").write_text(_line("x", "downloads/x/nothing.wav", "sad") + "\n")
    with pytest.raises(PluginError, match="none of the 1 EmoBox entries"):
        EmoDB(root=root, emobox=other).utterances()
    (other / "fold_2").mkdir()
    (other / "fold_2" / "x_test_fold2.jsonl").write_text(_line("x", "downloads/x/nothing.wav", "sad") + "\n")
    with pytest.raises(PluginError, match="in the test lists of folds 1 and 2"):
        read_emobox_folds(other)


def test_cli_cv_emobox_dry_run(emodb):
    from click.testing import CliRunner

    from ser_bench.cli import cli

    root, data = emodb
    r = CliRunner().invoke(cli, ["run", "clean", "--dataset", "emodb", "--data-root", f"emodb={root}", "-o",
                                 f"emodb.emobox={data}", "-o", 'emodb.classes=["anger","fear","sadness"]',
                                 "--cv", "emobox", "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "emodb: 5 folds" in r.output and "emobox5" in r.output


def test_regression_keeps_its_ratings_with_emobox_folds(tmp_path):
    root = write_fixture(tmp_path / "iem")
    data = tmp_path / "data"
    for n in range(1, 6):
        (data / f"fold_{n}").mkdir(parents=True)
        (data / f"fold_{n}" / f"iemocap_test_fold{n}.jsonl").write_text(_line(
            "iemocap", f"downloads/iemocap/Session{n}/sentences/wav/Ses0{n}F_impro01/Ses0{n}F_impro01_F000.wav", "neu"))
    ds = Iemocap(root=root, target="arousal", emobox=data)
    utts = ds.utterances()
    assert len(utts) == 5 and all(not isinstance(u.label, str) for u in utts)
    assert ds.emobox_match.matched == 5 and ds.emobox_match.n_loader == 60


def test_every_corpus_loader_offers_the_emobox_option():
    reg = build_registry(make_plugin_manager(entry_points=False))
    with_root = [n for n in reg.names("dataset") if "root" in reg.get("dataset", n).Config.model_fields]
    assert {"emodb", "ravdess", "enterface", "folder-dataset", "iemocap", "msp-podcast", "shemo"} <= set(with_root)
    for n in with_root:
        assert "emobox" in reg.get("dataset", n).Config.model_fields, n
