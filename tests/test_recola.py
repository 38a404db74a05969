"""RECOLA loader (AVEC 2016 layout) and the synthetic corpus writer."""
from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest

import ser_bench_plugins.recola as recola
from ser_bench.errors import BenchError, ConfigError, PluginError
from ser_bench.interfaces import TimeSeries
from ser_bench.testing import check_dataset, check_hooks
from ser_bench_plugins.recola import (
    DEV_AS_TEST_NOTE,
    LabelFileError,
    RecolaDataset,
    read_gold_standard,
    synthetic_recording,
    write_arff,
    write_synthetic_recola,
)

SECONDS = 4.0
N_FRAMES = int(SECONDS / 0.04) + 1  # AVEC: frameTime 0 .. duration inclusive


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_synthetic_recola(tmp_path_factory.mktemp("recola"), n_train=2, n_dev=2, n_test=1, seconds=SECONDS)


@pytest.fixture
def copy(corpus, tmp_path):
    """A private copy of the corpus that a test may break."""
    return shutil.copytree(corpus, tmp_path / "recola")


def test_layout_written_exactly(corpus):
    wavs = sorted(p.name for p in (corpus / "recordings_audio").iterdir())
    assert wavs == ["dev_1.wav", "dev_2.wav", "test_1.wav", "train_1.wav", "train_2.wav"]
    arff = (corpus / "ratings_gold_standard" / "arousal" / "train_1.arff").read_text().splitlines()
    assert arff[:3] == ["@relation GOLDSTANDARD", "", "@attribute Instance_name string"]
    assert "@attribute frameTime numeric" in arff and "@attribute GoldStandard numeric" in arff
    rows = arff[arff.index("@data") + 2 :]
    assert len(rows) == N_FRAMES and rows[0].startswith("'train_1',0.00,") and rows[1].startswith("'train_1',0.04,")


def test_loads_official_partitions(corpus):
    ds = RecolaDataset(root=corpus)
    utts = ds.utterances()
    assert [(u.id, u.partition) for u in utts] == [
        ("train_1", "train"), ("train_2", "train"), ("dev_1", "dev"), ("dev_2", "dev"), ("test_1", "test")]
    assert ds.task == "regression" and ds.has_partitions and not ds.dev_as_test and ds.notes == ""
    for u in utts:
        assert isinstance(u.label, TimeSeries) and u.label.hop_s == 0.04 and len(u.label) == N_FRAMES
        assert u.speaker == u.id
    x = utts[0].load()
    assert x.dtype == np.float32 and len(x) == int(SECONDS * 16000)


def test_conforms(corpus):
    check_dataset(RecolaDataset, options={"root": corpus})


def test_registers_recola():
    found = check_hooks(recola)
    assert found[("dataset", "recola")] is RecolaDataset


def test_valence_dimension(corpus):
    a = RecolaDataset(root=corpus).utterances()[0].label.values
    v = RecolaDataset(root=corpus, dimension="valence").utterances()[0].label.values
    np.testing.assert_allclose(v, -a, atol=1e-6)


def test_missing_test_labels_let_dev_serve_as_test(corpus, tmp_path, caplog):
    root = write_synthetic_recola(tmp_path / "r", n_train=2, n_dev=1, n_test=2, seconds=1.0, test_labels=False)
    with caplog.at_level(logging.WARNING, logger="ser_bench.datasets"):
        ds = RecolaDataset(root=root)
        utts = ds.utterances()
    assert [(u.id, u.partition) for u in utts] == [("train_1", "train"), ("train_2", "train"), ("dev_1", "test")]
    assert ds.dev_as_test and ds.notes == DEV_AS_TEST_NOTE
    assert "dev serves as test" in caplog.text and "2 of 2 test recordings" in caplog.text
    with pytest.raises(PluginError, match=r"test_partition='test'.*test_1, test_2"):
        RecolaDataset(root=root, test_partition="test").utterances()


def test_dev_as_test_on_request(corpus):
    ds = RecolaDataset(root=corpus, test_partition="dev")
    utts = ds.utterances()
    assert {u.partition for u in utts} == {"train", "test"}
    assert [u.id for u in utts if u.partition == "test"] == ["dev_1", "dev_2"]
    assert ds.dev_as_test


