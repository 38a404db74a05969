"""The embedded corpus is learnable by a real SER model, and noise hurts it."""
import numpy as np

from ser_bench.config import RunConfig
from ser_bench.db import Store
from ser_bench.plugins import build_registry, make_plugin_manager
from ser_bench.runner import run
from ser_bench_plugins.synthetic import NOISE_TYPES, SyntheticEmotion, SyntheticNoise, synth_noise, synth_utterance


def test_generation_is_deterministic_and_sane():
    a = synth_utterance("f1", "angry", 3)
    assert np.array_equal(a, synth_utterance("f1", "angry", 3))
    assert not np.array_equal(a, synth_utterance("f1", "angry", 4))
    assert a.dtype == np.float32 and 0.5 < len(a) / 16000 < 3 and np.max(np.abs(a)) < 1
    loud = {e: np.sqrt(np.mean(synth_utterance("m1", e, 0) ** 2)) for e in ("angry", "sad")}
    assert loud["angry"] > 2 * loud["sad"]
    for k in NOISE_TYPES:
        n = synth_noise(k, 0)
        assert abs(np.sqrt(np.mean(n**2)) - 0.05) < 1e-3


def test_noise_parts_disjoint_and_cover_every_kind():
    src = SyntheticNoise()
    train = {c.id for c in src.clips("train")}
    test = {c.id for c in src.clips("test")}
    assert train and test and not train & test
    assert {i.split("_")[0] for i in test} == set(NOISE_TYPES)
    assert len(SyntheticEmotion().utterances()) == 6 * 4 * 6


def test_svm_learns_clean_and_noise_hurts():
    reg = build_registry(make_plugin_manager(entry_points=False))
    cfg = RunConfig(protocol="mismatched", enhancers=["none"], snrs=[-5.0, 20.0],
                    options={"synthetic": {"per_class": 3}})
    store = Store()
    s = run(cfg, store=store, registry=reg, jobs=1, progress=False)
    assert s.n_failed == 0
    df = store.results_frame()
    uar = df[df.metric == "uar"].groupby(["test_condition", "test_snr"], dropna=False).value.mean()
    clean = uar[("clean", np.nan)] if ("clean", np.nan) in uar else uar.loc["clean"].iloc[0]
    assert clean > 0.75  # chance is 0.25
    assert uar[("noisy", 20.0)] > uar[("noisy", -5.0)]
    assert uar[("noisy", -5.0)] < clean - 0.3
