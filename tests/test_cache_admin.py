"""``bench cache du`` and ``bench cache prune``: sizes by kind / dataset / enhancer, and pruning that
never breaks a later run (a pruned entry it needs is recomputed)."""
from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
from click.testing import CliRunner

from ser_bench.cache_admin import entries, parse_age, parse_size, prune, usage
from ser_bench.cli import cli
from ser_bench.db import Store
from ser_bench.errors import ConfigError
from ser_bench.runner import run


@pytest.fixture
def warm(registry, tiny_config, tmp_path):
    """A cache of one mismatched run keeping enhanced audio, and its results."""
    cfg = tiny_config("mismatched", keep_audio="enhanced")
    s = run(cfg, store=Store(str(tmp_path / "a.db")), registry=registry, progress=False)
    assert s.n_failed == 0
    return cfg, tmp_path / "cache"


def _values(db):
    return Store(str(db)).results_frame().sort_values(["cell_key", "metric"]).value.to_numpy()


def test_du_sizes_by_kind_dataset_and_enhancer(warm):
    _, root = warm
    res = CliRunner().invoke(cli, ["cache", "du", "--json", "--cache", str(root)])
    assert res.exit_code == 0, res.output
    u = json.loads(res.output)
    files = [p for p in root.rglob("*") if p.is_file() and "index" not in p.relative_to(root).parts]
    assert u["entries"] == len(files) and u["bytes"] == sum(p.stat().st_size for p in files)
    kinds = u["by_kind"]
    assert {"audio", "features", "fits", "audit"} <= set(kinds)
    assert kinds["audio"]["entries"] == 24 and kinds["features"]["entries"] == 60 and kinds["fits"]["entries"] == 3
    # runs index what they write: every feature, fit and audio entry is placed
    assert u["by_dataset"]["tones"]["entries"] == 24 + 60 + 3
    assert u["by_enhancer"]["half"]["entries"] == 24 + 24  # its audio; features of 12 utts x 2 SNRs
    assert sum(g["bytes"] for g in u["by_enhancer"].values()) == u["bytes"]
    text = CliRunner().invoke(cli, ["cache", "du", "--cache", str(root)]).output
    assert "by kind:" in text and "features" in text and "tones" in text and "half" in text


def test_pruned_features_and_fits_are_recomputed_by_the_next_run(warm, registry, tmp_path, monkeypatch):
    cfg, root = warm
    from conftest import PeakModel

    res = CliRunner().invoke(cli, ["cache", "prune", "--kind", "features", "--kind", "fits", "--cache", str(root)])
    assert res.exit_code == 0 and "removed 63 entries" in res.output, res.output
    assert not list((root / "features").rglob("*.npy")) and not list((root / "fits").rglob("*.pkl"))
    calls = {"n": 0}
    real = PeakModel.featurize
    monkeypatch.setattr(PeakModel, "featurize", lambda self, a: calls.__setitem__("n", calls["n"] + 1) or real(self, a))
    s = run(cfg, store=Store(str(tmp_path / "b.db")), registry=registry, progress=False)
    assert s.n_failed == 0 and calls["n"] == 60  # every feature recomputed ...
    assert np.array_equal(_values(tmp_path / "a.db"), _values(tmp_path / "b.db"))  # ... to the same results
    assert len(list((root / "features").rglob("*.npy"))) == 60


def test_prune_older_than_removes_only_old_entries(warm):
    _, root = warm
    feats = sorted((root / "features").rglob("*.npy"))
    old = feats[:10]
    week_ago = time.time() - 7 * 86400
    for p in old:
        os.utime(p, (week_ago, week_ago))
    dry = prune(root, older_than=parse_age("3d"), dry_run=True)
    assert dry["removed_entries"] == 10 and all(p.exists() for p in old)
    res = prune(root, older_than=parse_age("3d"))
    assert res["removed_entries"] == 10 and not any(p.exists() for p in old)
    assert all(p.exists() for p in feats[10:])


def test_prune_max_size_removes_the_oldest_first_until_under_budget(warm):
    _, root = warm
    every = sorted(entries(root), key=lambda e: e.path.name)
    age = {}
    for n, e in enumerate(every):  # a known age order
        os.utime(e.path, (1_000_000 + n, 1_000_000 + n))
        age[e.path] = n
    total = sum(e.size for e in every)
    budget = total // 2
    res = CliRunner().invoke(cli, ["cache", "prune", "--max-size", str(budget), "--cache", str(root)])
    assert res.exit_code == 0, res.output
    left = sorted(entries(root), key=lambda e: e.mtime)
    assert sum(e.size for e in left) <= budget
    gone = [e for e in every if not e.path.exists()]
    assert gone and max(age[e.path] for e in gone) < min(age[e.path] for e in left)  # oldest went first
    # within one kind only: other kinds untouched even when over budget
    n_fits = len(list((root / "fits").rglob("*.pkl")))
    prune(root, max_size=0, kinds=("audio",))
    assert usage(root)["by_kind"].get("audio") is None and len(list((root / "fits").rglob("*.pkl"))) == n_fits


def test_sizes_ages_and_an_empty_prune_are_checked():
    assert parse_size("500M") == 500_000_000 and parse_size("1.5GB") == 1_500_000_000
    assert parse_size("64MiB") == 64 * 1024**2 and parse_size("1000") == 1000
    assert parse_age("30d") == 30 * 86400 and parse_age("12h") == 43200 and parse_age("2w") == 14 * 86400
    for bad in ("lots", "5X", "-1G"):
        with pytest.raises(ConfigError, match="500M"):
            parse_size(bad)
    with pytest.raises(ConfigError, match="30d"):
        parse_age("a month")
    res = CliRunner().invoke(cli, ["cache", "prune"])
    assert res.exit_code != 0 and "--max-size" in res.output


def test_du_of_an_empty_or_missing_cache(tmp_path):
    res = CliRunner().invoke(cli, ["cache", "du", "--cache", str(tmp_path / "none")])
    assert res.exit_code == 0 and "0 B in 0 entries" in res.output