def test_unparsable_arff_is_named(copy):
    bad = copy / "ratings_gold_standard" / "arousal" / "dev_2.arff"
    bad.write_text("this is not an arff file\n")
    with pytest.raises(PluginError, match=r"dev_2\.arff.*unusable gold standard.*not ARFF"):
        RecolaDataset(root=copy).utterances()
    utts = RecolaDataset(root=copy, on_bad_entry="skip").utterances()
    assert "dev_2" not in [u.id for u in utts] and "dev_1" in [u.id for u in utts]


def test_arff_with_a_gap_is_named(copy):
    path = copy / "ratings_gold_standard" / "arousal" / "train_2.arff"
    lines = path.read_text().splitlines()
    del lines[20]  # one missing row -> frameTime jumps by 80 ms
    path.write_text("\n".join(lines))
    with pytest.raises(PluginError, match=r"train_2\.arff.*frameTime jumps"):
        RecolaDataset(root=copy).utterances()


def test_missing_wav_is_named(copy):
    (copy / "recordings_audio" / "dev_1.wav").unlink()
    with pytest.raises(PluginError, match=r"dev_1\.arff: no matching recording .*dev_1\.wav"):
        RecolaDataset(root=copy).utterances()


def test_missing_train_label_is_named(copy):
    (copy / "ratings_gold_standard" / "arousal" / "train_1.arff").unlink()
    with pytest.raises(PluginError, match=r"train_1\.wav: no gold standard .*train_1\.arff"):
        RecolaDataset(root=copy).utterances()


def test_corrupt_wav_is_named(copy):
    (copy / "recordings_audio" / "train_2.wav").write_bytes(b"RIFF0000WAVEjunk")
    with pytest.raises(PluginError, match=r"train_2\.wav: cannot decode audio"):
        RecolaDataset(root=copy).utterances()


def test_empty_or_missing_folders(tmp_path):
    with pytest.raises(ConfigError, match="--data-root recola=PATH"):
        RecolaDataset().utterances()
    with pytest.raises(ConfigError, match="does not exist"):
        RecolaDataset(root=tmp_path / "nope").utterances()
    with pytest.raises(PluginError, match=r"recordings_audio is missing"):
        RecolaDataset(root=tmp_path).utterances()
    (tmp_path / "recordings_audio").mkdir()
    (tmp_path / "ratings_gold_standard" / "arousal").mkdir(parents=True)
    with pytest.raises(PluginError, match=r"no recordings named .* in .*recordings_audio"):
        RecolaDataset(root=tmp_path).utterances()


def test_read_gold_standard_is_tolerant_and_strict(tmp_path):
    p = tmp_path / "x.arff"
    write_arff(p, "x", np.array([0.1, -0.2, 0.3]))
    np.testing.assert_allclose(read_gold_standard(p), [0.1, -0.2, 0.3], atol=1e-6)
    # bare names, comments, another attribute order
    p.write_text("% comment\n@RELATION r\n@attribute frameTime numeric\n@attribute GoldStandard numeric\n"
                 "@attribute Instance_name string\n@data\n0.00,0.5,x\n0.04,0.25,x\n")
    np.testing.assert_allclose(read_gold_standard(p), [0.5, 0.25])
    p.write_text("@relation r\n@attribute frameTime numeric\n@attribute GoldStandard numeric\n@data\n0.0,nan\n0.04,1\n")
    with pytest.raises(LabelFileError, match="line 5: GoldStandard is 'nan'"):
        read_gold_standard(p)
    p.write_text("@relation r\n@attribute frameTime numeric\n@attribute Arousal numeric\n@data\n0.0,1\n")
    with pytest.raises(LabelFileError, match="expected Instance_name, frameTime and GoldStandard"):
        read_gold_standard(p)
    assert issubclass(PluginError, BenchError)


def test_synthetic_arousal_follows_loudness_and_is_delayed():
    audio, label = synthetic_recording(40.0, seed=3, label_delay_s=0.4)
    assert len(label) == 1001 and np.all(np.abs(label) < 1)
    frames = audio[: 1000 * 640].reshape(1000, 640).astype(np.float64)
    # loudness per 1 s (25 frames), so that the talk-spurt gaps average out
    loud = 10 * np.log10(np.mean(frames.reshape(40, 25 * 640) ** 2, axis=1))
    lab = label[:1000].reshape(40, 25).mean(axis=1)
    assert np.corrcoef(loud, lab)[0, 1] > 0.6
    assert np.all(label[:10] == label[0])  # the 0.4 s annotator delay holds the first value
    a2, l2 = synthetic_recording(40.0, seed=3, label_delay_s=0.4)
    assert np.array_equal(audio, a2) and np.array_equal(label, l2)
