"""The ``audformat`` dataset plugin, on databases built in fixtures with audformat's own API."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ser_bench.audio import load_audio, write_audio
from ser_bench.errors import ConfigError, PluginError
from ser_bench.testing import check_dataset, speech_like
from ser_bench_plugins.audformat_db import AudformatDataset

audformat = pytest.importorskip("audformat")
# audformat 1.4 calls DataFrame.set_index(inplace=True), deprecated in pandas 3.1.
pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword:Warning")

EMOTIONS = {"anger": 250.0, "neutral": 120.0, "sadness": 95.0}


def make_db(
    root: Path,
    *,
    n_speakers: int = 4,
    per_class: int = 2,
    speaker_table: str = "files",
    splits: bool = True,
    segmented: bool = False,
    duration_s: float = 0.5,
) -> Path:
    """An audformat database: wav/ media, an emotion scheme, speakers, train/test split tables.

    Args:
        speaker_table: "files" (a separate filewise table, as audb corpora do) or "labels"
            (a speaker column next to the emotion column).
        splits: per-split label tables (last speaker: test) or one table without splits.
        segmented: one long file per speaker, its utterances as segments (file, start, end).
    """
    (root / "wav").mkdir(parents=True, exist_ok=True)
    files, starts, ends, spk, emo, part = [], [], [], [], [], []
    for s in range(n_speakers):
        chunks = []
        for e, f0 in EMOTIONS.items():
            for k in range(per_class):
                x = speech_like(duration_s, f0=f0 * (1 + 0.04 * s), seed=100 * s + 10 * k + len(e))
                if segmented:
                    starts.append(sum(len(c) for c in chunks) / 16000)
                    ends.append(starts[-1] + duration_s)
                    chunks.append(x)
                    files.append(f"wav/speaker{s}.wav")
                else:
                    files.append(f"wav/s{s}_{e}_{k}.wav")
                    write_audio(root / files[-1], x)
                spk.append(f"spk{s}")
                emo.append(e)
                part.append("test" if s == n_speakers - 1 else "train")
        if segmented:
            write_audio(root / f"wav/speaker{s}.wav", np.concatenate(chunks))

    db = audformat.Database("tiny-emotion", source="generated in a test", usage=audformat.define.Usage.UNRESTRICTED)
    db.schemes["emotion"] = audformat.Scheme("str", labels=list(EMOTIONS))
    db.schemes["speaker"] = audformat.Scheme("str")

    def index(rows: list[int]):
        if segmented:
            return audformat.segmented_index([files[i] for i in rows], [starts[i] for i in rows], [ends[i] for i in rows])
        return audformat.filewise_index([files[i] for i in rows])

    def add_labels(table_id: str, rows: list[int], split_id: str | None) -> None:
        t = db[table_id] = audformat.Table(index(rows), split_id=split_id)
        t["emotion"] = audformat.Column(scheme_id="emotion")
        t["emotion"].set([emo[i] for i in rows])
        if speaker_table == "labels":
            t["speaker"] = audformat.Column(scheme_id="speaker")
            t["speaker"].set([spk[i] for i in rows])

    if splits:
        db.splits["train"] = audformat.Split(audformat.define.SplitType.TRAIN)
        db.splits["test"] = audformat.Split(audformat.define.SplitType.TEST)
        for p in ("train", "test"):
            add_labels(f"emotion.{p}", [i for i in range(len(files)) if part[i] == p], p)
    else:
        add_labels("emotion", list(range(len(files))), None)
    if speaker_table == "files":
        unique = sorted(set(files))
        t = db["files"] = audformat.Table(audformat.filewise_index(unique))
        t["speaker"] = audformat.Column(scheme_id="speaker")
        t["speaker"].set([spk[files.index(f)] for f in unique])
    db.save(str(root), storage_format="csv")
    return root


@pytest.fixture
def db_root(tmp_path):
    return make_db(tmp_path / "db")


def test_split_tables_and_a_files_table(db_root):
    ds = check_dataset(AudformatDataset, options={"root": str(db_root)})
    utts = ds.utterances()
    assert len(utts) == 4 * 3 * 2
    assert ds.has_partitions
    u = next(u for u in utts if u.id == "wav/s3_anger_1.wav")
    assert (u.speaker, u.label, u.partition) == ("spk3", "anger", "test")
    assert {u.partition for u in utts if u.speaker != "spk3"} == {"train"}
    assert ds.classes() == sorted(EMOTIONS)
    assert len(u.load()) == 8000


def test_speaker_column_in_the_label_table_without_splits(tmp_path):
    root = make_db(tmp_path / "db", speaker_table="labels", splits=False)
    ds = check_dataset(AudformatDataset, options={"root": str(root)})
    assert not ds.has_partitions
    assert {u.partition for u in ds.utterances()} == {None}
    assert sorted({u.speaker for u in ds.utterances()}) == ["spk0", "spk1", "spk2", "spk3"]


def test_segmented_tables_give_one_utterance_per_segment(tmp_path):
    root = make_db(tmp_path / "db", segmented=True, duration_s=0.4)
    ds = check_dataset(AudformatDataset, options={"root": str(root)})
    utts = ds.utterances()
    assert len(utts) == 24 and len({u.content_key() for u in utts}) == 24
    u = next(u for u in utts if u.id == "wav/speaker1.wav@0.800-1.200")  # 3rd segment: anger, anger, neutral
    assert u.label == "neutral" and u.speaker == "spk1"
    whole = ds.utterances()[0].load()
    assert len(u.load()) == 6400 and len(whole) == 6400
    full = load_audio(root / "wav/speaker1.wav")
    np.testing.assert_allclose(u.load(), full[12800:19200], atol=1e-4)


def test_label_map_and_classes(db_root):
    ds = AudformatDataset(root=db_root, label_map={"sadness": "low", "neutral": "low"}, classes=["anger", "low"])
    assert ds.classes() == ["anger", "low"]
    assert len(ds.utterances()) == 24
    ds = AudformatDataset(root=db_root, classes=["anger", "neutral"])
    assert ds.classes() == ["anger", "neutral"] and len(ds.utterances()) == 16
    with pytest.raises(ConfigError, match=r"unknown class\(es\) 'joy'.*this corpus has: anger, neutral, sadness"):
        AudformatDataset(root=db_root, classes=["joy", "anger"]).utterances()


def test_table_option_patterns_and_split_map(db_root):
    ds = AudformatDataset(root=db_root, table="emotion.train")
    assert {u.partition for u in ds.utterances()} == {"train"} and not ds.has_partitions
    assert len(AudformatDataset(root=db_root, table="emotion.*").utterances()) == 24
    assert len(AudformatDataset(root=db_root, table="emotion.test, emotion.train").utterances()) == 24
    ds = AudformatDataset(root=db_root, split_map={"test": "dev"})
    assert {u.partition for u in ds.utterances()} == {"train", "dev"} and not ds.has_partitions
    assert {u.partition for u in AudformatDataset(root=db_root, use_splits=False).utterances()} == {None}
    with pytest.raises(ConfigError, match=r"no table matches 'emo' \(option audformat.table\); tables: emotion.test, emotion.train, files"):
        AudformatDataset(root=db_root, table="emo").utterances()


def test_helpful_errors(db_root, tmp_path):
    with pytest.raises(ConfigError, match=r"no database header .*db.yaml; point --data-root audformat=PATH"):
        AudformatDataset(root=tmp_path).utterances()
    with pytest.raises(ConfigError, match=r"needs its corpus folder: pass --data-root audformat=PATH"):
        AudformatDataset().utterances()
    with pytest.raises(ConfigError, match=r"no table has a column or scheme 'arousal'; set -o audformat.label_column=NAME to one of: .*files: speaker"):
        AudformatDataset(root=db_root, label_column="arousal").utterances()
    with pytest.raises(ConfigError, match=r"no column or scheme 'talker' with speaker ids.*set -o audformat.speaker_column=NAME"):
        AudformatDataset(root=db_root, speaker_column="talker").utterances()
    with pytest.raises(ConfigError, match=r"Allowed options: .*label_column"):
        AudformatDataset(root=db_root, label_colum="emotion")


def test_missing_media_is_reported_or_skipped(db_root):
    (db_root / "wav/s0_anger_0.wav").unlink()
    (db_root / "wav/s1_sadness_1.wav").write_bytes(b"not audio")
    with pytest.raises(PluginError) as info:
        AudformatDataset(root=db_root).utterances()
    msg = str(info.value)
    assert "2 bad entries" in msg and "wav/s0_anger_0.wav: file not found (media not downloaded?" in msg
    assert "wav/s1_sadness_1.wav: cannot decode audio" in msg and "on_bad_entry=skip" in msg
    assert len(AudformatDataset(root=db_root, on_bad_entry="skip").utterances()) == 22


def test_conflicting_labels_across_tables(db_root):
    db = audformat.Database.load(str(db_root))
    t = db["relabelled"] = audformat.Table(audformat.filewise_index(["wav/s0_anger_0.wav"]))
    t["emotion"] = audformat.Column(scheme_id="emotion")
    t["emotion"].set(["neutral"])
    db.save(str(db_root), storage_format="csv")
    with pytest.raises(ConfigError, match=r"s0_anger_0.wav is labelled 'anger' in table 'emotion.train' but 'neutral' in table 'relabelled'"):
        AudformatDataset(root=db_root).utterances()
    assert len(AudformatDataset(root=db_root, table="relabelled", speaker_column="speaker").utterances()) == 1


def test_continuous_columns_are_refused(db_root):
    db = audformat.Database.load(str(db_root))
    db.schemes["arousal"] = audformat.Scheme("float", minimum=0, maximum=1)
    t = db["dims"] = audformat.Table(audformat.filewise_index(["wav/s0_anger_0.wav", "wav/s0_anger_1.wav"]))
    t["arousal"] = audformat.Column(scheme_id="arousal")
    t["arousal"].set([0.25, 0.8])
    db.save(str(db_root), storage_format="csv")
    with pytest.raises(ConfigError, match=r"column 'arousal' of table 'dims' holds continuous values"):
        AudformatDataset(root=db_root, label_column="arousal").utterances()


def test_registered_as_a_builtin():
    from ser_bench.plugins import build_registry, make_plugin_manager

    reg = build_registry(make_plugin_manager(entry_points=False))
    entry = reg.entry("dataset", "audformat")
    assert entry.resolve() is AudformatDataset and entry.dist == "ser-bench"


def test_an_audformat_database_runs_through_a_protocol(tmp_path):
    """`bench run` on a fixture database: its split tables become the folds (partition CV)."""
    import json

    from click.testing import CliRunner

    from ser_bench.cli import cli
    from ser_bench.db import Store

    root = make_db(tmp_path / "db", n_speakers=3, per_class=2)
    url = f"sqlite:///{tmp_path / 'results.db'}"
    res = CliRunner().invoke(cli, [
        "run", "mismatched", "--dataset", "audformat", "--data-root", f"audformat={root}", "--enhancer", "none",
        "--snr", "10", "--db", url, "--cache", str(tmp_path / "cache"), "--executor", "inline", "-q",
    ], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "0 failed" in res.output

    store = Store(url)
    run = store.runs_frame().iloc[-1]
    assert run.status == "done"
    assert json.loads(run.plugins_json)["dataset:audformat"].startswith("ser-bench ")
    uar = store.results_frame().query("metric == 'uar'")
    assert sorted(uar.test_condition) == ["clean", "noisy"]
    assert set(uar.dataset) == {"audformat"} and set(uar.fold) == {"partition"}  # from the split tables
    assert set(uar.n_test) == {6}  # the test split: speaker 2, 3 classes x 2
    assert uar.value.between(0, 1).all()
    assert uar[uar.test_condition == "clean"].value.iloc[0] > 0.5  # well above chance (1/3) on clean tones
