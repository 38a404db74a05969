"""Generic datasets: a folder per label, and a CSV/TSV manifest."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from ser_bench.errors import ConfigError, PluginError
from ser_bench.plugins import build_registry, make_plugin_manager
from ser_bench.testing import check_dataset
from ser_bench_plugins.generic import FolderDataset, ManifestDataset


def write_tone(path, seconds=0.1, sr=16000):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * 250 * t)).astype(np.float32), sr)


# ------------------------------------------------------------------ folder-dataset


@pytest.fixture
def folder_root(tmp_path):
    """ROOT/<label>/<speaker>/<file>: 2 labels x 2 speakers x 2 files."""
    root = tmp_path / "corpus"
    for label in ("happy", "sad"):
        for spk in ("spkA", "spkB"):
            for i in range(2):
                write_tone(root / label / spk / f"{spk}_{label}_{i}.wav")
    return root


def test_folder_labels_and_speakers_from_subfolders(folder_root):
    ds = FolderDataset(root=folder_root)
    utts = ds.utterances()
    assert ds.classes() == ["happy", "sad"]
    assert len(utts) == 8
    u = next(u for u in utts if u.id == "sad/spkB/spkB_sad_1")
    assert (u.label, u.speaker) == ("sad", "spkB")
    assert u.load().shape == (1600,)


def test_folder_speaker_regex(tmp_path):
    for label in ("a", "b"):
        for spk in ("m01", "f02"):
            write_tone(tmp_path / label / f"{spk}-take1.flac")
    ds = FolderDataset(root=tmp_path, speaker_regex=r"^(?P<speaker>[mf]\d+)-")
    assert sorted({u.speaker for u in ds.utterances()}) == ["f02", "m01"]
    with pytest.raises(ConfigError, match="needs a group"):
        FolderDataset(root=tmp_path, speaker_regex=r"take").utterances()
    write_tone(tmp_path / "a" / "nospeaker.wav")
    with pytest.raises(PluginError, match="does not match 'nospeaker.wav'"):
        FolderDataset(root=tmp_path, speaker_regex=r"^([mf]\d+)-").utterances()


def test_flat_folders_get_an_unknown_speaker(tmp_path):
    write_tone(tmp_path / "x" / "1.wav")
    write_tone(tmp_path / "y" / "2.wav")
    assert {u.speaker for u in FolderDataset(root=tmp_path).utterances()} == {"unknown"}


def test_folder_empty_label_folder_and_label_outside_classes(folder_root):
    (folder_root / "angry").mkdir()
    (folder_root / "angry" / "readme.txt").write_text("no audio")
    with pytest.raises(PluginError, match="angry: label folder holds no audio"):
        FolderDataset(root=folder_root).utterances()
    (folder_root / "angry" / "readme.txt").unlink()
    (folder_root / "angry").rmdir()
    with pytest.raises(PluginError, match="label 'sad' is not in the option classes"):
        FolderDataset(root=folder_root, classes=["happy", "neutral"]).utterances()
    ds = FolderDataset(root=folder_root, classes=["happy", "neutral"], on_bad_entry="skip")
    assert ds.classes() == ["happy"]


def test_folder_corrupt_file_and_empty_root(folder_root, tmp_path):
    (folder_root / "sad" / "spkA" / "broken.wav").write_bytes(b"nope")
    with pytest.raises(PluginError, match="broken.wav: cannot decode audio"):
        FolderDataset(root=folder_root).utterances()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PluginError, match="has no label folders"):
        FolderDataset(root=empty).utterances()


# ------------------------------------------------------------------ manifest


@pytest.fixture
def manifest_dir(tmp_path):
    for i in range(6):
        write_tone(tmp_path / "audio" / f"u{i}.wav")
    return tmp_path


def write_manifest(path, rows, sep=","):
    path.write_text("\n".join(sep.join(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_manifest_csv_with_partitions(manifest_dir):
    m = write_manifest(
        manifest_dir / "list.csv",
        [("path", "label", "speaker", "partition", "extra")]
        + [(f"audio/u{i}.wav", "hi" if i % 2 else "lo", f"s{i // 2}", p, "x")
           for i, p in enumerate(["train", "train", "valid", "dev", "test", "Test"])],
    )  # fmt: skip
    ds = ManifestDataset(manifest=m)
    assert ds.has_partitions is True
    utts = ds.utterances()
    assert [u.partition for u in utts] == ["train", "train", "dev", "dev", "test", "test"]
    assert (utts[3].id, utts[3].label, utts[3].speaker) == ("audio/u3", "hi", "s1")
    assert utts[0].path == manifest_dir / "audio" / "u0.wav"


def test_manifest_tsv_without_partitions_and_root_option(manifest_dir):
    m = write_manifest(
        manifest_dir / "list.tsv",
        [("Speaker", "Path", "Label")] + [(f"s{i}", f"u{i}.wav", "a" if i < 3 else "b") for i in range(6)],
        sep="\t",
    )
    ds = ManifestDataset(manifest=m, root=manifest_dir / "audio")
    assert ds.has_partitions is False
    assert ds.classes() == ["a", "b"] and all(u.partition is None for u in ds.utterances())


def test_conformance(folder_root, manifest_dir):
    check_dataset(FolderDataset, options={"root": str(folder_root)})
    m = write_manifest(manifest_dir / "m.csv", [("path", "label", "speaker")]
                       + [(f"audio/u{i}.wav", "ab"[i % 2], f"s{i // 2}") for i in range(6)])
    check_dataset(ManifestDataset, options={"manifest": str(m)})


def test_registered_as_builtin():
    reg = build_registry(make_plugin_manager(entry_points=False))
    assert reg.get("dataset", "manifest") is ManifestDataset
    assert reg.get("dataset", "folder-dataset") is FolderDataset


def test_manifest_missing_column_or_file(manifest_dir):
    m = write_manifest(manifest_dir / "bad.csv", [("path", "label"), ("audio/u0.wav", "a")])
    with pytest.raises(ConfigError, match="missing column.*speaker"):
        ManifestDataset(manifest=m).utterances()
    with pytest.raises(ConfigError, match="does not exist"):
        ManifestDataset(manifest=manifest_dir / "nope.csv")
    with pytest.raises(ConfigError, match="needs the option -o manifest.manifest=PATH"):
        ManifestDataset().utterances()
    header_only = write_manifest(manifest_dir / "h.csv", [("path", "label", "speaker")])
    with pytest.raises(PluginError, match="lists no utterances"):
        ManifestDataset(manifest=header_only).utterances()


def test_manifest_bad_rows_are_listed_with_line_numbers(manifest_dir):
    (manifest_dir / "audio" / "u5.wav").write_bytes(b"corrupt")
    m = write_manifest(
        manifest_dir / "list.csv",
        [
            ("path", "label", "speaker", "partition"),
            ("audio/u0.wav", "a", "s0", "train"),  # line 2: fine
            ("audio/u1.wav", "", "s0", "train"),  # line 3: empty label
            ("audio/u2.wav", "zzz", "s1", "train"),  # line 4: label outside classes
            ("audio/u3.wav", "b", "s1", "holdout"),  # line 5: bad partition
            ("audio/missing.wav", "b", "s2", "test"),  # line 6: no such file
            ("audio/u5.wav", "b", "s2", "test"),  # line 7: corrupt audio
            ("audio/u0.wav", "a", "s0", "train"),  # line 8: duplicate
            ("audio/u4.wav", "b", "s2", "test"),  # line 9: fine
        ],
    )
    with pytest.raises(PluginError) as exc:
        ManifestDataset(manifest=m, classes=["a", "b"]).utterances()
    msg = str(exc.value)
    assert "6 bad entries" in msg
    for needle in ("line 3: empty label", "line 4: label 'zzz' is not in", "line 5: partition 'holdout'",
                   "line 6: audio file", "line 7:", "cannot decode", "line 8: path 'audio/u0.wav' already listed"):
        assert needle in msg  # fmt: skip
    ok = ManifestDataset(manifest=m, classes=["a", "b"], on_bad_entry="skip").utterances()
    assert [u.id for u in ok] == ["audio/u0", "audio/u4"]
