"""eNTERFACE'05 loader on fixtures in the release's exact layout, with its known quirks.

Layout: ROOT/subject N/<emotion>/sentence M/sN_<code>_M.avi. Quirks reproduced here: subject 6
has no sentence level; files under "subject 11" are named s12_*; one file is "s16_su_3avi";
some names start with "s_3_". AVIs are real (video + 48 kHz stereo audio) when an ffmpeg is
available (imageio-ffmpeg); tests that list or decode them skip otherwise (with the pip install
to run), so README's test command passes without the [enterface] extra.
"""
from __future__ import annotations

import subprocess

import numpy as np
import pytest
import soundfile as sf

from ser_bench.errors import AudioError, ConfigError, PluginError
from ser_bench.plugins import build_registry, make_plugin_manager
from ser_bench.testing import check_dataset
from ser_bench_plugins import enterface
from ser_bench_plugins.enterface import EMOTIONS, Enterface, find_ffmpeg

FFMPEG = find_ffmpeg()
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="no ffmpeg: pip install 'ser-bench[enterface]'")

# relative path under ROOT -> (utterance id, speaker, label)
QUIRKY = {
    "subject 1/anger/sentence 1/s1_an_1.avi": ("s1_an_1", "1", "anger"),
    "subject 1/anger/sentence 2/s1_an_2.avi": ("s1_an_2", "1", "anger"),
    "subject 1/happiness/sentence 1/s1_ha_1.avi": ("s1_ha_1", "1", "happiness"),
    "subject 3/fear/sentence 4/s_3_fe_4.avi": ("s3_fe_4", "3", "fear"),
    "subject 6/sadness/s6_sa_1.avi": ("s6_sa_1", "6", "sadness"),  # no sentence level
    "subject 6/disgust/s6_di_5.avi": ("s6_di_5", "6", "disgust"),
    "subject 11/anger/sentence 1/s12_an_1.avi": ("s11_an_1", "11", "anger"),  # named s12
    "subject 12/anger/sentence 1/s12_an_1.avi": ("s12_an_1", "12", "anger"),
    "subject 16/surprise/sentence 3/s16_su_3avi": ("s16_su_3", "16", "surprise"),  # no dot
}


@pytest.fixture(scope="session")
def avi_bytes(tmp_path_factory):
    """One real AVI (0.5 s black video + 0.5 s 440 Hz stereo tone at 48 kHz), or a stub."""
    tmp = tmp_path_factory.mktemp("avi")
    if FFMPEG is None:
        return b"not decoded without ffmpeg"
    sr = 48000
    t = np.arange(sr // 2) / sr
    tone = 0.3 * np.sin(2 * np.pi * 440 * t)
    sf.write(str(tmp / "tone.wav"), np.stack([tone, tone], 1).astype(np.float32), sr)
    subprocess.run(
        [FFMPEG, "-y", "-v", "error", "-f", "lavfi", "-i", "color=c=black:s=16x16:r=5:d=0.5",
         "-i", str(tmp / "tone.wav"), "-c:v", "mjpeg", "-c:a", "pcm_s16le", "-shortest", str(tmp / "x.avi")],
        check=True,
    )  # fmt: skip
    return (tmp / "x.avi").read_bytes()


@pytest.fixture
def enterface_root(tmp_path, avi_bytes):
    root = tmp_path / "enterface"
    for rel in QUIRKY:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(avi_bytes)
    (root / "subject 1" / "anger" / "sentence 1" / "Thumbs.db").write_bytes(b"junk")  # ignored
    return root


def write_wav(path, seconds=0.25, sr=16000):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), sr)


@needs_ffmpeg  # listing AVIs needs an ffmpeg to extract them later
def test_layout_with_all_known_quirks(enterface_root):
    utts = Enterface(root=enterface_root).utterances()
    got = {(u.id, u.speaker, u.label) for u in utts}
    assert got == set(QUIRKY.values())
    # subject 11's s12_* files are speaker 11, distinct from subject 12's
    assert {u.speaker for u in utts if u.id.endswith("an_1")} == {"1", "11", "12"}
    assert all(u.fingerprint and "ffmpeg" in u.fingerprint for u in utts)


@needs_ffmpeg  # listing AVIs needs an ffmpeg to extract them later
def test_class_subset(enterface_root):
    ds = Enterface(root=enterface_root, classes=["anger", "surprise"])
    assert ds.classes() == ["anger", "surprise"]
    assert len(ds.utterances()) == 5


@needs_ffmpeg
def test_conformance(enterface_root):
    check_dataset(Enterface, options={"root": str(enterface_root)})


def test_registered_as_builtin():
    assert build_registry(make_plugin_manager(entry_points=False)).get("dataset", "enterface") is Enterface


