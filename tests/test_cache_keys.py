"""Cache and cell keys are the ones today's main computes: a warm cache (and registry) written by the
code before the runner's split into its stages is still hit.

The literals below were computed by the old ``harness/runner.py`` (commit 97f8ea3) on the tiny
synthetic config of ``conftest.py`` (tones dataset, white-test noise, half-gain enhancer, peak
model, mismatched protocol, SNRs 0 and 20, seed 0). A change to any of them means a user's cache
(or registry) would be recomputed: bump a version on purpose, never by accident.

Bumped on purpose once since: ``ENHANCED_FORMAT`` (enhanced signals measured as 16-bit PCM)
entered the keys of features, fits and cells computed from enhanced audio (``features_enhanced``,
``cells`` and the features' file names below); every other key, and the audio keys, kept theirs.
"""
from __future__ import annotations

import sys

from ser_bench.cache import Cache
from ser_bench.db import Store
from ser_bench.interfaces import stable_hash
from ser_bench.protocols import Condition
from ser_bench.runner import Context, cell_key, fit_key, plan, run

#: the fit key holds the versions of numpy / scikit-learn / torch: pinned here so the literals hold
LIBS = {"numpy": "1", "scikit-learn": "1", "torch": "1"}

GOLDEN = {
    "audit": "68eb96b5f0c6a6b36cba60b34eb9e237",
    "noisy": "c3ee79bd8a22c47b1bcb57a33615a13d",
    "enhanced": "252714ebf3fe64c125f0b19964723bd1",
    "features_clean": "45312a3bda674de4adcbf5726e73f960",
    "features_noisy": "c4618b6299101c2aa8456f6db2f6d70d",
    "features_enhanced": "1841bd5ae5341b59e659e4629f8dfdc8",  # was ab344b4b... before ENHANCED_FORMAT
    "fit": "b9db4ab72103673ecea70f6a59458398",
    "cells": "9c777d56805036b8fc2a4931f7a82284",  # was 964fc801... (its enhanced cells)
}

#: (number of entries, digest of their sorted file names) per cache kind after one cold run of that
#: config with the old code: the entries a warm rerun reads (audio is regenerated, not needed)
GOLDEN_FILES = {
    "audit": [12, "7fa0d2a69146c184243c2e44e62d0e4b"],
    "features": [60, "d625cfa8256a3900f8dd10f55fa1541e"],  # 24 enhanced entries renamed by ENHANCED_FORMAT
    "fits": [3, "38e77b37d3f25ba89cb2ad9e7264d935"],
}


def _pin_libs(monkeypatch):
    monkeypatch.setattr(sys.modules[fit_key.__module__], "_LIBS", dict(LIBS))


def keys(registry, config, cache_dir) -> dict[str, str]:
    """Every kind of key the runner makes, for the first utterance (and every cell's key)."""
    ctx, folds, cells = plan(config, registry)
    ctx.cache = Cache(cache_dir)
    utt = next(iter(ctx.utterances("tones").values()))
    noisy = Condition("noisy", 0.0, "white-test")
    enhanced = Condition("enhanced", 0.0, "white-test", "half")
    fold_by = {(ds, f.name): f for ds, fs in folds.items() for f in fs}
    idents = {n: stable_hash(ctx.identity(k, n)) for k, n in
              (("dataset", "tones"), ("ser_model", "peak"), ("enhancer", "half"), ("enhancer", "none"),
               ("noise_source", "white-test"))}
    c0 = cells[0]
    return {
        "audit": ctx.cache.key(["audit", "1", utt.content_key()]),
        "noisy": ctx._audio_key(utt, noisy),
        "enhanced": ctx._audio_key(utt, enhanced),
        "features_clean": ctx.feature_key(utt, Condition("clean"), "peak"),
        "features_noisy": ctx.feature_key(utt, noisy, "peak"),
        "features_enhanced": ctx.feature_key(utt, enhanced, "peak"),
        "fit": fit_key(ctx, c0, fold_by[(c0.dataset, c0.fold)], None),
        "cells": stable_hash(sorted(cell_key(c, config, idents, fold_by[(c.dataset, c.fold)]) for c in cells), n=32),
    }


def test_keys_are_todays(registry, tiny_config, tmp_path, monkeypatch):
    _pin_libs(monkeypatch)
    assert keys(registry, tiny_config("mismatched"), tmp_path / "c") == GOLDEN


def test_a_cache_written_under_the_old_keys_is_hit(registry, tiny_config, tmp_path, monkeypatch):
    """A cache holding only entries at the old keys (features of every utterance and condition, the
    fit): a run reads them all and featurizes / fits nothing."""
    _pin_libs(monkeypatch)
    from conftest import PeakModel

    cfg = tiny_config("mismatched")
    run(cfg, store=Store(), registry=registry, progress=False, cache_dir=str(tmp_path / "old"))
    calls = {"featurize": 0, "fit": 0}
    real_f, real_fit = PeakModel.featurize, PeakModel.fit

    def featurize(self, audio):
        calls["featurize"] += 1
        return real_f(self, audio)

    def fit(self, train, valid=None):
        calls["fit"] += 1
        return real_fit(self, train, valid)

    for kind, want in GOLDEN_FILES.items():  # the very entries the old code wrote
        names = sorted(p.name for p in (tmp_path / "old" / kind).rglob("*.*"))
        assert [len(names), stable_hash(names, n=32)] == want, kind
    monkeypatch.setattr(PeakModel, "featurize", featurize)
    monkeypatch.setattr(PeakModel, "fit", fit)
    # the old cache's features and fits, nothing else (no audio): still a complete warm cache
    import shutil

    for kind in ("audio",):
        shutil.rmtree(tmp_path / "old" / kind, ignore_errors=True)
    s = run(cfg, store=Store(str(tmp_path / "b.db")), registry=registry, progress=False, cache_dir=str(tmp_path / "old"))
    assert s.n_done == s.n_cells and s.n_failed == 0
    assert calls == {"featurize": 0, "fit": 0}
