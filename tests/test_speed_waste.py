"""Work the runner must not repeat (issue 13): fits shared within a run and kept in the cache across
runs and processes; audio and features prepared only for the utterances that cells read."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from conftest import FakePlugin, PeakModel, ToneDataset
from ser_bench import hookimpl
from ser_bench.db import Store
from ser_bench.runner import run

CALLS = {"fit": 0, "featurize": 0}


class CountingPeak(PeakModel):
    """PeakModel counting its fits and featurisations; ``bias`` shifts the learned centroids (an
    option that changes the fit)."""

    name = "counting-peak"

    class Config(PeakModel.Config):
        bias: float = 0.0

    def featurize(self, audio):
        CALLS["featurize"] += 1
        return super().featurize(audio)

    def fit(self, train, valid=None):
        CALLS["fit"] += 1
        super().fit(train, valid)
        self.centroids_ = {c: v + self.config.bias for c, v in self.centroids_.items()}
        return self


class PartitionedTones(ToneDataset):
    """The tone corpus with official partitions: speaker s0 train, s1 dev, s2 test."""

    name = "tones-parts"
    has_partitions = True

    def load_utterances(self):
        part = {"s0": "train", "s1": "dev", "s2": "test"}
        return [type(u)(id=u.id, speaker=u.speaker, label=u.label, partition=part[u.speaker], loader=u.loader,
                        fingerprint=u.fingerprint) for u in super().load_utterances()]


class Extra(FakePlugin):
    @hookimpl
    def register_ser_models(self, register):
        super().register_ser_models(register)
        register("counting-peak", CountingPeak)

    @hookimpl
    def register_datasets(self, register):
        super().register_datasets(register)
        register("tones-parts", PartitionedTones)


@pytest.fixture
def reg():
    from ser_bench.plugins import build_registry, make_plugin_manager

    CALLS.update(fit=0, featurize=0)
    return build_registry(make_plugin_manager(entry_points=False, extra=[Extra()]))


def _cfg(tiny_config, protocol, **kw):
    return tiny_config(protocol, ser_models=["counting-peak"], **kw)


def _fits(tmp_path):
    return sorted((tmp_path / "cache" / "fits").rglob("*.pkl"))


def test_one_fit_per_fold_within_a_mismatched_run(reg, tiny_config, tmp_path):
    s = run(_cfg(tiny_config, "mismatched"), store=Store(), registry=reg, progress=False)
    assert s.n_done == 15  # 3 folds x (clean + 2 SNR x (noisy + enhanced)), all trained on clean
    assert CALLS["fit"] == 3
    assert len(_fits(tmp_path)) == 3
    cells = Store().cells_frame()
    assert (cells.fit_s > 0).sum() == 3  # the other 12 cells reused their fold's fit


def test_a_later_run_reuses_the_cached_fits_of_an_earlier_one(reg, tiny_config, tmp_path):
    run(_cfg(tiny_config, "clean"), store=Store(), registry=reg, progress=False)
    assert CALLS["fit"] == 3 and len(_fits(tmp_path)) == 3
    CALLS["fit"] = 0
    # another run (a fresh context: nothing remembered in memory) of the mismatched protocol
    s = run(_cfg(tiny_config, "mismatched"), store=Store(str(tmp_path / "other.db")), registry=reg, progress=False)
    assert s.n_done == 15 and CALLS["fit"] == 0
    # and its results equal those of a run that fitted everything itself
    fresh = Store(str(tmp_path / "fresh.db"))
    run(_cfg(tiny_config, "mismatched"), store=fresh, registry=reg, progress=False, cache_dir=str(tmp_path / "c2"))
    assert CALLS["fit"] == 3
    a = Store(str(tmp_path / "other.db")).results_frame().sort_values(["cell_key", "metric"])
    b = fresh.results_frame().sort_values(["cell_key", "metric"])
    assert a.cell_key.tolist() == b.cell_key.tolist() and np.array_equal(a.value.to_numpy(), b.value.to_numpy())


def test_the_fit_key_changes_with_everything_that_changes_the_fit(reg, tiny_config, tmp_path):
    run(_cfg(tiny_config, "clean"), store=Store(), registry=reg, progress=False)
    assert CALLS["fit"] == 3
    # matched: 3 folds x 5 training conditions; the 3 clean fits are reused, the noisy / enhanced
    # training conditions (other features) are new fits
    CALLS["fit"] = 0
    run(_cfg(tiny_config, "matched"), store=Store(), registry=reg, progress=False)
    assert CALLS["fit"] == 12
    # an option of the model
    CALLS["fit"] = 0
    run(_cfg(tiny_config, "clean", options={"counting-peak": {"bias": 1.0}}), store=Store(), registry=reg,
        progress=False)
    assert CALLS["fit"] == 3
    # other training data: the folds of a partitioned corpus (train s0, dev s1)
    CALLS["fit"] = 0
    run(_cfg(tiny_config, "clean", datasets=["tones-parts"]), store=Store(), registry=reg, progress=False)
    assert CALLS["fit"] == 1
    assert len(_fits(tmp_path)) == 3 + 12 + 3 + 1


def test_the_fit_key_covers_labels_and_the_seed(reg, tiny_config):
    from ser_bench.protocols import CLEAN, Cell, Fold
    from ser_bench.runner import Context, fit_key

    ctx = Context(_cfg(tiny_config, "clean"), reg, None)
    utts = ctx.utterances("tones")
    fold = Fold("f", train=tuple(list(utts)[:8]), test=tuple(list(utts)[8:]))
    cell = Cell("tones", "counting-peak", "clean", "none", "-", CLEAN, CLEAN, "f")
    k = fit_key(ctx, cell, fold, None)
    assert fit_key(ctx, cell, fold, None) == k
    assert fit_key(ctx, cell, fold, 7) != k  # models taking the per-cell seed
    assert fit_key(ctx, cell, Fold("f", train=fold.train[:-1], test=fold.test), None) != k
    assert fit_key(ctx, cell, Fold("f", train=fold.train, valid=fold.test[:1], test=fold.test[1:]), None) != k
    uid = fold.train[0]
    u = utts[uid]
    utts[uid] = type(u)(id=u.id, speaker=u.speaker, label="other", loader=u.loader, fingerprint=u.fingerprint)
    assert fit_key(ctx, cell, fold, None) != k


def test_only_the_test_partition_is_mixed_enhanced_and_featurised(reg, tiny_config, tmp_path):
    s = run(_cfg(tiny_config, "mismatched", datasets=["tones-parts"], keep_audio="all"), store=Store(), registry=reg,
            progress=False)
    assert s.n_done == 5
    audio = list((tmp_path / "cache" / "audio").rglob("*.flac"))
    feats = list((tmp_path / "cache" / "features").rglob("*.npy"))
    # 4 test utterances x 2 SNRs x (noisy + enhanced); features: 12 clean + those 16
    assert len(audio) == 4 * 4
    assert len(feats) == 12 + 16 and CALLS["featurize"] == 12 + 16


def test_loso_still_prepares_every_utterance_under_every_test_condition(reg, tiny_config, tmp_path):
    run(_cfg(tiny_config, "mismatched"), store=Store(), registry=reg, progress=False)
    assert CALLS["featurize"] == 12 * 5  # each utterance is a test utterance of some fold


def test_two_feature_sets_share_one_mixture_and_enhancement(reg, tiny_config, tmp_path, monkeypatch):
    from conftest import HalfGain
    from ser_bench.cache import Cache

    enhanced = {"n": 0}
    audio_reads = {"n": 0}
    real_enh, real_load = HalfGain.enhance_signal, Cache.load

    def counting_enh(self, noisy):
        enhanced["n"] += 1
        return real_enh(self, noisy)

    def counting_load(self, kind, key):
        audio_reads["n"] += kind == "audio"
        return real_load(self, kind, key)

    monkeypatch.setattr(HalfGain, "enhance_signal", counting_enh)
    monkeypatch.setattr(Cache, "load", counting_load)
    cfg = tiny_config("mismatched", ser_models=["counting-peak", "peak"], snrs=[0.0])
    s = run(cfg, store=Store(), registry=reg, progress=False)
    assert s.n_done == 2 * 3 * 3
    assert enhanced["n"] == 12  # once per utterance, not once per SER model
    # per utterance: noisy (1 lookup) and enhanced (its noisy input + itself), for both models together
    assert audio_reads["n"] == 12 * 3


def test_svm_fit_pickles_without_its_training_matrix_and_predicts_the_same():
    from ser_bench import FeatureSet
    from ser_bench_plugins.opensmile_svm import SVMeGeMAPS

    rng = np.random.default_rng(0)
    X = [rng.normal(size=40) + (3 if i % 2 else 0) for i in range(60)]
    y = ["a" if i % 2 == 0 else "b" for i in range(60)]
    train = FeatureSet(X=X, y=y, groups=[f"s{i % 6}" for i in range(60)], ids=[str(i) for i in range(60)])
    test = FeatureSet(X=[rng.normal(size=40) + 1.5 for _ in range(20)], y=None, groups=["t"] * 20,
                      ids=[f"t{i}" for i in range(20)])
    m = SVMeGeMAPS().fit(train)
    blob = pickle.dumps(m)
    assert len(blob) < m.Z_.nbytes  # the standardised training matrix is not in the pickle
    back = pickle.loads(blob)
    back.restore_training_data(train)
    assert back.predict(test) == m.predict(test)
    with pytest.raises(ValueError, match="not the one"):
        pickle.loads(blob).restore_training_data(FeatureSet(X=X[:-1], y=y[:-1], groups=train.groups[:-1],
                                                            ids=train.ids[:-1]))



@pytest.mark.parametrize("seed", range(6))
def test_the_numpy_one_vs_one_vote_equals_sklearn_predict(seed):
    from sklearn.svm import SVC

    from ser_bench_plugins.opensmile_svm import ovo_predict, rbf_kernel, svm_arrays

    rng = np.random.default_rng(seed)
    n_classes = 2 + seed  # 2 (scikit-learn flips the signs of its public attributes) .. 7 classes
    y = np.array([f"c{v}" for v in rng.integers(0, n_classes, 150)])
    X = rng.standard_normal((150, 6))
    X[:, 0] += np.array([int(v[1:]) for v in y]) * 0.6
    K = rbf_kernel(X, X, 0.2)
    for C in (0.1, 1.0, 100.0):
        svc = SVC(C=C, kernel="precomputed", class_weight="balanced").fit(K, y)
        Kt = rbf_kernel(rng.standard_normal((300, 6)) * 1.5, X, 0.2)
        assert (ovo_predict(svm_arrays(svc), Kt) == svc.predict(Kt)).all()


def test_a_cached_svm_fit_predicts_without_importing_sklearn(tmp_path):
    """A warm run reads fits from the cache: predicting them must not pay scikit-learn's import."""
    import subprocess
    import sys

    from ser_bench import FeatureSet
    from ser_bench_plugins.opensmile_svm import SVMeGeMAPS

    rng = np.random.default_rng(1)
    X = [rng.normal(size=12) + (i % 3) for i in range(45)]
    train = FeatureSet(X=X, y=[f"k{i % 3}" for i in range(45)], groups=[f"s{i % 5}" for i in range(45)],
                       ids=[str(i) for i in range(45)])
    m = SVMeGeMAPS().fit(train)
    test = rng.normal(size=(10, 12)) + 1
    (tmp_path / "fit.pkl").write_bytes(pickle.dumps(m))
    np.save(tmp_path / "train.npy", np.stack(X))
    np.save(tmp_path / "test.npy", test)
    code = f"""
import pickle, sys, numpy as np
from ser_bench import FeatureSet
m = pickle.loads(open({str(tmp_path / "fit.pkl")!r}, "rb").read())
X = list(np.load({str(tmp_path / "train.npy")!r}))
m.restore_training_data(FeatureSet(X=X, y=[None] * len(X), groups=["g"] * len(X), ids=[str(i) for i in range(len(X))]))
t = np.load({str(tmp_path / "test.npy")!r})
print(",".join(m.predict(FeatureSet(X=list(t), y=None, groups=["t"] * len(t), ids=[str(i) for i in range(len(t))]))))
print("sklearn" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    expect = m.predict(FeatureSet(X=list(test), y=None, groups=["t"] * 10, ids=[str(i) for i in range(10)]))
    assert out == [",".join(expect), "False"]


def test_a_fit_cached_before_the_numpy_vote_still_predicts():
    from sklearn.svm import SVC

    from ser_bench import FeatureSet
    from ser_bench_plugins.opensmile_svm import SVMeGeMAPS, rbf_kernel

    rng = np.random.default_rng(2)
    X = [rng.normal(size=8) + (i % 4) for i in range(40)]
    y = [f"k{i % 4}" for i in range(40)]
    train = FeatureSet(X=X, y=y, groups=[f"s{i % 5}" for i in range(40)], ids=[str(i) for i in range(40)])
    m = SVMeGeMAPS().fit(train)
    state = m.__getstate__()
    svc = SVC(C=m.C_, kernel="precomputed", class_weight="balanced").fit(rbf_kernel(m.Z_, m.Z_, m.gamma_), y)
    del state["svm_"]
    state["model_"] = svc  # the old layout: the SVC object itself
    old = SVMeGeMAPS.__new__(SVMeGeMAPS)
    old.__dict__.update(state)
    old.restore_training_data(train)
    test = FeatureSet(X=[rng.normal(size=8) + 1.5 for _ in range(15)], y=None, groups=["t"] * 15,
                      ids=[str(i) for i in range(15)])
    assert old.predict(test) == m.predict(test)

def test_an_in_process_run_uses_one_library_thread_and_restores_the_setting(reg, tiny_config, monkeypatch):
    import ser_bench.runner as R

    torch = pytest.importorskip("torch")
    seen = []
    real = R.prepare_job

    def spy(payload):
        seen.append(torch.get_num_threads())
        return real(payload)

    monkeypatch.setattr(R, "prepare_job", spy)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        run(_cfg(tiny_config, "clean"), store=Store(), registry=reg, progress=False)
        assert seen and set(seen) == {1}
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_a_damaged_cached_fit_is_refitted_not_used(reg, tiny_config, tmp_path):
    run(_cfg(tiny_config, "clean"), store=Store(), registry=reg, progress=False)
    fits = _fits(tmp_path)
    fits[0].write_bytes(b"")  # e.g. after an operating-system crash (entries are not fsynced)
    fits[1].write_bytes(b"\x80\x05garbage")
    CALLS["fit"] = 0
    s = run(_cfg(tiny_config, "clean"), store=Store(str(tmp_path / "other.db")), registry=reg, progress=False)
    assert s.n_done == 3 and CALLS["fit"] == 2
    assert all(f.stat().st_size > 100 for f in _fits(tmp_path))


@pytest.mark.parametrize("feature_set", ["eGeMAPSv02", "ComParE_2016"])
def test_opensmile_functionals_equal_process_signal(feature_set):
    opensmile = pytest.importorskip("opensmile")
    from conftest import tone
    from ser_bench_plugins.opensmile_svm import smile_functionals

    smile = opensmile.Smile(feature_set=getattr(opensmile.FeatureSet, feature_set),
                            feature_level=opensmile.FeatureLevel.Functionals)
    signals = [tone(300.0, seconds=1.0) + tone(1200.0, seconds=1.0, amp=0.05, seed=3),
               tone(180.0, seconds=0.7, amp=0.3, seed=5),  # the reused instance must forget the first
               np.zeros(16000, np.float32),  # silence
               tone(300.0, seconds=0.005)]  # shorter than one frame
    for x in signals + signals[:1]:
        ref = smile.process_signal(x, 16000).to_numpy()[0]
        ref = np.nan_to_num(ref.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        assert np.array_equal(smile_functionals(x, feature_set), ref)


def test_a_run_on_a_warm_cache_starts_no_workers(reg, tiny_config, tmp_path, monkeypatch):
    import ser_bench.runner as R
    from ser_bench.executors import PoolExecutor

    run(_cfg(tiny_config, "mismatched"), store=Store(), registry=reg, progress=False)
    CALLS.update(fit=0, featurize=0)
    used = []
    real = PoolExecutor.map_unordered

    def spy(self, fn, jobs, **kw):
        jobs = list(jobs)
        used.append((fn.__name__, len(jobs)))
        return real(self, fn, jobs, **kw)

    monkeypatch.setattr(PoolExecutor, "map_unordered", spy)
    # a fresh database, the cache kept: features and fits are read, nothing is recomputed
    s = R.run(_cfg(tiny_config, "mismatched"), store=Store(str(tmp_path / "b.db")), registry=reg, progress=False,
              executor=PoolExecutor(2))
    assert s.n_done == 15 and CALLS == {"fit": 0, "featurize": 0}
    assert all(n == 0 for _, n in used), used  # no job went to the pool
    a = Store().results_frame().sort_values(["cell_key", "metric"]).value.to_numpy()
    b = Store(str(tmp_path / "b.db")).results_frame().sort_values(["cell_key", "metric"]).value.to_numpy()
    assert np.array_equal(a, b)


def test_recola_mismatched_after_clean_trains_nothing_and_mixes_only_test_recordings(tmp_path, monkeypatch):
    """The issue's case: an end-to-end model on a RECOLA-layout corpus (official partitions)."""
    pytest.importorskip("torch")
    from ser_bench.config import RunConfig
    from ser_bench_plugins.e2e.model import E2EArousalModel
    from ser_bench_plugins.recola import write_synthetic_recola

    root = write_synthetic_recola(tmp_path / "recola", n_train=2, n_dev=1, n_test=2, seconds=8.0)
    fits = {"n": 0}
    real = E2EArousalModel.fit

    def counting(self, train, valid=None):
        fits["n"] += 1
        return real(self, train, valid)

    monkeypatch.setattr(E2EArousalModel, "fit", counting)
    opts = {"recola": {"root": str(root)}, "synthetic-noise": {},
            "e2e-arousal": dict(n_filters=10, channel_pool=10, hidden_size=8, epochs=1, batch_size=4,
                                chunk_seconds=2.0, progress=False, reuse_fits=False)}

    def cfg(protocol):
        return RunConfig(protocol=protocol, datasets=["recola"], ser_models=["e2e-arousal"], enhancers=["none"],
                         noise_sources=["synthetic-noise"], snrs=[0.0, 10.0], keep_audio="all",
                         options={k: v for k, v in opts.items() if protocol != "clean" or k != "synthetic-noise"})

    run(cfg("clean"), store=Store(), executor="inline", progress=False)
    assert fits["n"] == 1
    s = run(cfg("mismatched"), store=Store(str(tmp_path / "m.db")), executor="inline", progress=False)
    assert s.n_done == 3 and fits["n"] == 1  # the clean fit of the earlier run, from the cache
    audio = list((tmp_path / "cache" / "audio").rglob("*.flac"))
    assert len(audio) == 2 * 2  # 2 test recordings x 2 SNRs: train and dev recordings are never mixed