@needs_ffmpeg
def test_audio_is_extracted_from_the_avi(enterface_root):
    u = next(u for u in Enterface(root=enterface_root).utterances() if u.id == "s16_su_3")
    x = u.load()
    assert x.dtype == np.float32 and x.shape == (8000,)  # 0.5 s at 16 kHz, mono
    assert abs(float(np.max(np.abs(x))) - 0.3) < 0.02  # stereo averaged, not summed


@needs_ffmpeg
def test_corrupt_avi_names_the_file(enterface_root):
    (enterface_root / "subject 1" / "anger" / "sentence 2" / "s1_an_2.avi").write_bytes(b"RIFF broken")
    u = next(u for u in Enterface(root=enterface_root).utterances() if u.id == "s1_an_2")
    with pytest.raises(AudioError, match="s1_an_2.avi: ffmpeg could not extract"):
        u.load()


def test_pre_extracted_wavs_in_the_same_layout(tmp_path):
    root = tmp_path / "enterface-wav"
    for rel in QUIRKY:
        write_wav(root / rel.replace("3avi", "3.avi").replace(".avi", ".wav"))
    utts = Enterface(root=root, audio="wav").utterances()
    assert {(u.id, u.speaker, u.label) for u in utts} == set(QUIRKY.values())
    assert utts[0].loader is None and utts[0].load().shape == (4000,)


@needs_ffmpeg  # listing AVIs needs an ffmpeg to extract them later
def test_auto_prefers_the_wav_beside_the_avi(enterface_root):
    wav = enterface_root / "subject 1" / "anger" / "sentence 1" / "s1_an_1.wav"
    write_wav(wav)
    by_id = {u.id: u for u in Enterface(root=enterface_root).utterances()}
    assert by_id["s1_an_1"].path == wav and by_id["s1_an_1"].loader is None
    assert by_id["s1_an_2"].path.suffix == ".avi"
    only_avi = {u.id: u for u in Enterface(root=enterface_root, audio="avi").utterances()}
    assert only_avi["s1_an_1"].path.suffix == ".avi"
    assert [u.id for u in Enterface(root=enterface_root, audio="wav").utterances()] == ["s1_an_1"]


def test_no_ffmpeg_says_how_to_get_one(enterface_root, monkeypatch):
    monkeypatch.setattr(enterface, "find_ffmpeg", lambda explicit=None: None)
    with pytest.raises(PluginError, match=r"ser-bench\[enterface\].*pre-extract WAVs"):
        Enterface(root=enterface_root).utterances()


@needs_ffmpeg  # listing AVIs needs an ffmpeg to extract them later
def test_bad_entries_are_listed(enterface_root, avi_bytes):
    bad = {
        "subject 2/anger/sentence 1/clip_final.avi": "does not match",  # does not parse
        "subject 2/joy/sentence 1/s2_jo_1.avi": "unknown emotion folder 'joy'",  # label outside the set
        "subject 2/fear/sentence 1/s2_an_1.avi": "does not match its folder 'fear'",
        "subject 2/sadness/sentence 2/s2_sa_3.avi": "sentence 3 in the name",
    }
    for rel in bad:
        p = enterface_root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(avi_bytes)
    (enterface_root / "subject 2" / "surprise" / "sentence 1").mkdir(parents=True)  # empty folder
    (enterface_root / "subject 5").mkdir()  # empty subject
    with pytest.raises(PluginError) as exc:
        Enterface(root=enterface_root).utterances()
    msg = str(exc.value)
    assert "6 bad entries" in msg
    for needle in bad.values():
        assert needle in msg
    assert "empty sentence folder" in msg and "empty subject folder" in msg
    assert len(Enterface(root=enterface_root, on_bad_entry="skip").utterances()) == len(QUIRKY)


@needs_ffmpeg  # listing AVIs needs an ffmpeg to extract them later
def test_duplicate_recording_is_a_bad_entry(enterface_root, avi_bytes):
    (enterface_root / "subject 16" / "surprise" / "sentence 3" / "s16_su_3.avi").write_bytes(avi_bytes)
    with pytest.raises(PluginError, match="duplicate of"):
        Enterface(root=enterface_root).utterances()


def test_root_errors(tmp_path):
    with pytest.raises(ConfigError, match="--data-root enterface=PATH"):
        Enterface().utterances()
    with pytest.raises(PluginError, match="no 'subject N' folders"):
        Enterface(root=tmp_path).utterances()
    with pytest.raises(ConfigError, match="unknown class.*'neutral'"):
        Enterface(root=tmp_path, classes=["neutral", "anger"]).utterances()


def test_all_six_emotion_folders_known():
    assert set(EMOTIONS) == {"anger", "disgust", "fear", "happiness", "sadness", "surprise"}
