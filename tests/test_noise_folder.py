"""The ``folder`` noise source: which clips a run mixes (``split``, ``test_fraction``), a split
that stays deterministic and disjoint, the default's identity kept, and the clips a run used
recorded in its provenance (``bench runs show``)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from ser_bench.cli import cli
from ser_bench.config import RunConfig
from ser_bench.db import Store
from ser_bench.errors import ConfigError, PluginError
from ser_bench.interfaces import split_part, stable_hash
from ser_bench.mixing import mix
from ser_bench.protocols import Condition
from ser_bench.runner import Context, registry_for, run
from ser_bench.testing import check_noise_source
from ser_bench_plugins.noise_folder import FolderNoise

SR = 16_000
EXTRA = ["ser_bench.testing:testing_plugin"]
N_CLIPS = 16


@pytest.fixture
def noise_root(tmp_path):
    """16 short noise clips in two sub-folders, each of its own colour/level."""
    root = tmp_path / "noise"
    for i in range(N_CLIPS):
        sub = root / ("indoor" if i % 2 else "outdoor")
        sub.mkdir(parents=True, exist_ok=True)
        x = np.random.default_rng(i).standard_normal(SR // 2) * (0.05 + 0.01 * i)
        sf.write(sub / f"clip{i:02d}.flac", x.astype(np.float32), SR)
    return root


def _ids(clips) -> list[str]:
    return [c.id for c in clips]


def test_default_is_the_25_percent_test_part_with_an_unchanged_identity(noise_root):
    src = FolderNoise(root=noise_root)
    every = _ids(src.clips("all"))
    assert len(every) == N_CLIPS
    test = [i for i in every if split_part(i, 0.25, salt="folder") == "test"]
    assert 0 < len(test) < N_CLIPS
    assert _ids(src.clips("test")) == test
    assert _ids(src.clips("train")) == [i for i in every if i not in test]
    # the default options hold no `split` (as before it existed); where the clips lie is no part of it
    ident = src.identity()
    assert ident["config"] == {"test_fraction": 0.25, "extensions": [".wav", ".flac", ".ogg", ".mp3"]}
    assert ident["clips"] == stable_hash([[c.id, c.fingerprint, "test" if c.id in test else "train"]
                                          for c in src.clips("all")])
    check_noise_source(src)  # the conformance rules for noise sources hold


def test_split_all_and_train_mix_other_clips_keeping_the_parts_deterministic_and_disjoint(noise_root):
    default = FolderNoise(root=noise_root)
    test, train = _ids(default.clips("test")), _ids(default.clips("train"))
    every = FolderNoise(root=noise_root, split="all")
    assert _ids(every.clips("test")) == _ids(default.clips("all"))  # what a run mixes: every clip
    assert _ids(every.clips("train")) == train  # enhancer training still gets only the train part
    seen = FolderNoise(root=noise_root, split="train")
    assert _ids(seen.clips("test")) == train
    for src in (every, seen):  # the split itself does not move
        parts = {c.id: src.part_of(c) for c in src.clips("all")}
        assert parts == {c.id: default.part_of(c) for c in reversed(default.clips("all"))}
        assert {i for i, p in parts.items() if p == "test"} == set(test)
    # every option changes the identity (so no mixture of another choice is reused)
    idents = {stable_hash(s.identity()) for s in (default, every, seen, FolderNoise(root=noise_root, test_fraction=1))}
    assert len(idents) == 4


def test_test_fraction_one_puts_every_clip_in_the_test_part(noise_root):
    src = FolderNoise(root=noise_root, test_fraction=1)
    assert _ids(src.clips("test")) == _ids(src.clips("all"))
    with pytest.raises(PluginError, match=r"no clip of its 16 falls in the train part \(test_fraction=1\); change "
                                          r"-o folder.test_fraction or -o folder.split"):
        src.clips("train")  # nothing an enhancer could train on
    assert _ids(FolderNoise(root=noise_root, test_fraction=0, split="train").clips("test")) == _ids(src.clips("all"))


def test_bad_options_are_clear(noise_root):
    with pytest.raises(ConfigError, match="split"):
        FolderNoise(root=noise_root, split="everything")
    with pytest.raises(ConfigError, match="test_fraction"):
        FolderNoise(root=noise_root, test_fraction=1.5)


def _cfg(noise_root, **opts) -> RunConfig:
    return RunConfig(protocol="mismatched", datasets=["tones"], ser_models=["centroid"], enhancers=["none"],
                     noise_sources=["folder"], snrs=[0.0],
                     options={"tones": {"per_class": 2}, "folder": {"root": str(noise_root), **opts}})


def test_a_run_mixes_the_chosen_clips_and_records_them(tmp_path, noise_root):
    store = Store(str(tmp_path / "r.db"))
    runs = {}
    for split in ("test", "all"):
        cfg = _cfg(noise_root, split=split) if split != "test" else _cfg(noise_root)
        s = run(cfg, store=store, executor="inline", extra_plugins=EXTRA, progress=False,
                cache_dir=str(tmp_path / "cache"))
        assert s.n_failed == 0
        runs[split] = s.run_id
        # the mixtures are made from the chosen clips
        ctx = Context(cfg, registry_for(EXTRA), str(tmp_path / "cache"))
        pool = FolderNoise(root=noise_root).clips(split)
        for utt in list(ctx.utterances("tones").values())[:4]:
            got, _ = ctx.audio(utt, Condition(kind="noisy", noise="folder", snr=0.0))
            want = mix(utt.load(), pool, 0.0, key=utt.content_key(), seed=cfg.seed, source="folder").noisy
            assert np.allclose(got, want, atol=1e-6)
    rows = store.runs_frame().set_index("id")
    for split, rid in runs.items():
        used = json.loads(rows.loc[rid, "env_json"])["noise_clips"]["folder"]
        want = _ids(FolderNoise(root=noise_root).clips(split))
        assert used["part"] == split and used["clips"] == want
        assert (used["n_clips"], used["of"]) == (len(want), N_CLIPS)
    # visible in `bench runs show`
    out = CliRunner().invoke(cli, ["runs", "show", str(runs["all"]), "--db", str(tmp_path / "r.db")]).output
    shown = json.loads(out[: out.index("\n}\n") + 2])["env_json"]["noise_clips"]["folder"]
    assert shown["clips"] == _ids(FolderNoise(root=noise_root).clips("all"))
    # a clean-only run mixes no noise and records none
    s = run(_cfg(noise_root).model_copy(update={"protocol": "clean"}), store=store, executor="inline",
            extra_plugins=EXTRA, progress=False, cache_dir=str(tmp_path / "cache"))
    assert "noise_clips" not in json.loads(store.runs_frame().set_index("id").loc[s.run_id, "env_json"])
