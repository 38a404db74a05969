"""RAVDESS loader on a tiny fixture in the corpus's layout (Actor_NN/MM-VC-EE-II-SS-RR-AA.ext)."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from ser_bench.errors import ConfigError, PluginError
from ser_bench.plugins import build_registry, make_plugin_manager
from ser_bench.testing import check_dataset
from ser_bench_plugins.ravdess import EMOTIONS, Ravdess


def write_tone(path, seconds=0.1, sr=16000):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), sr)


@pytest.fixture
def ravdess_root(tmp_path):
    """2 actors x 8 emotions x 2 intensities (neutral: 1), speech; plus song and video files."""
    root = tmp_path / "ravdess"
    for actor in ("01", "02"):
        for emo in EMOTIONS:
            for intensity in ("01",) if emo == "01" else ("01", "02"):
                ext = "flac" if actor == "01" else "wav"
                write_tone(root / f"Actor_{actor}" / f"03-01-{emo}-{intensity}-01-01-{actor}.{ext}")
        write_tone(root / f"Actor_{actor}" / f"03-02-03-01-01-01-{actor}.wav")  # song
        (root / f"Actor_{actor}" / f"01-01-03-01-01-01-{actor}.mp4").write_bytes(b"video")  # ignored
    return root


def test_default_maps_to_enterface_six_classes(ravdess_root):
    ds = Ravdess(root=ravdess_root)
    utts = ds.utterances()
    assert ds.classes() == ["anger", "disgust", "fear", "happiness", "sadness", "surprise"]
    assert len(utts) == 2 * 6 * 2  # neutral and calm dropped, song excluded
    u = next(u for u in utts if u.id == "03-01-05-02-01-01-02")
    assert (u.speaker, u.label) == ("02", "anger")
    assert {u.speaker for u in utts} == {"01", "02"}


def test_full_label_set_and_song(ravdess_root):
    ds = Ravdess(root=ravdess_root, label_set="full", vocal_channel="both")
    labels = {u.label for u in ds.utterances()}
    assert labels == set(EMOTIONS.values())
    assert len(ds.utterances()) == 2 * (1 + 7 * 2 + 1)


def test_class_subset_and_intensity(ravdess_root):
    ds = Ravdess(root=ravdess_root, classes=["anger", "sadness"], intensities=[2])
    assert sorted(u.id for u in ds.utterances()) == sorted(
        f"03-01-{e}-02-01-01-{a}" for e in ("04", "05") for a in ("01", "02")
    )


def test_flac_and_wav_both_load(ravdess_root):
    for u in Ravdess(root=ravdess_root, classes=["anger", "fear"]).utterances():
        assert u.load().shape == (1600,)


def test_conformance(ravdess_root):
    check_dataset(Ravdess, options={"root": str(ravdess_root)})


def test_registered_as_builtin():
    assert build_registry(make_plugin_manager(entry_points=False)).get("dataset", "ravdess") is Ravdess


def test_class_outside_the_label_set_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown class.*'calm'"):
        Ravdess(root=".", classes=["calm", "anger"]).utterances()  # calm exists only in "full"


def test_no_actor_folders_is_a_clear_error(tmp_path):
    with pytest.raises(PluginError, match="no Actor_NN folders"):
        Ravdess(root=tmp_path).utterances()


def test_bad_entries_are_listed(ravdess_root):
    write_tone(ravdess_root / "Actor_01" / "take2.wav")
    write_tone(ravdess_root / "Actor_01" / "03-01-09-01-01-01-01.wav")  # emotion 09
    write_tone(ravdess_root / "Actor_01" / "03-01-05-01-02-01-07.wav")  # actor 07 in Actor_01
    (ravdess_root / "Actor_02" / "03-01-05-01-02-01-02.wav").write_bytes(b"garbage")
    (ravdess_root / "Actor_03").mkdir()
    with pytest.raises(PluginError) as exc:
        Ravdess(root=ravdess_root).utterances()
    msg = str(exc.value)
    assert "5 bad entries" in msg
    for needle in ("take2.wav", "unknown emotion code '09'", "actor 07", "cannot decode", "Actor_03: folder holds no"):
        assert needle in msg
    assert len(Ravdess(root=ravdess_root, on_bad_entry="skip").utterances()) == 24


def test_same_recording_in_two_formats_is_a_bad_entry(ravdess_root):
    write_tone(ravdess_root / "Actor_01" / "03-01-05-01-01-01-01.wav")  # .flac exists too
    with pytest.raises(PluginError, match="same recording as"):
        Ravdess(root=ravdess_root).utterances()
