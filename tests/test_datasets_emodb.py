"""EMO-DB loader on a tiny fixture in the corpus's own layout (ROOT/wav/SSTTTEV.wav)."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from ser_bench.errors import AudioError, ConfigError, PluginError
from ser_bench.plugins import build_registry, make_plugin_manager
from ser_bench.testing import check_dataset
from ser_bench_plugins.emodb import EMOTIONS, PAPER_CLASSES, EmoDB


def write_tone(path, seconds=0.1, sr=16000, freq=220.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), sr)


@pytest.fixture
def emodb_root(tmp_path):
    """3 speakers x 7 emotions, one file each, varied durations and one 22.05 kHz file."""
    root = tmp_path / "emodb"
    for i, spk in enumerate(["03", "08", "16"]):
        for j, letter in enumerate(EMOTIONS):
            write_tone(root / "wav" / f"{spk}a0{j + 1}{letter}a.wav", seconds=0.1 + 0.01 * (i + j))
    write_tone(root / "wav" / "03b10Wc.wav", sr=22050)  # another version, other rate
    (root / "wav" / ".DS_Store").write_bytes(b"\0\0junk")  # not a .wav: ignored
    return root


def test_default_is_the_papers_six_classes(emodb_root):
    ds = EmoDB(root=emodb_root)
    utts = ds.utterances()
    assert ds.classes() == sorted(PAPER_CLASSES)
    assert "disgust" not in ds.classes()
    assert len(utts) == 3 * 6 + 1
    u = next(u for u in utts if u.id == "08a02La")
    assert (u.speaker, u.label, u.partition) == ("08", "boredom", None)
    assert {u.speaker for u in utts} == {"03", "08", "16"}
    assert [u.id for u in utts] == sorted(u.id for u in utts)  # deterministic order


def test_letter_mapping_and_all_seven_classes(emodb_root):
    ds = EmoDB(root=emodb_root, classes=list(EMOTIONS.values()))
    labels = {u.id[5]: u.label for u in ds.utterances()}
    assert labels == {"W": "anger", "L": "boredom", "E": "disgust", "A": "fear", "F": "joy", "T": "sadness", "N": "neutral"}


def test_audio_loads_mono_16k(emodb_root):
    u = next(u for u in EmoDB(root=emodb_root).utterances() if u.id == "03b10Wc")
    x = u.load()
    assert x.dtype == np.float32 and x.ndim == 1
    assert abs(len(x) - 1600) <= 2  # 0.1 s at 22.05 kHz resampled to 16 kHz


def test_root_may_be_the_wav_folder(emodb_root):
    assert len(EmoDB(root=emodb_root / "wav").utterances()) == 19


def test_conformance(emodb_root):
    check_dataset(EmoDB, options={"root": str(emodb_root)})


def test_registered_as_builtin():
    reg = build_registry(make_plugin_manager(entry_points=False))
    assert reg.get("dataset", "emodb") is EmoDB


def test_unknown_class_option_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown class.*'surprise'.*anger"):
        EmoDB(root=".", classes=["anger", "surprise"]).utterances()


def test_missing_root_says_how_to_set_it(tmp_path):
    with pytest.raises(ConfigError, match="--data-root emodb=PATH"):
        EmoDB().utterances()
    with pytest.raises(ConfigError, match="does not exist"):
        EmoDB(root=tmp_path / "nope").utterances()


def test_empty_folder_is_a_clear_error(tmp_path):
    (tmp_path / "wav").mkdir()
    with pytest.raises(PluginError, match=r"no \.wav files in .*wav.*SSTTTEV"):
        EmoDB(root=tmp_path).utterances()


def test_unparseable_name_and_unknown_letter_are_listed(emodb_root):
    write_tone(emodb_root / "wav" / "notes.wav")
    write_tone(emodb_root / "wav" / "03a01Xa.wav")
    with pytest.raises(PluginError) as exc:
        EmoDB(root=emodb_root).utterances()
    msg = str(exc.value)
    assert "2 bad entries" in msg
    assert "notes.wav" in msg and "does not match SSTTTEV" in msg
    assert "03a01Xa.wav" in msg and "unknown emotion letter 'X'" in msg
    assert "on_bad_entry=skip" in msg


def test_skip_mode_leaves_bad_entries_out(emodb_root, caplog):
    write_tone(emodb_root / "wav" / "03a01Xa.wav")
    ds = EmoDB(root=emodb_root, on_bad_entry="skip")
    assert len(ds.utterances()) == 19
    assert "03a01Xa.wav" in caplog.text


def test_corrupt_audio_is_caught_when_listing(emodb_root):
    (emodb_root / "wav" / "09a01Wa.wav").write_bytes(b"RIFF this is not audio")
    with pytest.raises(PluginError, match="09a01Wa.wav: cannot decode audio"):
        EmoDB(root=emodb_root).utterances()
    # without the header check, loading that file names it
    u = next(u for u in EmoDB(root=emodb_root, check_audio=False).utterances() if u.id == "09a01Wa")
    with pytest.raises(AudioError, match="09a01Wa.wav"):
        u.load()


def test_uniform_durations_are_noted_as_degraded(tmp_path):
    for i in range(24):
        write_tone(tmp_path / "wav" / f"1{i % 10}a0{i % 9 + 1}{'WLAFTN'[i % 6]}{'abcd'[i // 10]}.wav", seconds=0.2)
    ds = EmoDB(root=tmp_path)
    ds.utterances()
    assert "degraded" in ds.notes and "0.20 s" in ds.notes


def test_varied_durations_give_no_note(emodb_root):
    ds = EmoDB(root=emodb_root)
    ds.utterances()
    assert ds.notes == ""
