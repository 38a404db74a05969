"""The AudioSet noise source on a small fixture in AudioSet's own format."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ser_bench.errors import ConfigError
from ser_bench_plugins.audioset import HUMAN_SOUNDS, MUSIC, AudioSetNoise, descendants, load_ontology, read_segments

REAL_ONTOLOGY = Path(__file__).resolve().parents[2] / "shared" / "data" / "audioset" / "ontology.json"

#: A miniature ontology with the real ids, used when the real one is absent.
MINI_ONTOLOGY = [
    {"id": HUMAN_SOUNDS, "name": "Human sounds", "child_ids": ["/m/09l8g"]},
    {"id": "/m/09l8g", "name": "Human voice", "child_ids": ["/m/09x0r"]},
    {"id": "/m/09x0r", "name": "Speech", "child_ids": []},
    {"id": MUSIC, "name": "Music", "child_ids": ["/m/0kpv1t"]},
    {"id": "/m/0kpv1t", "name": "Music genre", "child_ids": ["/m/064t9"]},
    {"id": "/m/064t9", "name": "Pop music", "child_ids": []},
    {"id": "/m/0jbk", "name": "Animal", "child_ids": ["/m/0bt9lr"]},
    {"id": "/m/0bt9lr", "name": "Dog", "child_ids": []},
    {"id": "/m/06mb1", "name": "Rain", "child_ids": []},
    {"id": "/m/0k4j", "name": "Car", "child_ids": []},
]

CSV = """\
# Segments csv created Sun Mar  5 10:54:31 2017
# num_ytids=7, num_segs=7, num_unique_labels=6, num_positive_labels=9
# YTID, start_seconds, end_seconds, positive_labels
--dogA0000x, 30.000, 40.000, "/m/0jbk,/m/0bt9lr"
rainB11111, 0.000, 10.000, "/m/06mb1"
speechC222, 10.000, 20.000, "/m/09x0r,/m/0k4j"
popmusicD3, 50.000, 60.000, "/m/064t9"
carE444444, 5.500, 15.500, "/m/0k4j"
missingF55, 0.000, 10.000, "/m/06mb1"
musicG6666, 0.000, 10.000, "/m/04rlf,/m/06mb1"
"""


@pytest.fixture(params=["real", "mini"])
def audioset_root(tmp_path, request) -> Path:
    if request.param == "real":
        if not REAL_ONTOLOGY.exists():
            pytest.skip(f"real AudioSet ontology not found at {REAL_ONTOLOGY}")
        (tmp_path / "ontology.json").write_text(REAL_ONTOLOGY.read_text(encoding="utf-8"), encoding="utf-8")
    else:
        (tmp_path / "ontology.json").write_text(json.dumps(MINI_ONTOLOGY), encoding="utf-8")
    (tmp_path / "balanced_train_segments.csv").write_text(CSV, encoding="utf-8")
    rng = np.random.default_rng(0)
    audio = tmp_path / "audio"
    audio.mkdir()
    # the naming schemes downloaders use: YTID, YYTID, YTID_START, YTID_START_END
    for stem in ["--dogA0000x", "YrainB11111", "speechC222_10.000_20.000", "popmusicD3", "carE444444_5.5",
                 "musicG6666", "unlistedZZ"]:
        sf.write(audio / f"{stem}.flac", (0.1 * rng.standard_normal(1600)).astype(np.float32), 16000)
    return tmp_path


def test_read_segments_parses_quoted_labels(audioset_root):
    rows = read_segments(audioset_root / "balanced_train_segments.csv")
    assert rows[0] == ("--dogA0000x", 30.0, 40.0, ["/m/0jbk", "/m/0bt9lr"])
    assert len(rows) == 7


def test_drops_human_sounds_music_and_descendants(audioset_root):
    src = AudioSetNoise(root=audioset_root)
    clips = src.clips("all")
    assert sorted(c.id for c in clips) == ["--dogA0000x", "carE444444", "rainB11111"]
    assert src.dropped == 3  # speech (child of Human sounds), pop music (Music), music
    assert src.missing == 1
    x = clips[0].load()
    assert x.dtype == np.float32 and x.ndim == 1
    parts = {src.part_of(c) for c in clips}
    assert parts <= {"train", "test"}
    assert [src.part_of(c) for c in clips] == [src.part_of(c) for c in AudioSetNoise(root=audioset_root).clips("all")]


def test_exclude_option_and_ontology_path(audioset_root, tmp_path):
    onto = audioset_root / "ontology.json"
    moved = tmp_path / "elsewhere.json"
    moved.write_text(onto.read_text(encoding="utf-8"), encoding="utf-8")
    onto.unlink()
    with pytest.raises(ConfigError, match="ontology"):
        AudioSetNoise(root=audioset_root).clips("all")
    src = AudioSetNoise(root=audioset_root, ontology=moved, exclude=[MUSIC])
    ids = sorted(c.id for c in src.clips("all"))
    assert "speechC222" in ids and "popmusicD3" not in ids


def test_errors_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="root"):
        AudioSetNoise().clips("all")
    with pytest.raises(ConfigError, match="does not exist"):
        AudioSetNoise(root=tmp_path / "nope").clips("all")
    (tmp_path / "ontology.json").write_text(json.dumps(MINI_ONTOLOGY), encoding="utf-8")
    with pytest.raises(ConfigError, match="segment CSV"):
        AudioSetNoise(root=tmp_path).clips("all")


@pytest.mark.integration
def test_real_ontology_descendants():
    if not REAL_ONTOLOGY.exists():
        pytest.skip(f"real AudioSet ontology not found at {REAL_ONTOLOGY}")
    onto = load_ontology(REAL_ONTOLOGY)
    banned = descendants(onto, [HUMAN_SOUNDS, MUSIC])
    assert {"/m/09x0r", "/m/064t9", HUMAN_SOUNDS, MUSIC} <= banned  # Speech, Pop music
    assert not {"/m/0bt9lr", "/m/06mb1", "/m/0k4j"} & banned  # Dog, Rain, Car
    assert 200 < len(banned) < len(onto)
