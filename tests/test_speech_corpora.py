"""LibriSpeech and Common Voice speech corpora on fixtures in their own layouts."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ser_bench.errors import ConfigError, PluginError
from ser_bench.training import split_speakers
from ser_bench_plugins.speech_corpora import CommonVoice, LibriSpeech

SHARED_LIBRI = Path(__file__).resolve().parents[2] / "shared" / "data" / "librispeech"


def _tone(n: int = 1600, f: float = 220.0) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * f * np.arange(n) / 16000)).astype(np.float32)


@pytest.fixture
def libri_root(tmp_path) -> Path:
    base = tmp_path / "LibriSpeech" / "train-clean-5"
    for spk, ch in [("19", "198"), ("19", "227"), ("26", "495"), ("103", "1240")]:
        d = base / spk / ch
        d.mkdir(parents=True)
        for i in range(2):
            sf.write(d / f"{spk}-{ch}-{i:04d}.flac", _tone(), 16000)
        (d / f"{spk}-{ch}.trans.txt").write_text("0000 HELLO\n")
    (tmp_path / "LibriSpeech" / "SPEAKERS.TXT").write_text(";ID\n")
    return tmp_path


def test_librispeech_layout(libri_root):
    ds = LibriSpeech(root=libri_root)
    utts = ds.utterances()
    assert len(utts) == 8
    assert {u.speaker for u in utts} == {"19", "26", "103"}
    assert {u.label for u in utts} == {"speech"}
    assert {u.partition for u in utts} == {"train-clean-5"}
    u = next(u for u in utts if u.id == "26-495-0001")
    assert u.speaker == "26" and u.load().shape == (1600,)
    with pytest.raises(ConfigError, match="no .flac"):
        LibriSpeech(root=libri_root, subsets=["dev-clean"]).load_utterances()


def test_librispeech_bad_entries(libri_root):
    bad = libri_root / "LibriSpeech" / "train-clean-5" / "26" / "495" / "stray.flac"
    sf.write(bad, _tone(), 16000)
    with pytest.raises(PluginError, match="stray.flac"):
        LibriSpeech(root=libri_root).utterances()
    assert len(LibriSpeech(root=libri_root, on_bad_entry="skip").utterances()) == 8
    with pytest.raises(ConfigError, match="librispeech"):
        LibriSpeech().utterances()


def test_split_by_speaker_is_disjoint(libri_root):
    parts = split_speakers(LibriSpeech(root=libri_root).utterances(), valid_fraction=0.2, test_fraction=0.2)
    spk = {k: {u.speaker for u in v} for k, v in parts.items()}
    assert all(spk.values())
    assert not (spk["train"] & spk["valid"]) and not (spk["train"] & spk["test"]) and not (spk["valid"] & spk["test"])


@pytest.fixture
def cv_root(tmp_path) -> Path:
    (tmp_path / "clips").mkdir()
    rows = ["client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccent"]
    for i, client in enumerate(["aaa", "aaa", "bbb", "ccc"]):
        name = f"common_voice_en_{i}.mp3"
        sf.write(tmp_path / "clips" / name, _tone(3200, 200 + 50 * i), 16000, format="MP3")
        rows.append(f"{client}\t{name}\tsome \"quoted\" text\t{2 + i}\t0\t\t\t")
    (tmp_path / "validated.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return tmp_path


def test_commonvoice_validated_tsv(cv_root):
    utts = CommonVoice(root=cv_root).utterances()
    assert [u.speaker for u in utts] == ["aaa", "aaa", "bbb", "ccc"]
    assert utts[0].id == "clips/common_voice_en_0" and utts[0].label == "speech"
    x = utts[2].load()
    assert x.dtype == np.float32 and abs(len(x) - 3200) < 1200  # mp3 adds encoder padding
    assert len(CommonVoice(root=cv_root, min_up_votes=4).utterances()) == 2


def test_commonvoice_missing_clip(cv_root):
    (cv_root / "clips" / "common_voice_en_3.mp3").unlink()
    with pytest.raises(PluginError, match="missing on disk"):
        CommonVoice(root=cv_root).utterances()
    assert len(CommonVoice(root=cv_root, on_bad_entry="skip").utterances()) == 3


def test_commonvoice_first_release(tmp_path):
    for part in ["train", "test"]:
        d = tmp_path / f"cv-valid-{part}"
        d.mkdir()
        lines = ["filename,text,up_votes,down_votes,age,gender,accent,duration"]
        for i in range(2):
            sf.write(d / f"sample-{i:06d}.mp3", _tone(), 16000, format="MP3")
            lines.append(f"cv-valid-{part}/sample-{i:06d}.mp3,hello world,1,0,,,,")
        (tmp_path / f"cv-valid-{part}.csv").write_text("\n".join(lines) + "\n")
    utts = CommonVoice(root=tmp_path).utterances()
    assert len(utts) == 4
    assert {u.partition for u in utts} == {"train", "test"}
    assert len({u.speaker for u in utts}) == 4  # no speaker ids: one per clip
    with pytest.raises(ConfigError, match="validated.tsv"):
        CommonVoice(root=tmp_path / "cv-valid-train").utterances()


@pytest.mark.integration
def test_shared_librispeech():
    if not SHARED_LIBRI.exists():
        pytest.skip(f"{SHARED_LIBRI} not found")
    utts = LibriSpeech(root=SHARED_LIBRI).utterances()
    assert len(utts) == 254 and len({u.speaker for u in utts}) == 28
