"""Corruptions as a condition axis (issue 26): definitions, RT60, alignment, determinism, keys,
each built-in corruption, the runner's hook, the registry columns and the scores."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ser_bench.config import make_config
from ser_bench.corruptions import (
    StepContext,
    canonical,
    chain_parts,
    corrupt,
    corruption_scores,
    direct_index,
    drr_db,
    family,
    gap_recovered,
    parse_chain,
    reverberate,
    schroeder_rt60,
    steps_json,
)
from ser_bench.errors import AudioError, BenchError, ConfigError
from ser_bench.mixing import mix, power, snr_db
from ser_bench.testing import ConformanceError, FakeNoise, check_corruption, speech_like
from ser_bench_plugins.corruptions import (
    AdditiveNoise,
    Babble,
    Clipping,
    MeasuredRIR,
    SimulatedReverb,
    Telephone,
    correct_decay,
    mulaw_decode,
    mulaw_encode,
)

SR = 16_000


@pytest.fixture
def speech():
    return (0.3 * speech_like(1.5, seed=1)).astype(np.float32)


def ctx(**kw):
    base = dict(key="utt-key", seed=0, speech_name="u1", noise_source=lambda n: FakeNoise(), extra={"datasets": ("emodb",)})
    base.update(kw)
    return StepContext(**base)


def lag_of(y, x, max_lag=800):
    from scipy.signal import correlate

    c = correlate(np.asarray(y, float), np.asarray(x, float), mode="full", method="fft")
    mid = len(x) - 1
    return int(np.argmax(c[mid - max_lag: mid + max_lag + 1]) - max_lag)


# ----------------------------------------------------------------------------- chains


def test_chains_parse_and_print_canonically():
    steps = parse_chain(" reverb( rt60 = 0.60 ) + noise(source=folder,snr=5)")
    assert [s.name for s in steps] == ["reverb", "noise"]
    assert steps[0].params == (("rt60", 0.6),)
    assert canonical("reverb(rt60=0.60)+noise(snr=5.0)", ["folder"]) == "reverb(rt60=0.6)+noise(snr=5,source=folder)"
    assert canonical("telephone") == "telephone"
    assert steps_json("reverb(rt60=0.6)+noise(snr=5,source=f)") == [{"kind": "reverb", "rt60": 0.6},
                                                                    {"kind": "noise", "snr": 5.0, "source": "f"}]
    assert family("reverb(rt60=0.9)") == ("reverb", 0.9, "rt60")
    assert family("babble(snr=0,talkers=5)") == ("babble(talkers=5)", 0.0, "snr")
    assert family("reverb(rt60=0.6)+noise(snr=5,source=f)") == ("reverb(rt60=0.6)+noise(source=f)", 5.0, "snr")
    assert family("telephone") == ("telephone", None, "")


@pytest.mark.parametrize("bad", ["", "reverb(rt60)", "re verb(rt60=1)", "(x=1)"])
def test_a_malformed_chain_is_a_clear_error(bad):
    with pytest.raises(ConfigError, match="corruption"):
        parse_chain(bad)


def test_config_refuses_bad_chains_and_empty_conditions():
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        make_config(dict(protocol="mismatched", corruptions=["reverb(rt60)"]))
    with pytest.raises(ConfigError, match="snrs is empty"):
        make_config(dict(protocol="mismatched", snrs=[]))
    assert make_config(dict(protocol="mismatched", snrs=[], corruptions=["telephone"])).corruptions == ["telephone"]


# ----------------------------------------------------------------------------- golden keys

#: Computed with the code before corruptions existed (commit 97f8ea3), by planning these runs
#: of the default registry and calling runner.cell_key / Context._audio_key / feature_key.
GOLDEN = {
    "mismatched": ("14e670cf4328ff66", ["4e150c5255afc9abe9202932331792eb", "d386cf75c5af281f72c414e4e2631814"]),
    "matched": ("b37990a42658ad0c", None),
    "multi-snr": ("708ba758bb481956", None),
}
GOLDEN_AUDIO = {"noisy": "969c2eadd3ca490769e6c1da2fa47afb", "enhanced": "86c756fe2b851939fc33005bdc442bbc"}
GOLDEN_FEATURE = "b3764ba396842f90d207b88d47490a58"
# its enhanced cells' keys were regenerated once, on purpose, when ENHANCED_FORMAT (16-bit PCM) entered
# them; the other cells' keys were checked unchanged then
GOLDEN_FILE = Path(__file__).with_name("data") / "golden_noise_keys.json"


def _keys_today(proto):
    from ser_bench.interfaces import stable_hash
    from ser_bench.plugins import default_registry
    from ser_bench.protocols import Condition
    from ser_bench.runner import cell_key, plan

    cfg = make_config(dict(protocol=proto, datasets=["synthetic"], ser_models=["svm-egemaps"], enhancers=["none", "wiener"],
                           noise_sources=["synthetic-noise"], snrs=[0.0, 10.0],
                           options={"synthetic": {"speakers": ["f1", "m1"], "per_class": 1}}))
    ctx_, folds, cells = plan(cfg, default_registry())
    fold_by = {(ds, f.name): f for ds, fs in folds.items() for f in fs}
    idents = {n: stable_hash(ctx_.identity(k, n)) for k, ns in (("dataset", cfg.datasets), ("ser_model", cfg.ser_models),
              ("enhancer", cfg.enhancers), ("noise_source", cfg.noise_sources)) for n in ns}
    keys = [cell_key(c, cfg, idents, fold_by[(c.dataset, c.fold)]) for c in cells]
    utt = next(iter(ctx_.utterances("synthetic").values()))
    audio = {"noisy": ctx_._audio_key(utt, Condition("noisy", 10.0, "synthetic-noise")),
             "enhanced": ctx_._audio_key(utt, Condition("enhanced", 10.0, "synthetic-noise", "wiener"))}
    feat = ctx_.feature_key(utt, Condition("noisy", 10.0, "synthetic-noise"), "svm-egemaps")
    return cfg.config_hash(), keys, audio, feat


@pytest.mark.parametrize("proto", ["mismatched", "matched", "multi-snr"])
def test_additive_noise_runs_keep_their_cell_and_cache_keys(proto):
    golden = json.loads(GOLDEN_FILE.read_text())
    chash, keys, audio, feat = _keys_today(proto)
    assert chash == GOLDEN[proto][0] == golden[proto]["config_hash"]
    assert keys == golden[proto]["cells"]
    if GOLDEN[proto][1]:
        assert keys[:2] == GOLDEN[proto][1]
    assert audio == GOLDEN_AUDIO == golden["audio_keys"]
    assert feat == GOLDEN_FEATURE == golden["feature_key"]


# ----------------------------------------------------------------------------- additive noise


def test_the_noise_step_is_the_harness_mixing_bit_for_bit(speech):
    noise = FakeNoise()
    y, info = AdditiveNoise().apply(speech, AdditiveNoise.Params(snr=5, source="fake"), np.random.default_rng(0),
                                    ctx(noise_source=lambda n: noise))
    m = mix(speech, noise.clips("test"), 5.0, key="utt-key", seed=0, source="fake")
    assert np.array_equal(y, m.noisy)
    assert info["clip"] == m.clip_id and info["snr"] == 5.0
    assert snr_db(m.clean, m.noise) == pytest.approx(5.0, abs=1e-6)


# ----------------------------------------------------------------------------- reverberation


def test_schroeder_measures_a_known_exponential_decay():
    rng = np.random.default_rng(0)
    for rt60 in (0.3, 0.6, 0.9):
        t = np.arange(int(1.5 * rt60 * SR)) / SR
        h = rng.standard_normal(t.size) * 10 ** (-3 * t / rt60)
        h[0] = 5.0
        assert schroeder_rt60(h) == pytest.approx(rt60, rel=0.05)


@pytest.mark.parametrize("rt60", [0.3, 0.6, 0.9])
def test_simulated_rooms_have_their_rt60_within_10_percent(rt60):
    r = SimulatedReverb()
    for seed in range(3):  # three rooms, sizes and distances drawn per utterance
        h, info = r.rir(r.Params(rt60=rt60), np.random.default_rng(seed))
        measured = schroeder_rt60(h)  # measured here, independently of what the plugin recorded
        assert measured == pytest.approx(rt60, rel=0.10)
        assert info["rt60_measured"] == pytest.approx(measured, abs=2e-3)
        assert 1.0 * 0.5 <= info["distance"] <= 3.0
        assert all(lo <= d <= hi for d, lo, hi in zip(info["room"], (3, 3, 2.5), (8, 6, 3.5)))
        assert direct_index(h) == 0  # the RIR starts at its direct path
        assert np.isfinite(info["drr_db"])


def test_rooms_differ_per_utterance_and_repeat_per_seed():
    r = SimulatedReverb()
    p = r.Params(rt60=0.6)
    a = r.rir(p, np.random.default_rng(1))[1]
    b = r.rir(p, np.random.default_rng(1))[1]
    c = r.rir(p, np.random.default_rng(2))[1]
    assert a == b and a["room"] != c["room"]


def test_decay_correction_refuses_a_rir_it_cannot_fix():
    h = np.zeros(8000)
    h[0] = 1.0
    h[1:40] = 0.5 * np.exp(-np.arange(39) / 5.0)
    with pytest.raises(AudioError, match="RT60"):
        correct_decay(h, 0.9)


WHITE = (0.1 * np.random.default_rng(9).standard_normal(SR)).astype(np.float32)


@pytest.mark.parametrize("rt60", [0.3, 0.9])
def test_reverberant_speech_is_aligned_and_level_matched(speech, rt60):
    r = SimulatedReverb()
    p = r.Params(rt60=rt60)
    y, info = r.apply(speech, p, np.random.default_rng(0), ctx())
    assert y.shape == speech.shape
    assert power(y) == pytest.approx(power(speech), rel=1e-4)
    assert not np.allclose(y, speech, atol=1e-3)
    # alignment: the same room (same stream) on white noise, whose cross-correlation with its
    # reverberant copy is the RIR itself: its peak, the direct path, sits at lag 0
    yw, _ = r.apply(WHITE, p, np.random.default_rng(0), ctx())
    assert lag_of(yw, WHITE) == 0
    click = np.zeros(SR, np.float32)
    click[4000] = 0.5
    yc, _ = r.apply(click, p, np.random.default_rng(0), ctx())
    assert int(np.argmax(np.abs(yc))) == 4000 and np.max(np.abs(yc[:4000])) < 1e-9  # nothing before the direct path


def test_reverberate_moves_the_direct_path_to_time_zero(speech):
    h = np.zeros(4000)
    h[500] = 1.0  # a pure delay of 500 samples, then a weak echo
    h[900] = 0.3
    y = reverberate(speech, h)
    assert lag_of(y, speech) == 0
    assert drr_db(h) == pytest.approx(10 * np.log10(1 / 0.09), abs=1e-6)


def test_measured_rirs_from_a_folder(tmp_path, speech):
    rng = np.random.default_rng(0)
    for i, rt in enumerate((0.4, 0.8)):
        t = np.arange(int(1.2 * rt * SR)) / SR
        h = np.concatenate([np.zeros(300), [1.0], 0.3 * rng.standard_normal(t.size) * 10 ** (-3 * t / rt)])
        sf.write(tmp_path / f"room{i}.wav", h.astype(np.float32) * 0.5, SR)
    plug = MeasuredRIR(root=str(tmp_path))
    y, info = plug.apply(speech, plug.Params(), np.random.default_rng(3), ctx())
    assert info["file"] in ("room0.wav", "room1.wav")
    want = 0.4 if info["file"] == "room0.wav" else 0.8
    assert info["rt60_measured"] == pytest.approx(want, rel=0.10)
    assert power(y) == pytest.approx(power(speech), rel=1e-4)
    yw, _ = plug.apply(WHITE, plug.Params(), np.random.default_rng(3), ctx())
    assert lag_of(yw, WHITE) == 0  # the 300-sample lead-in of the RIR is removed
    ident = plug.identity()
    (tmp_path / "room2.wav").write_bytes((tmp_path / "room0.wav").read_bytes())
    assert MeasuredRIR(root=str(tmp_path)).identity() != ident  # a RIR added: other keys
    with pytest.raises(ConfigError, match="not found"):
        MeasuredRIR(root=str(tmp_path / "none")).files()


# ----------------------------------------------------------------------------- babble


@pytest.fixture
def libri(tmp_path):
    """A LibriSpeech layout of 6 speakers x 2 utterances of distinct speech-like audio."""
    root = tmp_path / "libri" / "LibriSpeech" / "train-clean-5"
    for s in range(6):
        spk = str(100 + s)
        d = root / spk / "7"
        d.mkdir(parents=True)
        for i in range(2):
            sf.write(d / f"{spk}-7-{i:04d}.flac", 0.2 * speech_like(2.0, seed=10 * s + i), SR)
    return tmp_path / "libri"


@pytest.mark.parametrize("snr", [0.0, 10.0])
def test_babble_is_mixed_at_its_snr_from_distinct_talkers(libri, speech, snr):
    b = Babble(root=str(libri))
    y, info = b.apply(speech, b.Params(snr=snr, talkers=4), np.random.default_rng(0), ctx())
    assert y.shape == speech.shape and info["gain"] == 1.0
    assert snr_db(speech, y - speech) == pytest.approx(snr, abs=1e-3)
    spk = [t[0].split("-")[0] for t in info["talkers"]]
    assert len(spk) == 4 and len(set(spk)) == 4


def test_babble_refuses_the_corpus_under_test_and_too_few_speakers(libri, speech):
    b = Babble(root=str(libri))
    with pytest.raises(ConfigError, match="dataset under test"):
        b.apply(speech, b.Params(snr=0), np.random.default_rng(0), ctx(extra={"datasets": ("librispeech",)}))
    few = Babble(root=str(libri), exclude_speakers=("100", "101", "102"))
    with pytest.raises(ConfigError, match="fewer than"):
        few.apply(speech, few.Params(snr=0, talkers=4), np.random.default_rng(0), ctx())
    from ser_bench.corruptions import validate_params

    with pytest.raises(ConfigError, match="talkers"):
        validate_params(b, parse_chain("babble(snr=0,talkers=2)")[0])  # 3..8 talkers


# ----------------------------------------------------------------------------- channels


def test_mulaw_round_trip_is_g711_accurate():
    x = np.linspace(-1, 1, 20001)
    y = mulaw_decode(mulaw_encode(x))
    assert mulaw_encode(x).dtype == np.uint8
    # 8-bit mu-law: relative error of a few percent at every level (not 8-bit uniform)
    big = np.abs(x) > 0.01
    assert np.max(np.abs(y[big] - x[big]) / np.abs(x[big])) < 0.07


def test_telephone_band_limits_and_keeps_level_and_timing(speech):
    t = Telephone()
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal(SR)).astype(np.float32)  # white: energy at every frequency
    y, _ = t.apply(x, t.Params(), rng, ctx())
    X, Y = np.abs(np.fft.rfft(x)) ** 2, np.abs(np.fft.rfft(y)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / SR)
    inband = Y[(f > 500) & (f < 3200)].mean() / X[(f > 500) & (f < 3200)].mean()
    assert Y[f > 4200].mean() / X[f > 4200].mean() < 1e-3 * inband
    assert Y[f < 100].mean() / X[f < 100].mean() < 0.05 * inband
    ys, _ = t.apply(speech, t.Params(), rng, ctx())
    assert lag_of(ys, speech) == 0 and power(ys) == pytest.approx(power(speech), rel=1e-3)


def test_clipping_clips_at_its_fraction_of_the_peak(speech):
    c = Clipping()
    y, info = c.apply(speech, c.Params(fraction=0.25), np.random.default_rng(0), ctx())
    peak = float(np.max(np.abs(speech)))
    assert float(np.max(np.abs(y))) == pytest.approx(0.25 * peak, rel=1e-6)
    keep = np.abs(speech) < 0.25 * peak
    assert np.array_equal(y[keep], speech[keep]) and 0 < info["clipped_share"] < 0.5


# ----------------------------------------------------------------------------- conformance


@pytest.mark.parametrize("plugin,params", [
    (AdditiveNoise, "noise(snr=5,source=fake)"), (SimulatedReverb, "reverb(rt60=0.6)"), (Telephone, None),
    (Clipping, "clipping(fraction=0.5)"),
])
def test_builtin_corruptions_conform(plugin, params):
    check_corruption(plugin, params=params)


def test_builtin_babble_conforms(libri):
    check_corruption(Babble, params="babble(snr=5)", options={"root": str(libri)})


def test_the_kit_catches_a_delay_and_a_length_change():
    class Late(Clipping):
        def apply(self, x, params, rng, ctx):
            return np.concatenate([np.zeros(100, np.float32), x[:-100]]), {}

    class Short(Clipping):
        def apply(self, x, params, rng, ctx):
            return x[:-1].copy(), {}

    class Random(Clipping):
        def apply(self, x, params, rng, ctx):
            return (x * np.random.uniform(0.5, 1.0)).astype(np.float32), {}

    with pytest.raises(ConformanceError, match="keeps the timing"):
        check_corruption(Late, params={"fraction": 0.5})
    with pytest.raises(ConformanceError, match="keeps length"):
        check_corruption(Short, params={"fraction": 0.5})
    with pytest.raises(ConformanceError, match="is deterministic"):
        check_corruption(Random, params={"fraction": 0.5})


# ----------------------------------------------------------------------------- the runner


@pytest.fixture
def corr_registry():
    from tests.conftest import FakePlugin
    from ser_bench.plugins import build_registry, make_plugin_manager

    return build_registry(make_plugin_manager(entry_points=False, extra=[FakePlugin()]))


def _cfg(protocol="mismatched", **kw):
    base = dict(protocol=protocol, datasets=["tones"], ser_models=["peak"], enhancers=["none", "half"],
                noise_sources=["white-test"], snrs=[], corruptions=["reverb(rt60=0.3)", "clipping(fraction=0.5)",
                                                                   "reverb(rt60=0.3)+noise(snr=5)"])
    base.update(kw)
    return make_config(base)


def test_a_corruption_run_stores_kinds_and_parameters(corr_registry):
    from ser_bench.db import Store
    from ser_bench.runner import run

    store = Store()
    s = run(_cfg(), store=store, registry=corr_registry, progress=False)
    # 3 LOSO folds x (clean + 3 corruptions x (corrupted + enhanced))
    assert (s.n_cells, s.n_done, s.n_failed) == (21, 21, 0)
    cells = store.cells_frame()
    corr = cells[cells.test_corruption.notna()]
    assert set(corr.test_corruption) == {"reverb(rt60=0.3)", "clipping(fraction=0.5)",
                                          "reverb(rt60=0.3)+noise(snr=5,source=white-test)"}
    row = corr[corr.test_corruption.str.startswith("reverb(rt60=0.3)+")].iloc[0]
    assert json.loads(row.corruption_json) == [{"kind": "reverb", "rt60": 0.3},
                                               {"kind": "noise", "snr": 5.0, "source": "white-test"}]
    assert row.noise == "white-test" and row.test_snr is None or np.isnan(row.test_snr)
    assert set(cells[cells.test_corruption.isna()].test_condition) == {"clean"}
    draws = store.corruption_draws_frame()
    rev = draws[draws.corruption == "reverb(rt60=0.3)"]
    assert len(rev) == 12 and all("room" in json.loads(d)[0] for d in rev.draws_json)
    s2 = run(_cfg(), store=store, registry=corr_registry, progress=False)
    assert s2.n_done == 0 and s2.n_skipped == 21


def test_corrupted_audio_is_deterministic_content_keyed_and_shares_prefixes(corr_registry, tmp_path):
    from ser_bench.protocols import Condition
    from ser_bench.runner import Context

    cfg = _cfg()
    c1 = Context(cfg, corr_registry, str(tmp_path / "c1"))
    utt = next(iter(c1.utterances("tones").values()))
    chain = "reverb(rt60=0.3)+noise(snr=5,source=white-test)"
    a = corrupt(c1, utt, chain)
    # the reverb prefix was cached on the way and is what reverb alone gives
    prefix = c1.cache.load("audio", c1.cache.key(chain_parts(c1, utt, chain, 1)))
    assert np.array_equal(prefix, corrupt(Context(cfg, corr_registry, str(tmp_path / "c3")), utt, "reverb(rt60=0.3)"))
    b = corrupt(Context(cfg, corr_registry, str(tmp_path / "c2")), utt, chain)  # a fresh process, no cache
    assert np.array_equal(a, b)
    other_seed = Context(cfg.model_copy(update={"seed": 1}), corr_registry, str(tmp_path / "c4"))
    assert not np.array_equal(corrupt(other_seed, utt, chain), a)
    k = lambda lab: c1._audio_key(utt, Condition("noisy", None, "white-test", corruption=lab))  # noqa: E731
    assert len({k(chain), k("reverb(rt60=0.3)"), k("reverb(rt60=0.6)"), k("reverb(rt60=0.3)+noise(snr=10,source=white-test)")}) == 4
    assert k(chain) == c1.cache.key(chain_parts(c1, utt, chain))


def test_cell_keys_of_corrupted_cells_follow_the_corruption_version(corr_registry, monkeypatch):
    from ser_bench.interfaces import stable_hash
    from ser_bench.runner import cell_key, plan

    cfg = _cfg(corruptions=["clipping(fraction=0.5)"])

    def keys():
        ctx_, folds, cells = plan(cfg, corr_registry)
        ids = {n: stable_hash(ctx_.identity(k, n)) for k, ns in (("dataset", ["tones"]), ("ser_model", ["peak"]),
               ("enhancer", ["none", "half"]), ("noise_source", ["white-test"])) for n in ns}
        ids["corruption:clipping"] = stable_hash(ctx_.identity("corruption", "clipping"))
        fb = {(d, f.name): f for d, fs in folds.items() for f in fs}
        return [cell_key(c, cfg, ids, fb[(c.dataset, c.fold)]) for c in cells if c.test.corruption]

    before = keys()
    monkeypatch.setattr(Clipping, "version", "2")
    assert not set(keys()) & set(before)


def test_protocols_over_corruptions(corr_registry):
    from ser_bench.protocols import condition_pairs

    labels = ["reverb(rt60=0.3)", "clipping(fraction=0.5)"]
    mm = list(condition_pairs(_cfg(corruptions=labels, enhancers=["none"])))
    assert [(p[2].kind, p[3].corruption) for p in mm[1:]] == [("clean", lab) for lab in labels]
    matched = list(condition_pairs(_cfg("matched", corruptions=labels, enhancers=["none"])))
    assert all(p[2].corruption == p[3].corruption for p in matched[1:])
    multi = list(condition_pairs(_cfg("multi-condition", corruptions=labels, enhancers=["none", "half"])))
    trains = {(p[2].corruption, p[3].corruption) for p in multi[1:] if p[2].kind != "pooled"}
    assert trains == {(a, b) for a in labels for b in labels}
    pooled = [p for p in multi if p[2].kind == "pooled"]  # one pooled model per row, tested on each corruption
    assert len(multi) == 1 + 4 * 2 + 2 * 2 and len(pooled) == 4
    for row, _noise, train, test in pooled:
        assert train.enhancer == row and train.pool[0].kind == "clean"
        assert [m.corruption for m in train.pool[1:]] == labels
        assert all(m.kind == ("noisy" if row == "none" else "enhanced") for m in train.pool[1:])
        assert test in train.pool  # tested on each member it was fitted on


def test_pooled_multi_condition_training(corr_registry, tmp_path):
    """Multi-condition training proper: one model per row fitted on clean + every corruption
    (each training utterance once per member), tested on each corruption; stored, reported, resumed."""
    from ser_bench.artefacts import Context
    from ser_bench.db import Store
    from ser_bench.jobs import _train_featureset
    from ser_bench.protocols import POOL_PREFIX
    from ser_bench.report.corruptions import blocks
    from ser_bench.runner import plan, run

    labels = ["reverb(rt60=0.3)", "clipping(fraction=0.5)"]
    cfg = _cfg("multi-condition", corruptions=labels)
    store = Store()
    s = run(cfg, store=store, registry=corr_registry, progress=False, cache_dir=str(tmp_path / "c"))
    assert s.n_failed == 0
    cells = store.cells_frame()
    pool = cells[cells.train_corruption.fillna("").str.startswith(POOL_PREFIX)]
    assert set(pool.train_corruption) == {POOL_PREFIX + "clean; reverb(rt60=0.3); clipping(fraction=0.5)"}
    assert set(zip(pool.enhancer, pool.test_corruption)) == {(e, c) for e in ("none", "half") for c in labels}
    single = cells[cells.train_corruption == cells.test_corruption]
    # 3 speakers, LOSO: 8 training utterances per fold, seen once per member of the pool
    assert set(single.n_train) == {8} and set(pool.n_train) == {24}
    # the pooled training set is each member's own features, in member order, speakers as groups
    ctx, folds, planned = plan(cfg, corr_registry)
    ctx = Context(cfg, corr_registry, str(tmp_path / "c"))
    cell = next(c for c in planned if c.train.kind == "pooled" and c.enhancer == "half")
    fold = next(f for f in folds["tones"] if f.name == cell.fold)
    fs = _train_featureset(ctx, cell, ctx.utterances("tones"), fold.train)
    want = [ctx.condition_features("tones", "peak", m, fold.train)[i] for m in cell.train.pool for i in fold.train]
    assert np.array_equal(fs.stacked(), np.stack(want)) and len(set(fs.ids)) == 24
    assert fs.groups[:8] == fs.groups[8:16] == [ctx.utterances("tones")[i].speaker for i in fold.train]
    # the report's multi-condition block reads the pooled models, and says so
    b = blocks(store, n_boot=20)[0]
    assert any("pool of clean speech" in n for n in b.notes)
    got = {c.label: c.uar["none"]["mean"] for c in b.conditions}
    res = store.results_frame()
    res = res[res.train_corruption.fillna("").str.startswith(POOL_PREFIX) & (res.metric == "uar")]
    for lab in labels:
        sel = res[(res.test_corruption == lab) & (res.enhancer == "none")]
        assert len(sel) == 3 and got[lab] == pytest.approx(sel.value.mean())
    again = run(cfg, store=store, registry=corr_registry, progress=False, cache_dir=str(tmp_path / "c"))
    assert again.n_done == 0 and again.n_skipped == s.n_cells


def test_bad_corruption_steps_fail_before_any_work(corr_registry):
    from ser_bench.runner import plan

    with pytest.raises(BenchError, match="unknown corruption 'reverbb'"):
        plan(_cfg(corruptions=["reverbb(rt60=0.3)"]), corr_registry)
    with pytest.raises(ConfigError, match="rt60"):
        plan(_cfg(corruptions=["reverb(rt60=9)"]), corr_registry)
    with pytest.raises(ConfigError, match="does not list"):
        plan(_cfg(corruptions=["noise(snr=5,source=elsewhere)"]), corr_registry)


def test_a_silent_step_output_is_refused(corr_registry, monkeypatch, tmp_path):
    from ser_bench.runner import Context

    monkeypatch.setattr(Clipping, "apply", lambda self, x, p, rng, c: (np.full_like(x, np.nan), {}))
    c = Context(_cfg(), corr_registry, str(tmp_path))
    with pytest.raises(ConfigError, match="NaN"):
        corrupt(c, next(iter(c.utterances("tones").values())), "clipping(fraction=0.5)")


# ----------------------------------------------------------------------------- scores


def test_ce_relative_ce_and_mce_as_robuser_defines_them():
    ref = {("reverb", 0.3): 0.4, ("reverb", 0.9): 0.6, ("babble", 0.0): 0.7}
    model = {("reverb", 0.3): 0.3, ("reverb", 0.9): 0.5, ("babble", 0.0): 0.7}
    s = corruption_scores(model, ref, clean=0.2, ref_clean=0.3)
    assert s["ce"]["reverb"] == pytest.approx(0.8 / 1.0)
    assert s["ce"]["babble"] == pytest.approx(1.0)
    assert s["rce"]["reverb"] == pytest.approx((0.1 + 0.3) / (0.1 + 0.3))
    assert s["rce"]["babble"] == pytest.approx(0.5 / 0.4)
    assert s["mce"] == pytest.approx(0.9) and s["rmce"] == pytest.approx((1.0 + 1.25) / 2)
    same = corruption_scores(ref, ref, clean=0.3, ref_clean=0.3)
    assert same["mce"] == pytest.approx(1.0) and same["rmce"] == pytest.approx(1.0)


def test_relative_ce_is_none_where_the_reference_barely_degrades():
    """A family the reference loses < 0.5 UAR points to per severity has no meaningful rCE (a
    denominator near 0 made a 9 pp loss read as rCE 18); the other families keep theirs."""
    ref = {("telephone", None): 0.268, ("babble", 0.0): 0.429}
    model = {("telephone", None): 0.354, ("babble", 0.0): 0.528}
    s = corruption_scores(model, ref, clean=0.264, ref_clean=0.264)
    assert s["rce"]["telephone"] is None and s["ce"]["telephone"] == pytest.approx(0.354 / 0.268)
    assert s["rce"]["babble"] == pytest.approx((0.528 - 0.264) / (0.429 - 0.264))
    assert s["rmce"] == pytest.approx(s["rce"]["babble"])
    # two severities: the threshold is per severity (0.004 + 0.004 < 2 x 0.005)
    two = corruption_scores({("r", 1.0): 0.3, ("r", 2.0): 0.3}, {("r", 1.0): 0.104, ("r", 2.0): 0.104}, 0.1, 0.1)
    assert two["rce"]["r"] is None


def test_gap_recovered():
    assert gap_recovered(0.8, 0.4, 0.6) == pytest.approx(0.5)
    assert gap_recovered(0.8, 0.4, 0.3) == pytest.approx(-0.25)
    assert gap_recovered(0.8, 0.799, 0.9) is None


def test_codec_needs_its_extra_or_says_how_to_install(speech, monkeypatch):
    import builtins

    from ser_bench_plugins.corruptions import Codec

    real = builtins.__import__

    def block(name, *a, **k):
        if name.startswith("imageio_ffmpeg"):
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", block)
    with pytest.raises(ConfigError, match=r"ser-bench\[codec\]"):
        Codec().apply(speech, Codec.Params(), np.random.default_rng(0), ctx())


def test_errors_are_bench_errors():
    assert issubclass(AudioError, BenchError) and issubclass(ConfigError, BenchError)


# ----------------------------------------------------------------------------- the report


def test_the_report_shows_ce_mce_and_per_condition_tables(corr_registry, tmp_path):
    from ser_bench.db import Store
    from ser_bench.report.build import build_report
    from ser_bench.report.corruptions import blocks, markdown
    from ser_bench.runner import run

    store = Store()
    run(_cfg(corruptions=["reverb(rt60=0.3)", "reverb(rt60=0.9)", "clipping(fraction=0.5)"], snrs=[0.0]),
        store=store, registry=corr_registry, progress=False)
    bl = blocks(store, n_boot=50)
    assert len(bl) == 1 and bl[0].enhancers == ["none", "half"]
    b = bl[0]
    assert [c.label for c in b.conditions] == ["clipping(fraction=0.5)", "reverb(rt60=0.3)", "reverb(rt60=0.9)"]
    assert b.scores["none"]["mce"] == pytest.approx(1.0) or b.scores["none"]["mce"] is None
    assert set(b.scores["half"]["ce"]) == {"clipping", "reverb"}
    assert b.not_built_for == {"half": ["clipping(fraction=0.5)", "reverb(rt60=0.3)", "reverb(rt60=0.9)"]}
    for c in b.conditions:
        assert c.uar["none"]["lo"] <= c.uar["none"]["mean"] + 1e-9 and "delta" in c.uar["half"]
    md = markdown(store)
    assert "| enhancer | CE clipping | CE reverb | mCE |" in md and "half †" in md and "not made to fix" in md
    html = build_report(store, tmp_path / "rep").read_text()
    assert "Corruptions: reverberation, babble, channels" in html and "rel. mCE" in html
    # the additive-noise leaderboard keeps its own cells only
    assert "reverb(rt60=0.3)" in html.split("Corruptions: reverberation")[1]


def test_quality_cells_cover_corruption_conditions(corr_registry, tmp_path):
    """``--quality`` measures every corrupted condition against the dry clean utterance: stored
    with its corruption, shown beside the UARs, and additive-noise quality cells keep their keys."""
    from ser_bench.db import Store
    from ser_bench.quality_runner import QualityCell, quality_cells, quality_key
    from ser_bench.report.corruptions import blocks, markdown
    from ser_bench.runner import run

    cfg = _cfg(corruptions=["reverb(rt60=0.3)", "clipping(fraction=0.5)"], snrs=[5.0], quality=True)
    qcs = quality_cells(cfg)
    assert {(q.corruption, q.snr) for q in qcs} == {("", 5.0), ("reverb(rt60=0.3)", None),
                                                    ("clipping(fraction=0.5)", None)}
    old = QualityCell("tones", "white-test", 5.0, "half")
    assert "test_corruption" not in old.coords()  # additive-noise cells: the coordinates (and keys) they had
    store = Store()
    s = run(cfg, store=store, registry=corr_registry, progress=False)
    assert s.n_failed == 0
    cells = store.cells_frame()
    q = cells[(cells.kind == "quality") & cells.test_corruption.notna()]
    assert set(zip(q.test_corruption, q.enhancer)) == {(c, e) for c in ("reverb(rt60=0.3)", "clipping(fraction=0.5)")
                                                       for e in ("none", "half")}
    assert all("dry clean utterance" in json.loads(i)["reference"] for i in q.info_json)
    res = store.results_frame()
    sdr = res[(res.kind == "quality") & (res.metric == "si_sdr") & res.test_corruption.notna()]
    by = {(r.test_corruption, r.enhancer): r.value for r in sdr.itertuples()}
    for c in ("reverb(rt60=0.3)", "clipping(fraction=0.5)"):
        # "half" halves the corrupted signal: SI-SDR is scale-invariant, so it must equal the input's
        assert by[(c, "half")] == pytest.approx(by[(c, "none")], abs=1e-3)
    assert by[("clipping(fraction=0.5)", "none")] > by[("reverb(rt60=0.3)", "none")] - 40  # finite, measured
    cond = {c.label: c for c in blocks(store, n_boot=20)[0].conditions}
    assert set(cond["reverb(rt60=0.3)"].quality) == {"none", "half"}
    assert "SI-SDR" in markdown(store)
    keys = {quality_key(qc, cfg, {"tones": "a", "white-test": "b", "half": "c", "corruption:reverb": "d",
                                  "corruption:clipping": "e"}) for qc in qcs}
    assert len(keys) == len(qcs)


def test_not_built_for_notes_name_only_what_the_enhancer_was_not_built_for():
    """A chain that contains noise (reverb + noise) must not list additive noise among what a denoiser was
    'not built for'; enhancers with the same gaps share one sentence."""
    from ser_bench.report.corruptions import _not_built_for_notes

    labs = ["reverb(rt60=0.6)+noise(snr=5,source=folder)", "telephone"]
    notes = _not_built_for_notes({"a": labs, "b": labs, "c": ["telephone"]}, None)
    assert len(notes) == 2
    both = next(n for n in notes if n.startswith("a and b were"))
    assert "built for additive noise, not for channel distortion, reverberation:" in both
    assert "the 2 condition(s) marked †" in both
    assert next(n for n in notes if n.startswith("c was")).count("additive noise") == 1


def test_compact_table_puts_one_value_per_ser_model_in_each_cell():
    from tests.conftest import FakePlugin, PeakModel
    from ser_bench.db import Store
    from ser_bench import hookimpl
    from ser_bench.plugins import build_registry, make_plugin_manager
    from ser_bench.report.corruptions import blocks, compact
    from ser_bench.report.fmt import num
    from ser_bench.runner import run

    class PeakB(PeakModel):
        name = "peak-b"

    class Extra:
        @hookimpl
        def register_ser_models(self, register):
            register("peak-b", PeakB)

    reg = build_registry(make_plugin_manager(entry_points=False, extra=[FakePlugin(), Extra()]))
    store = Store()
    run(_cfg(corruptions=["reverb(rt60=0.3)", "clipping(fraction=0.5)"], snrs=[0.0], ser_models=["peak", "peak-b"]),
        store=store, registry=reg, progress=False)
    bl = blocks(store, n_boot=50)
    assert [b.ser_model for b in bl] == ["peak", "peak-b"]
    md = compact(store, n_boot=50)
    assert md.startswith(f"### {bl[0].dataset} · mismatched · peak / peak-b (clean UAR ")
    rows = {l.split(" | ")[0].lstrip("| "): l for l in md.splitlines() if l.startswith("| ")}
    assert set(rows) >= {"condition", "reverb(rt60=0.3)", "clipping(fraction=0.5)", "mCE (none = 1)"}
    for lab in ("reverb(rt60=0.3)", "clipping(fraction=0.5)"):
        cells = [x.strip() for x in rows[lab].strip("|").split("|")]
        cs = [next(c for c in b.conditions if c.label == lab) for b in bl]
        assert cells[1] == " / ".join(num(100 * c.uar["none"]["mean"], ".1f") for c in cs)
        want = [num(100 * c.uar["half"]["delta"]["delta"], "+.1f") for c in cs]
        assert [x.strip("*") for x in cells[2].split(" / ")] == want
