"""MSP-Podcast loader on fixtures in the new and the old release layout."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from ser_bench.errors import PluginError
from ser_bench.interfaces import TimeSeries
from ser_bench.protocols import make_folds
from ser_bench.testing import check_dataset
from ser_bench_plugins.msp_podcast import MspPodcast, write_fixture


@pytest.fixture(scope="module", params=["new", "old"])
def root(request, tmp_path_factory):
    return write_fixture(tmp_path_factory.mktemp(f"msp-{request.param}"), old_release=request.param == "old")


def test_the_fixture_spells_the_release(root):
    old = (root / "Audio").is_dir()
    assert (root / "Labels" / ("labels_concensus.csv" if old else "labels_consensus.csv")).is_file()
    assert not (root / ("Audios" if old else "Audio")).exists()
    text = next((root / "Labels").iterdir()).read_text()
    assert text.startswith("FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set\n")
    assert ("Validation" in text) == old and ("Development" in text) == (not old)


def test_default_eight_classes_and_official_partitions(root):
    ds = MspPodcast(root=root)
    utts = ds.utterances()
    assert len(utts) == 32  # 4 podcasts in Train/Dev/Test1 x 8 primary classes; O, X and Test2 left out
    assert Counter(u.label for u in utts) == {c: 4 for c in
                                              ("angry", "sad", "happy", "surprise", "fear", "disgust", "contempt", "neutral")}
    assert Counter(u.partition for u in utts) == {"train": 16, "dev": 8, "test": 8}  # Validation -> dev too
    assert {u.speaker for u in utts} == {"1", "2", "3", "4"}
    assert "1 audio file(s) in" in ds.notes  # the unlabelled segment
    folds = make_folds(utts, "auto", "msp-podcast", True)
    assert len(folds) == 1 and (len(folds[0].train), len(folds[0].valid), len(folds[0].test)) == (16, 8, 8)
    spk = {u.id: u.speaker for u in utts}
    sets = [{spk[i] for i in ids} for ids in (folds[0].train, folds[0].valid, folds[0].test)]
    assert sets[0].isdisjoint(sets[1]) and sets[0].isdisjoint(sets[2]) and sets[1].isdisjoint(sets[2])


def test_label_options(root):
    four = MspPodcast(root=root, label_set="4class").utterances()
    assert len(four) == 16 and {u.label for u in four} == {"neutral", "happy", "sad", "angry"}
    assert Counter(u.label for u in MspPodcast(root=root, keep_other=True).utterances())["other"] == 4
    t2 = MspPodcast(root=root, test_set="Test2").utterances()
    assert Counter(u.partition for u in t2)["test"] == 8
    assert {u.speaker for u in t2 if u.partition == "test"} == {"unknown-podcast0005"}  # SpkrID Unknown


def test_dimensional_targets(root):
    ds = MspPodcast(root=root, target="valence")
    utts = ds.utterances()
    assert ds.task == "regression" and len(utts) == 40  # O and X rows have ratings too
    row = next(line for line in next((root / "Labels").iterdir()).read_text().splitlines()
               if line.startswith("MSP-PODCAST_0001_0003.wav"))
    u = next(u for u in utts if u.id == "MSP-PODCAST_0001_0003")
    assert isinstance(u.label, TimeSeries) and np.allclose(u.label.values, float(row.split(",")[3]))


def test_conformance(root):
    check_dataset(MspPodcast, options={"root": str(root)})
    check_dataset(MspPodcast, options={"root": str(root), "target": "arousal"})


def test_wrong_root_and_missing_audio(tmp_path, root):
    with pytest.raises(PluginError, match=r"no Labels/labels_consensus\.csv \(or labels_concensus\.csv\)"):
        MspPodcast(root=tmp_path).utterances()
    bad = write_fixture(tmp_path / "m")
    (bad / "Audios" / "MSP-PODCAST_0001_0001.wav").unlink()
    with pytest.raises(PluginError, match=r"1 bad entry(?s:.*)labels_consensus\.csv line 2: no audio"):
        MspPodcast(root=bad).utterances()
