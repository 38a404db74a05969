"""CREMA-D, ESD, TESS, SAVEE and ShEMO loaders, each on a fixture in its release layout."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import soundfile as sf

from ser_bench.errors import PluginError
from ser_bench.plugins import build_registry, make_plugin_manager
from ser_bench.protocols import make_folds
from ser_bench.testing import check_dataset
from ser_bench_plugins.corpus_utils import write_fixture_tone
from ser_bench_plugins.crema_d import CremaD
from ser_bench_plugins.esd import Esd
from ser_bench_plugins.savee import Savee
from ser_bench_plugins.shemo import Shemo
from ser_bench_plugins.tess import Tess


def assert_speaker_disjoint(utts, folds):
    spk = {u.id: u.speaker for u in utts}
    seen: dict[str, str] = {}
    for f in folds:
        assert set(f.train).isdisjoint(f.test) and len(f.train) + len(f.test) == len(utts)
        for i in f.test:
            assert seen.setdefault(spk[i], f.name) == f.name, f"speaker {spk[i]} in two folds"
        assert {spk[i] for i in f.test}.isdisjoint({spk[i] for i in f.train})


# --------------------------------------------------------------------------- CREMA-D

CREMA_ACTORS = {"1001": "Male", "1002": "Female", "1003": "Female", "1004": "Female", "1005": "Male",
                "1006": "Female", "1007": "Male", "1008": "Female", "1009": "Male", "1010": "Male"}


@pytest.fixture(scope="module")
def crema_root(tmp_path_factory):
    """10 actors: DFA and ITH in the 6 emotions at XX, IEO in 5 emotions at LO/MD/HI and NEU_XX."""
    root = tmp_path_factory.mktemp("crema")
    rows = ["ActorID,Age,Sex,Race,Ethnicity"]
    seed = 0
    for actor, sex in CREMA_ACTORS.items():
        rows.append(f"{actor},{20 + int(actor) % 40},{sex},Caucasian,Not Hispanic")
        names = [f"{actor}_{s}_{e}_XX" for s in ("DFA", "ITH") for e in ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")]
        names += [f"{actor}_IEO_{e}_{lv}" for e in ("ANG", "DIS", "FEA", "HAP", "SAD") for lv in ("LO", "MD", "HI")]
        names += [f"{actor}_IEO_NEU_XX"]
        for n in names:
            seed += 1
            write_fixture_tone(root / "AudioWAV" / f"{n}.wav", seed, seconds=0.3)
    (root / "VideoDemographics.csv").write_text("\n".join(rows) + "\n")
    return root


def test_crema_counts_and_intensity(crema_root):
    utts = CremaD(root=crema_root).utterances()
    assert len(utts) == 280  # 10 actors x (12 + 15 + 1)
    assert Counter(u.label for u in utts) == {"anger": 50, "disgust": 50, "fear": 50, "happy": 50, "sad": 50, "neutral": 30}
    assert len(CremaD(root=crema_root, intensities=["HI"]).utterances()) == 50
    assert len(CremaD(root=crema_root, intensities=["XX"]).utterances()) == 130
    assert next(u for u in utts if u.id == "1003_IEO_FEA_MD").speaker == "1003"


def test_crema_speaker_folds_are_disjoint_and_balanced_by_sex(crema_root):
    utts = CremaD(root=crema_root).utterances()
    folds = make_folds(utts, "auto", "crema-d", False)
    assert [f.name for f in folds] == [f"speakers{i}of5" for i in range(1, 6)]
    assert_speaker_disjoint(utts, folds)
    spk = {u.id: u.speaker for u in utts}
    for f in folds:  # 2 actors each, one of each sex (5 female, 5 male in the fixture)
        actors = {spk[i] for i in f.test}
        assert len(actors) == 2 and {CREMA_ACTORS[a] for a in actors} == {"Male", "Female"}
    assert len(make_folds(CremaD(root=crema_root, speaker_folds=0).utterances(), "auto", "crema-d", False)) == 10


def test_crema_conformance_and_bad_files(crema_root, tmp_path):
    check_dataset(CremaD, options={"root": str(crema_root)})
    (tmp_path / "AudioWAV").mkdir()
    write_fixture_tone(tmp_path / "AudioWAV" / "1001_DFA_ANG_XX.wav", 1)
    write_fixture_tone(tmp_path / "AudioWAV" / "1002_DFA_SAD_XX.wav", 2)
    (tmp_path / "AudioWAV" / "1076_MTI_SAD_XX.wav").write_bytes(b"")  # an empty file
    write_fixture_tone(tmp_path / "AudioWAV" / "1001_DFA_BOR_XX.wav", 3)  # unknown emotion
    with pytest.raises(PluginError, match=r"2 bad entries(?s:.*)1001_DFA_BOR_XX(?s:.*)1076_MTI_SAD_XX"):
        CremaD(root=tmp_path, speaker_folds=0).utterances()
    assert len(CremaD(root=tmp_path, speaker_folds=2, on_bad_entry="skip").utterances()) == 2
    (tmp_path / "empty").mkdir()
    with pytest.raises(PluginError, match=r"no \.wav files .*AudioWAV/\{ActorID\}"):
        CremaD(root=tmp_path / "empty").utterances()


# --------------------------------------------------------------------------- ESD

ESD_RANGES = {"Neutral": 0, "Angry": 350, "Happy": 700, "Sad": 1050, "Surprise": 1400}
ZH = {"Neutral": "中立", "Angry": "生气", "Happy": "快乐", "Sad": "伤心", "Surprise": "惊喜"}


@pytest.fixture(scope="module")
def esd_root(tmp_path_factory):
    """Mandarin 0001, 0002 and English 0011-0013; 2 utterances per emotion, in train/ and test/
    subfolders; transcripts tab-separated (0002's in GB18030)."""
    root = tmp_path_factory.mktemp("esd") / "Emotional Speech Dataset (ESD)"
    seed = 0
    for spk in ("0001", "0002", "0011", "0012", "0013"):
        lines = []
        for emo, base in ESD_RANGES.items():
            for j, part in ((1, "train"), (331, "test")):
                uid = f"{spk}_{base + j:06d}"
                seed += 1
                write_fixture_tone(root / spk / emo / part / f"{uid}.wav", seed, seconds=0.3)
                said = ZH[emo] if spk < "0011" else emo
                text = "打远一看，它们的确很是美丽，" if spk < "0011" else "The nine the eggs, I keep."
                lines.append(f"{uid}\t{text}\t{said}")
        enc = "gb18030" if spk == "0002" else "utf-8"
        (root / spk / f"{spk}.txt").write_bytes(("\n".join(lines) + "\n").encode(enc))
    return root.parent


def test_esd_english_by_default(esd_root):
    utts = Esd(root=esd_root).utterances()
    assert len(utts) == 30 and {u.speaker for u in utts} == {"0011", "0012", "0013"}
    assert Counter(u.label for u in utts) == {c: 6 for c in ("neutral", "angry", "happy", "sad", "surprise")}
    assert next(u for u in utts if u.id == "0012_000351").label == "angry"
    folds = make_folds(utts, "auto", "esd", False)
    assert len(folds) == 3
    assert_speaker_disjoint(utts, folds)


def test_esd_mandarin_labels(esd_root):
    zh = Esd(root=esd_root, language="mandarin").utterances()
    assert len(zh) == 20 and {u.speaker for u in zh} == {"0001", "0002"}
    assert len(Esd(root=esd_root, language="both").utterances()) == 50


def test_esd_transcript_disagreement_is_a_bad_entry(esd_root, tmp_path):
    import shutil

    root = shutil.copytree(esd_root, tmp_path / "esd")
    t = root / "Emotional Speech Dataset (ESD)" / "0001" / "0001.txt"
    t.write_text(t.read_text().replace("0001_000351\t打远一看，它们的确很是美丽，\t生气", "0001_000351\t打远一看\t快乐"))
    with pytest.raises(PluginError, match=r"1 bad entry(?s:.*)0001_000351.*says '快乐', the folder Angry/"):
        Esd(root=root, language="mandarin").utterances()
    with pytest.raises(PluginError, match=r"no english speaker folders \(0011\.\.0020\)"):
        Esd(root=tmp_path).utterances()


def test_esd_conformance(esd_root):
    check_dataset(Esd, options={"root": str(esd_root)})


# --------------------------------------------------------------------------- TESS

TESS_EMOS = ("angry", "disgust", "fear", "happy", "neutral", "ps", "sad")


@pytest.fixture(scope="module")
def tess_root(tmp_path_factory):
    """2 speakers x 7 emotions x 3 words at 24,414 Hz, in the per-speaker-emotion folders."""
    root = tmp_path_factory.mktemp("tess") / "TESS Toronto emotional speech set data"
    seed = 0
    for spk in ("OAF", "YAF"):
        for emo in TESS_EMOS:
            folder = f"{spk}_{'Pleasant_surprise' if emo == 'ps' else emo.capitalize() if emo in ('fear', 'sad') else emo}"
            for word in ("back", "bar", "germ"):
                seed += 1
                write_fixture_tone(root / folder / f"{spk}_{word}_{emo}.wav", seed, seconds=0.5, sr=24414)
    return root


def test_tess_counts_rate_and_folds(tess_root):
    utts = Tess(root=tess_root).utterances()
    assert len(utts) == 42 and Counter(u.speaker for u in utts) == {"OAF": 21, "YAF": 21}
    assert Counter(u.label for u in utts)["surprise"] == 6  # "ps"
    u = next(u for u in utts if u.id == "YAF_germ_ps")
    assert sf.info(str(u.path)).samplerate == 24414
    x = u.load()
    assert x.dtype == np.float32 and abs(len(x) - 8000) <= 2  # 0.5 s resampled to 16 kHz by the harness
    folds = make_folds(utts, "auto", "tess", False)
    assert len(folds) == 2
    assert_speaker_disjoint(utts, folds)
    check_dataset(Tess, options={"root": str(tess_root)})


def test_tess_duplicate_copy_is_a_bad_entry(tess_root, tmp_path):
    import shutil

    root = shutil.copytree(tess_root, tmp_path / "tess")
    shutil.copy(root / "OAF_angry" / "OAF_back_angry.wav", tmp_path / "tess" / "OAF_back_angry.wav")
    with pytest.raises(PluginError, match="1 bad entry(?s:.*)same recording as"):
        Tess(root=root).utterances()


# --------------------------------------------------------------------------- SAVEE

SAVEE_CODES = [f"{c}{i:02d}" for c in ("a", "d", "f", "h", "sa", "su") for i in (1, 2)] + [f"n{i:02d}" for i in range(1, 5)]


@pytest.mark.parametrize("layout", ["AudioData", "flat"])
def test_savee_both_layouts(layout, tmp_path):
    seed = 0
    for spk in ("DC", "JE", "JK", "KL"):
        for code in SAVEE_CODES:
            seed += 1
            path = tmp_path / "AudioData" / spk / f"{code}.wav" if layout == "AudioData" else tmp_path / "ALL" / f"{spk}_{code}.wav"
            write_fixture_tone(path, seed, seconds=0.3, sr=44100)
    (tmp_path / "AudioData").mkdir(exist_ok=True)
    (tmp_path / "AudioData" / "Info.txt").write_text("SAVEE")
    utts = Savee(root=tmp_path).utterances()
    assert len(utts) == 64
    assert Counter(u.label for u in utts) == {"anger": 8, "disgust": 8, "fear": 8, "happiness": 8, "sadness": 8,
                                              "surprise": 8, "neutral": 16}
    assert next(u for u in utts if u.id == "JK_su02").label == "surprise"
    folds = make_folds(utts, "auto", "savee", False)
    assert len(folds) == 4
    assert_speaker_disjoint(utts, folds)
    check_dataset(Savee, options={"root": str(tmp_path)})


def test_savee_wrong_root(tmp_path):
    with pytest.raises(PluginError, match=r"no \.wav files .*AudioData/\{DC,JE,JK,KL\}"):
        Savee(root=tmp_path).utterances()


# --------------------------------------------------------------------------- ShEMO


@pytest.fixture(scope="module")
def shemo_root(tmp_path_factory):
    """4 female + 6 male speakers, each once in each of the 6 emotions."""
    root = tmp_path_factory.mktemp("shemo")
    seed = 0
    for gender, folder, n in (("F", "female", 4), ("M", "male", 6)):
        for s in range(1, n + 1):
            for j, emo in enumerate("AHNSWF", 1):
                seed += 1
                write_fixture_tone(root / folder / f"{gender}{s:02d}{emo}{j:02d}.wav", seed, seconds=0.3, sr=44100)
    return root


def test_shemo_counts_and_folds(shemo_root):
    utts = Shemo(root=shemo_root).utterances()
    assert len(utts) == 60 and len({u.speaker for u in utts}) == 10
    assert Counter(u.label for u in utts) == {c: 10 for c in ("anger", "happiness", "neutral", "sadness", "surprise", "fear")}
    folds = make_folds(utts, "auto", "shemo", False)
    assert len(folds) == 5 and all(len(f.test) == 12 for f in folds)
    assert_speaker_disjoint(utts, folds)
    assert len(make_folds(utts, "loso", "shemo", False)) == 10
    check_dataset(Shemo, options={"root": str(shemo_root)})


def test_shemo_gender_folder_mismatch_and_wrong_root(shemo_root, tmp_path):
    import shutil

    root = shutil.copytree(shemo_root, tmp_path / "shemo")
    shutil.move(root / "male" / "M01A01.wav", root / "female" / "M01A01.wav")
    with pytest.raises(PluginError, match="1 bad entry(?s:.*)gender letter M but the file is in female/"):
        Shemo(root=root).utterances()
    with pytest.raises(PluginError, match=r"no female/ or male/ folder .*\{female,male\}/"):
        Shemo(root=tmp_path / "shemo" / "female").utterances()


def test_all_registered():
    reg = build_registry(make_plugin_manager(entry_points=False))
    for name, cls in (("crema-d", CremaD), ("esd", Esd), ("tess", Tess), ("savee", Savee), ("shemo", Shemo)):
        assert reg.get("dataset", name) is cls
