"""guarded-NAME: registry prefix, blind estimates, calibration (never on SER/test data), caching."""
from __future__ import annotations

import numpy as np
import pytest

from ser_bench import Dataset, Enhancer, NoiseClip, NoiseSource, PluginConfig, Utterance, hookimpl
from ser_bench.errors import ConfigError, UnknownPluginError
from ser_bench.testing import add_white_noise, check_enhancer, speech_like
from ser_bench_plugins import guard_fit as GF
from ser_bench_plugins import guarded as G
from ser_bench_plugins.classic import Wiener

SR = 16_000

# --------------------------------------------------------------------------- spies

LOG: list[tuple] = []  # (what, id, calibrating)
STATE = {"calibrating": False}


def _voice(seed: int, f0: float, seconds: float = 1.0) -> np.ndarray:
    """Harmonic speech-like signal with energy up to 4 kHz (what a low-pass removes)."""
    t = np.arange(int(seconds * SR)) / SR
    rng = np.random.default_rng(seed)
    x = sum(np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 6)) / h**0.5 for h in range(1, int(4000 / f0)))
    env = np.clip(np.sin(2 * np.pi * 3 * t + rng.uniform(0, 6)), 0, None) ** 2  # syllables
    return (0.1 * x * env / np.max(np.abs(x * env))).astype(np.float32)


class SpySpeech(Dataset):
    """Calibration speech: 10 speakers x 2 utterances; every load is logged."""

    name = "spy-speech"

    class Config(PluginConfig):
        root: str | None = None

    def load_utterances(self):
        out = []
        for s in range(10):
            for i in range(2):
                uid = f"c{s}_{i}"
                out.append(Utterance(id=uid, speaker=f"c{s}", label="speech", fingerprint=uid,
                                     loader=lambda uid=uid, s=s, i=i: (LOG.append(("speech", uid, STATE["calibrating"]))
                                                                      or _voice(100 * s + i, 110 + 15 * s))))
        return out


class SpySER(Dataset):
    """The SER corpus of the run (its folds are the test folds); every load is logged."""

    name = "spy-ser"

    class Config(PluginConfig):
        root: str | None = None

    def load_utterances(self):
        out = []
        for s in range(3):
            for label, f0 in (("low", 120.0), ("high", 240.0)):
                for i in range(2):
                    uid = f"e{s}_{label}_{i}"
                    out.append(Utterance(id=uid, speaker=f"e{s}", label=label, fingerprint=uid,
                                         loader=lambda uid=uid, f0=f0, s=s, i=i: (
                                             LOG.append(("ser", uid, STATE["calibrating"]))
                                             or _voice(7000 + 10 * s + i, f0 * (1 + 0.02 * s), 0.5))))
        return out


class SpyNoise(NoiseSource):
    """White noise clips; the first 3 are the test part. Every load is logged with its part."""

    name = "spy-noise"

    class Config(PluginConfig):
        root: str | None = None

    def load_clips(self):
        return [NoiseClip(id=f"n{i}", fingerprint=f"n{i}", loader=lambda i=i: (
            LOG.append(("noise", f"n{i}", STATE["calibrating"]))
            or np.random.default_rng(i).standard_normal(2 * SR).astype(np.float32))) for i in range(12)]

    def part_of(self, clip):
        return "test" if clip.id in ("n0", "n1", "n2") else "train"


class LowPass(Enhancer):
    """Keeps < 1 kHz: removes most white noise (helps when very noisy), and the voice's upper
    harmonics (hurts clean speech). The ideal guard keeps it at low SNR only."""

    name = "lowpass"

    def enhance_signal(self, noisy):
        spec = np.fft.rfft(noisy)
        spec[np.fft.rfftfreq(len(noisy), 1 / SR) > 1000] = 0
        return np.fft.irfft(spec, len(noisy))


class SpyPlugin:
    @hookimpl
    def register_datasets(self, register):
        register("spy-speech", SpySpeech)
        register("spy-ser", SpySER)

    @hookimpl
    def register_noise_sources(self, register):
        register("spy-noise", SpyNoise)

    @hookimpl
    def register_enhancers(self, register):
        register("lowpass", LowPass)
        register("counting-lowpass", CountingLowPass)


def band_features(x: np.ndarray) -> np.ndarray:
    """Cheap stand-in for eGeMAPS in unit tests: cube-root energies of 8 bands up to 8 kHz."""
    p = np.abs(np.fft.rfft(np.asarray(x, np.float64))) ** 2
    return np.array([b.mean() ** (1 / 3) for b in np.array_split(p, 8)])


@pytest.fixture
def spy_registry(monkeypatch):
    from ser_bench.plugins import build_registry, make_plugin_manager

    reg = build_registry(make_plugin_manager(entry_points=False, extra=[SpyPlugin()]))
    monkeypatch.setattr("ser_bench.plugins.default_registry", lambda: reg)
    monkeypatch.setattr(GF, "egemaps", band_features)
    real = G.GuardedEnhancer.calibration

    def flagged(self, *a, **k):  # marks every load made while calibrating
        STATE["calibrating"] = True
        try:
            return real(self, *a, **k)
        finally:
            STATE["calibrating"] = False

    monkeypatch.setattr(G.GuardedEnhancer, "calibration", flagged)
    LOG.clear()
    return reg


CAL = {"speech": "spy-speech", "speech_root": ".", "noise": "spy-noise", "noise_root": ".",
       "snrs": [-25, -20, -10, 0, 10, 20, 40, 60], "per_snr": 2, "max_seconds": 1.0}


# --------------------------------------------------------------------------- registry


def test_prefix_resolves_any_registered_enhancer(spy_registry):
    reg = spy_registry
    assert "guarded-*" in reg.names("enhancer")  # what `bench plugins` lists
    for inner in ("wiener", "none", "lowpass", "rescnn"):
        cls = reg.get("enhancer", f"guarded-{inner}")
        assert cls.name == f"guarded-{inner}" and cls.inner_name == inner
        assert issubclass(cls, G.GuardedEnhancer)
    assert reg.get("enhancer", "guarded-rescnn").requires_training  # inherits the inner's needs
    with pytest.raises(UnknownPluginError, match="'wienr'.*Did you mean 'wiener'"):
        reg.get("enhancer", "guarded-wienr")
    with pytest.raises(UnknownPluginError):
        reg.get("enhancer", "guarded-")
    with pytest.raises(ConfigError, match="pattern"):
        reg.create("enhancer", "guarded-*")


def test_pickles_and_keeps_options(spy_registry):
    import pickle

    e = spy_registry.create("enhancer", "guarded-wiener",
                            {"inner": {"gain_floor_db": -20}, "calibration": {"estimator": "wada", "lo": 0, "hi": 20}})
    e2 = pickle.loads(pickle.dumps(e))
    assert e2.name == "guarded-wiener" and e2.inner.config.gain_floor_db == -20
    x = add_white_noise(speech_like(1.0), 0.0)
    assert np.array_equal(e.enhance(x), e2.enhance(x))


# --------------------------------------------------------------------------- estimates and weights


def test_wada_snr_is_monotone_in_snr():
    x = speech_like(2.0)
    est = [G.wada_snr(add_white_noise(x, snr, seed=1)) for snr in (-5, 0, 10, 20, 40)]
    assert all(b > a for a, b in zip(est, est[1:])), est
    assert est[0] < 5 and est[-1] > 25


def test_removed_snr():
    x = speech_like(1.0).astype(np.float64)
    assert G.removed_snr(x, x) == 100.0
    assert G.removed_snr(x, 0.5 * x) == pytest.approx(0.0, abs=1e-6)  # kept half, removed half


def test_ramp():
    w = G.ramp(np.array([-20, 0, 5, 10, 40]), 0, 10)
    assert w.tolist() == [1.0, 1.0, 0.5, 0.0, 0.0]


def test_fit_ramp_on_synthetic_scores():
    # w = 1 is best below 8 dB, w = 0 above: the fitted ramp must switch around there
    est = np.arange(-10, 40, 2.0)
    w_grid = np.asarray(G.W_GRID)
    dist = np.stack([1 + (w_grid - (1.0 if e < 8 else 0.0)) ** 2 for e in est])
    fit = G.fit_ramp({"dist": dist, "estimates": [{"wada": e} for e in est], "snrs": est.tolist(),
                      "w_grid": list(w_grid)}, ["wada"])
    assert G.ramp(-10, fit["lo"], fit["hi"]) == 1.0 and G.ramp(30, fit["lo"], fit["hi"]) == 0.0
    assert 6 <= fit["lo"] <= fit["hi"] <= 10



def _two_estimate_scores():
    """Two estimates, each blind where the other sees: ``inner`` ranks 10..30 dB input well but reads
    -5..0 dB input as 20 dB (as DeepFilterNet's own estimate misreads very noisy input, less badly);
    ``removed`` separates -5..0 dB sharply and cannot tell 10 dB from 30 dB. The best w falls from 1
    at -5..0 dB to 0.6 at 10 dB, 0.3 at 20 dB and 0 at 30 dB."""
    rng = np.random.default_rng(1)
    snrs = np.repeat([-5.0, 0.0, 10.0, 20.0, 30.0], 12)
    inner = np.where(snrs <= 0, 20.0, snrs) + rng.normal(0, 2, len(snrs))
    removed = np.where(snrs <= 0, -4.0, 12.0) + rng.normal(0, 1, len(snrs))
    best_w = np.select([snrs <= 0, snrs == 10, snrs == 20], [1.0, 0.6, 0.3], 0.0)
    w_grid = np.asarray(G.W_GRID)
    dist = np.stack([1 + 2 * (w_grid - b) ** 2 for b in best_w])
    return snrs, best_w, {"dist": dist, "estimates": [{"inner": a, "removed": b} for a, b in zip(inner, removed)],
                          "snrs": snrs.tolist(), "w_grid": list(w_grid)}


def test_backstop_combines_two_estimates_where_one_is_blind():
    snrs, best_w, scores = _two_estimate_scores()
    one = G.fit_ramp(scores, ["inner", "removed"], harm_weight=3.0)
    two = G.fit_ramp(scores, ["inner", "removed"], harm_weight=3.0, backstop=True)
    assert "backstop" not in one and two["estimator"] == one["estimator"]
    assert two["backstop"]["estimator"] == ({"inner", "removed"} - {one["estimator"]}).pop()
    assert two["cost"] <= one["cost"] - G.BACKSTOP_MIN_GAIN and two["backstop"]["cost_without"] == one["cost"]
    w_one = np.array([G.weight_of(one, e) for e in scores["estimates"]])
    w_two = np.array([G.weight_of(two, e) for e in scores["estimates"]])
    assert (w_two >= w_one).all() and w_two[snrs <= 0].mean() > 0.95 and w_two[snrs == 30].mean() < 0.05
    for s in (10, 20):  # one estimate alone cannot give both; the two together come closer
        assert abs(w_two[snrs == s].mean() - best_w[snrs == s][0]) < abs(w_one[snrs == s].mean() - best_w[snrs == s][0])
    assert two["per_snr"]["0"]["w_mean"] == round(float(w_two[snrs == 0].mean()), 3)
    # a backstop that gains less than the minimum is not kept
    none = G.fit_ramp(scores, ["inner", "removed"], harm_weight=3.0, backstop=True, backstop_min_gain=10.0)
    assert none["backstop"] is None and (none["lo"], none["hi"], none["cost"]) == (one["lo"], one["hi"], one["cost"])


def test_backstop_in_the_wrapper_reads_both_estimates(spy_registry):
    cal = {"estimator": "wada", "lo": 100.0, "hi": 101.0,  # this ramp alone: w = 1 everywhere
           "backstop": {"estimator": "removed", "lo": -50.0, "hi": -49.0}}  # and this one never raises it
    enh = spy_registry.create("enhancer", "guarded-lowpass", {"calibration": cal})
    noisy = add_white_noise(_voice(3, 150), 0, seed=2)
    assert enh.enhance_with_weight(noisy)[1] == 1.0
    cal = {"estimator": "wada", "lo": -101.0, "hi": -100.0,  # w = 0 from the first ramp ...
           "backstop": {"estimator": "removed", "lo": 100.0, "hi": 101.0}}  # ... raised to 1 by the backstop
    enh = spy_registry.create("enhancer", "guarded-lowpass", {"calibration": cal})
    out, w = enh.enhance_with_weight(noisy)
    assert w == 1.0 and np.allclose(out, LowPass().enhance(noisy), atol=1e-6)
    with pytest.raises(ConfigError, match="backstop"):
        spy_registry.create("enhancer", "guarded-lowpass", {"calibration": {**cal, "backstop": {"lo": 1}}}).calibration()
    # the option enters the calibration key
    a = spy_registry.create("enhancer", "guarded-lowpass", CAL)
    b = spy_registry.create("enhancer", "guarded-lowpass", {**CAL, "backstop": False})
    assert a.calibration_key() != b.calibration_key()


def test_calibrated_w_is_one_when_very_noisy_and_near_zero_on_clean(spy_registry):
    enh = spy_registry.create("enhancer", "guarded-lowpass", {**CAL, "estimator": "wada"})
    cal = enh.calibration()
    assert cal["estimator"] == "wada"
    voice = _voice(99, 150, 1.0)  # an unseen voice
    noisy = add_white_noise(voice, -20, seed=5)
    out, w_noisy = enh.enhance_with_weight(noisy)
    assert w_noisy > 0.95
    assert np.allclose(out, LowPass().enhance(noisy), atol=0.05 * np.abs(noisy).max())
    out, w_clean = enh.enhance_with_weight(voice)
    assert w_clean < 0.1
    assert np.allclose(out, voice, atol=0.1 * np.abs(voice).max())
    # the guard's criterion: better than the inner enhancer at high SNR, near it at low SNR
    per = cal["per_snr"]
    assert per["60"]["log_ratio_guarded"] < per["60"]["log_ratio_inner"] - 0.5
    assert per["-20"]["log_ratio_guarded"] <= per["-20"]["log_ratio_inner"] + 0.05


# --------------------------------------------------------------------------- test data never seen


def leaks(log, valid_speakers: set[str]) -> list[tuple]:
    """Loads made while calibrating that are not validation calibration speech or train-part noise."""
    bad = []
    for what, uid, calibrating in log:
        if not calibrating:
            continue
        if what == "ser" or (what == "speech" and uid.split("_")[0] not in valid_speakers):
            bad.append((what, uid))
        if what == "noise" and uid in ("n0", "n1", "n2"):
            bad.append((what, uid))
    return bad


def _run(reg, tmp_path, guard_opts):
    from ser_bench.config import RunConfig
    from ser_bench.db import Store
    from ser_bench.runner import run

    cfg = RunConfig(protocol="mismatched", datasets=["spy-ser"], ser_models=["svm-egemaps"],
                    enhancers=["guarded-lowpass"], noise_sources=["spy-noise"], snrs=[0.0],
                    options={"guarded-lowpass": guard_opts})
    return run(cfg, store=Store(str(tmp_path / "r.db")), registry=reg, executor="inline", progress=False,
               cache_dir=str(tmp_path / "cache"))


def test_calibration_in_a_run_never_touches_ser_or_test_noise(spy_registry, tmp_path, monkeypatch):
    from ser_bench.training import split_speakers

    monkeypatch.setattr("ser_bench_plugins.opensmile_svm.smile_functionals", lambda a, fs: band_features(a))
    valid = {u.speaker for u in split_speakers(SpySpeech().utterances(), valid_fraction=0.1, test_fraction=0)["valid"]}
    s = _run(spy_registry, tmp_path, {**CAL, "calibration_dir": str(tmp_path / "cal")})
    assert s.n_failed == 0 and s.n_done > 0
    calib = [e for e in LOG if e[2]]
    assert {e[0] for e in calib} == {"speech", "noise"}  # the calibration did run, inside the run
    assert leaks(LOG, valid) == []
    assert {e[0] for e in LOG if not e[2]} >= {"ser", "noise"}  # the run itself used SER audio + test noise
    # calibrating on the SER corpus under test (its speakers are the test folds) is refused
    # before anything is loaded or computed, with the fix in the message
    LOG.clear()
    (tmp_path / "again").mkdir()
    from ser_bench.errors import BenchError

    with pytest.raises(BenchError, match=r"calibrated on spy-ser, a dataset of this run.*emotion_corpus=OTHER"):
        _run(spy_registry, tmp_path / "again", {**CAL, "speech": "spy-ser", "calibration_dir": str(tmp_path / "cal2")})
    assert [e for e in LOG if e[2]] == []


def test_calibration_data_is_validation_speech_and_train_noise(spy_registry):
    enh = spy_registry.create("enhancer", "guarded-lowpass", CAL)
    utts, clips, source = enh.calibration_data(spy_registry)
    assert source == "spy-noise"
    assert {c.id for c in clips}.isdisjoint({"n0", "n1", "n2"}) and clips
    assert len({u.speaker for u in utts}) == 1  # 10 % of 10 speakers
    assert not {e[1] for e in LOG if e[0] == "noise"} & {"n0", "n1", "n2"}  # test clips never loaded


# --------------------------------------------------------------------------- identity, storage, conformance


def test_calibration_is_cached_and_keyed(spy_registry, tmp_path):
    opts = {**CAL, "calibration_dir": str(tmp_path / "cal")}
    a = spy_registry.create("enhancer", "guarded-lowpass", opts)
    cal = a.calibration()
    assert any(e[2] for e in LOG)
    LOG.clear()
    b = spy_registry.create("enhancer", "guarded-lowpass", {**opts, "speech_root": "/elsewhere"})
    assert b.calibration() == cal and not LOG  # from the cache: nothing loaded
    assert b.identity() == a.identity()  # where the data lies is not part of it
    assert a.identity()["calibration"] == a.calibration_key() == cal["key"]
    for change in ({"per_snr": 3}, {"estimator": "removed"}, {"seed": 1}, {"harm_weight": 0.5}, {"backstop": False}):
        assert spy_registry.create("enhancer", "guarded-lowpass", {**opts, **change}).calibration_key() != cal["key"]
    w1 = spy_registry.create("enhancer", "guarded-wiener", opts)
    w2 = spy_registry.create("enhancer", "guarded-wiener", {**opts, "inner": {"gain_floor_db": -20}})
    assert w1.calibration_key() != w2.calibration_key()  # the inner enhancer's identity is in the key


def test_no_stored_calibration_and_no_data_is_a_clear_error(spy_registry, tmp_path):
    enh = spy_registry.create("enhancer", "guarded-lowpass", {"calibration_dir": str(tmp_path / "c")})
    with pytest.raises(ConfigError, match="speech_root=PATH"):
        enh.enhance(np.zeros(1600, np.float32))


def test_committed_store_is_used(spy_registry, tmp_path, monkeypatch):
    store = tmp_path / "store.json"
    monkeypatch.setattr(G, "STORE_FILE", store)
    enh = spy_registry.create("enhancer", "guarded-lowpass", {**CAL, "calibration_dir": str(tmp_path / "c")})
    key = enh.calibration_key()
    G.save_to_store({"key": key, "estimator": "wada", "lo": 1.0, "hi": 2.0}, store)
    monkeypatch.setattr(G, "load_store", lambda path=store: G.json.loads(store.read_text()))
    assert enh.calibration()["hi"] == 2.0 and not LOG  # nothing computed


def test_conformance():
    cls = G.GuardedEnhancer.wrap("wiener", Wiener)
    check_enhancer(cls, options={"calibration": {"estimator": "wada", "lo": 0.0, "hi": 20.0}})
    check_enhancer(cls, options={"calibration": {"estimator": "removed", "lo": 0.0, "hi": 20.0}})


class CountingLowPass(LowPass):
    """LowPass with its own per-frame SNR estimate; counts how often it really runs."""

    name = "counting-lowpass"
    calls = {"enhance": 0, "with_snr": 0}

    def enhance_signal(self, noisy):
        type(self).calls["enhance"] += 1
        return super().enhance_signal(noisy)

    def enhance_with_snr(self, noisy):
        type(self).calls["with_snr"] += 1
        y = super().enhance_signal(noisy)
        return y, np.full(len(noisy) // 160, float(np.std(noisy)) * 100)


@pytest.mark.parametrize("estimator", ["removed", "inner"])
def test_a_run_reuses_the_inner_output_and_gives_the_direct_result(spy_registry, tmp_path, estimator):
    """guarded-X beside X in one run: X runs once per mixture (its cached output serves both,
    with its SNR estimate cached beside it), and the guarded audio equals a direct enhance()."""
    from ser_bench.config import RunConfig
    from ser_bench.protocols import Condition
    from ser_bench.runner import Context

    CountingLowPass.calls.update(enhance=0, with_snr=0)
    cal = {"estimator": estimator, "lo": 0.0, "hi": 10.0 if estimator == "removed" else 30.0}
    cfg = RunConfig(protocol="mismatched", datasets=["spy-ser"], ser_models=["svm-egemaps"],
                    enhancers=["counting-lowpass", "guarded-counting-lowpass"], noise_sources=["spy-noise"],
                    snrs=[0.0], options={"guarded-counting-lowpass": {"calibration": cal}},
                    keep_audio="enhanced")  # kept enhanced audio is what the two share
    ctx = Context(cfg, spy_registry, str(tmp_path / "cache"))
    utts = list(ctx.utterances("spy-ser").values())[:3]
    plain = Condition("enhanced", 0.0, "spy-noise", "counting-lowpass")
    guarded = Condition("enhanced", 0.0, "spy-noise", "guarded-counting-lowpass")
    first = [ctx.audio(u, plain)[0] for u in utts]
    out = [ctx.audio(u, guarded)[0] for u in utts]
    runs = CountingLowPass.calls["enhance"] + CountingLowPass.calls["with_snr"]
    # the plain cells' outputs serve the guard, their SNR estimates kept beside them
    assert runs == 3 and CountingLowPass.calls["with_snr"] == 3
    again = Context(cfg, spy_registry, str(tmp_path / "cache"))  # a later run: all from the cache
    q = lambda o: 1.01 * max(1.0, float(np.max(np.abs(o)))) / 32767  # noqa: E731  (kept as 16-bit FLAC)
    assert all(np.array_equal(again.audio(u, guarded)[0], o) for u, o in zip(utts, out))  # 16-bit made and read
    assert CountingLowPass.calls["enhance"] + CountingLowPass.calls["with_snr"] == runs
    direct = spy_registry.create("enhancer", "guarded-counting-lowpass", {"calibration": cal})
    for u, o, p in zip(utts, out, first):
        noisy = ctx.audio(u, Condition("noisy", 0.0, "spy-noise"))[0]
        y, w = direct.enhance_with_weight(noisy)
        np.testing.assert_allclose(o, y, rtol=0, atol=q(o))  # 16-bit, as X's output
        assert 0 < w <= 1 and not np.array_equal(o, noisy)
        assert np.array_equal(o, p) == (w == 1.0)  # w = 1 gives X's very samples, w < 1 others


@pytest.mark.parametrize("keep_audio", ["none", "enhanced"])
def test_a_wrapper_at_w_1_is_its_inner_enhancer_sample_for_sample(spy_registry, tmp_path, keep_audio):
    """Enhanced signals are measured as 16-bit PCM, whether made now or read back from the cache:
    observation adding with w = 1 gives exactly its inner enhancer's samples, cold and warm, under
    either cache policy (it once read X's 16-bit copy while X's own cells used X's float output)."""
    from ser_bench.cache import pcm16
    from ser_bench.config import RunConfig
    from ser_bench.protocols import Condition
    from ser_bench.runner import Context

    cfg = RunConfig(protocol="mismatched", datasets=["spy-ser"], ser_models=["svm-egemaps"],
                    enhancers=["counting-lowpass", "oadd-counting-lowpass"], noise_sources=["spy-noise"],
                    snrs=[0.0], options={"oadd-counting-lowpass": {"calibration": {"w": 1.0}}}, keep_audio=keep_audio)
    plain = Condition("enhanced", 0.0, "spy-noise", "counting-lowpass")
    wrapped = Condition("enhanced", 0.0, "spy-noise", "oadd-counting-lowpass")
    for order in ((plain, wrapped), (wrapped, plain)):
        ctx = Context(cfg, spy_registry, str(tmp_path / f"cache-{order[0].enhancer}"))
        utts = list(ctx.utterances("spy-ser").values())[:3]
        for u in utts:
            first, second = (ctx.audio(u, c)[0] for c in order)
            assert np.array_equal(first, second)
            assert np.array_equal(first, pcm16(first)) and first.dtype == np.float32
            again = Context(cfg, spy_registry, str(tmp_path / f"cache-{order[0].enhancer}"))
            assert np.array_equal(again.audio(u, wrapped)[0], first)  # warm: what the cache kept (or remade)


def test_a_guard_run_alone_computes_the_inner_estimate_once_and_shares_it(spy_registry, tmp_path):
    """guarded-X first (no cached X): X runs once per mixture, and a later run of X itself reuses it."""
    from ser_bench.config import RunConfig
    from ser_bench.protocols import Condition
    from ser_bench.runner import Context

    CountingLowPass.calls.update(enhance=0, with_snr=0)
    cal = {"estimator": "inner", "lo": 0.0, "hi": 30.0}
    cfg = RunConfig(protocol="mismatched", datasets=["spy-ser"], ser_models=["svm-egemaps"],
                    enhancers=["counting-lowpass", "guarded-counting-lowpass"], noise_sources=["spy-noise"],
                    snrs=[0.0], options={"guarded-counting-lowpass": {"calibration": cal}},
                    keep_audio="enhanced")  # kept enhanced audio is what the two share
    ctx = Context(cfg, spy_registry, str(tmp_path / "cache"))
    utts = list(ctx.utterances("spy-ser").values())[:2]
    for u in utts:
        ctx.audio(u, Condition("enhanced", 0.0, "spy-noise", "guarded-counting-lowpass"))
        ctx.audio(u, Condition("enhanced", 0.0, "spy-noise", "counting-lowpass"))
    assert CountingLowPass.calls == {"enhance": 0, "with_snr": 2}


# --------------------------------------------------------------------------- the published alternatives


def _step_scores():
    """w = 1 is best below 8 dB, w = 0 above (as in test_fit_ramp_on_synthetic_scores)."""
    est = np.arange(-10, 40, 2.0)
    w_grid = np.asarray(G.W_GRID)
    dist = np.stack([1 + (w_grid - (1.0 if e < 8 else 0.0)) ** 2 for e in est])
    return est, {"dist": dist, "estimates": [{"wada": e} for e in est], "snrs": est.tolist(), "w_grid": list(w_grid)}


def test_switch_and_constant_policies_fit_by_the_same_cost():
    est, scores = _step_scores()
    sw = G.fit_ramp(scores, ["wada"], harm_weight=3.0, policy="switch")
    assert sw["policy"] == "switch" and sw["estimator"] == "wada" and 6 < sw["threshold"] <= 10
    w = np.array([G.weight_of(sw, e) for e in scores["estimates"]])
    assert set(w.tolist()) == {0.0, 1.0} and (w == (est < sw["threshold"])).all()
    const = G.fit_ramp(scores, ["wada"], harm_weight=3.0, policy="constant")
    assert const["policy"] == "constant" and const["w"] in G.CONSTANT_GRID
    assert all(G.weight_of(const, e) == const["w"] for e in scores["estimates"])
    # one w for every input cannot do what the switch does on a step; with harm costing 4x, the
    # constant stays nearer 0 (the 16 clean mixtures) than 1 (the 9 noisy ones)
    assert const["cost"] > sw["cost"] and const["w"] < 0.5
    # the per-SNR record is there for each policy
    assert sw["per_snr"]["-10"]["w_mean"] == 1.0 and sw["per_snr"]["30"]["w_mean"] == 0.0
    with pytest.raises(ConfigError, match="policy"):
        G.fit_ramp(scores, ["wada"], policy="sometimes")


def test_several_criteria_count_the_worst_one():
    # criterion 0 says w = 1 helps everywhere; criterion 1 says it hurts above 8 dB: the fit must
    # follow criterion 1 there (the guard must not hurt either SER model)
    est, one = _step_scores()
    w_grid = np.asarray(G.W_GRID)
    helps = np.stack([1 + (w_grid - 1.0) ** 2 for _ in est])
    both = dict(one, dist=np.stack([helps, one["dist"]], axis=-1))
    fit = G.fit_ramp(both, ["wada"], harm_weight=3.0)
    assert G.ramp(30, fit["lo"], fit["hi"]) == 0.0 and G.ramp(-10, fit["lo"], fit["hi"]) == 1.0
    only_first = G.fit_ramp(dict(one, dist=helps), ["wada"], harm_weight=3.0)
    assert G.ramp(30, only_first["lo"], only_first["hi"]) == 1.0


def test_oadd_and_snrswitch_prefixes_resolve_pickle_and_key_apart(spy_registry):
    import pickle

    reg = spy_registry
    names = reg.names("enhancer")
    assert {"guarded-*", "oadd-*", "snrswitch-*"} <= set(names)
    keys = set()
    for prefix, cls, policy in (("guarded-", G.GuardedEnhancer, "ramp"), ("oadd-", G.ObservationAdding, "constant"),
                                ("snrswitch-", G.SNRSwitch, "switch")):
        c = reg.get("enhancer", prefix + "lowpass")
        assert issubclass(c, cls) and c.policy == policy and c.name == prefix + "lowpass"
        e = reg.create("enhancer", prefix + "lowpass", CAL)
        keys.add(e.calibration_key())
        e2 = pickle.loads(pickle.dumps(e))
        assert type(e2).name == e.name and type(e2).policy == policy
    assert len(keys) == 3  # a policy is part of the calibration's key (and the cache keys)
    # the defaults of guarded- keep the keys of earlier calibrations: no new recipe entries
    rec = reg.create("enhancer", "guarded-lowpass", CAL)._recipe()
    assert "policy" not in rec and "emotion_corpus" not in rec
    # a hand-given calibration must fit the policy
    x = add_white_noise(_voice(4, 140), 0, seed=3)
    out, w = reg.create("enhancer", "oadd-lowpass", {"calibration": {"w": 0.25}}).enhance_with_weight(x)
    assert w == 0.25 and np.allclose(out, x + 0.25 * (LowPass().enhance(x) - x), atol=1e-6)
    sw = reg.create("enhancer", "snrswitch-lowpass", {"calibration": {"estimator": "wada", "threshold": 100.0}})
    assert sw.enhance_with_weight(x)[1] == 1.0
    with pytest.raises(ConfigError, match="threshold"):
        reg.create("enhancer", "snrswitch-lowpass", {"calibration": {"estimator": "wada", "lo": 0, "hi": 1}}).calibration()
    with pytest.raises(ConfigError, match="'w': 0..1"):
        reg.create("enhancer", "oadd-lowpass", {"calibration": {"w": 2}}).calibration()


@pytest.mark.parametrize("prefix", ["guarded-", "oadd-", "snrswitch-"])
def test_safe_on_clean_and_on_noise_only_input(spy_registry, prefix):
    """Clean speech: the ramp and the switch pass it through (observation adding cannot: its one
    w applies everywhere, so it is bounded by its calibrated w). Noise only, digital silence and a
    very loud input: finite output, never louder than the input, same length."""
    enh = spy_registry.create("enhancer", prefix + "lowpass", {**CAL, "estimator": "wada"})
    cal = enh.calibration()
    voice = _voice(77, 160, 1.0)
    out, w = enh.enhance_with_weight(voice)
    if prefix == "oadd-":
        assert w == cal["w"] and 0.0 <= w <= 1.0
    else:
        assert w < 0.1 and G.removed_snr(voice, out) > 15  # output within 15 dB of the input itself
    rng = np.random.default_rng(8)
    for x in (0.1 * rng.standard_normal(SR).astype(np.float32), np.zeros(SR, np.float32),
              (0.99 * np.sign(voice) * np.abs(voice) ** 0.1).astype(np.float32)):
        y, w = enh.enhance_with_weight(x)
        assert y.shape == x.shape and np.isfinite(y).all() and 0.0 <= w <= 1.0
        assert float(np.sum(y.astype(np.float64) ** 2)) <= 1.01 * float(np.sum(x.astype(np.float64) ** 2)) + 1e-12


def test_emotion_criterion_fits_on_one_half_of_its_corpus_and_mixes_the_other(spy_registry, monkeypatch):
    monkeypatch.setattr(GF, "functionals", lambda x, fs: band_features(x) * (1.0 if fs == "eGeMAPSv02" else 2.0))
    opts = {**CAL, "criterion": "emotion", "emotion_corpus": "spy-ser", "emotion_root": ".", "speech_root": None}
    enh = spy_registry.create("enhancer", "guarded-lowpass", opts)
    assert enh.calibration_corpora() == {"spy-ser"}  # its labelled speech replaces the clean-speech corpus
    split = enh._emotion_split(spy_registry)
    fit_spk, mix_spk = {u.speaker for u in split["train"]}, {u.speaker for u in split["valid"]}
    assert fit_spk and mix_spk and fit_spk.isdisjoint(mix_spk)
    groups, clips, source = enh.calibration_data(spy_registry)  # no speech_root needed
    assert set(groups) == {"spy-ser"} and {u.speaker for u in groups["spy-ser"]} == mix_spk
    crit = enh.criteria(spy_registry)
    loss = crit[0](_voice(1, 120), "low")
    assert len(crit) == 2 and 0.0 <= loss <= -np.log(GF.PROB_FLOOR)  # log-loss of the true emotion
    pools, exs = enh.calibration_mixtures(groups, clips, source)
    assert len(exs) == len(CAL["snrs"]) * min(CAL["per_snr"], len(pools["spy-ser"].ids))
    labels = enh._labels(groups)
    scores = G.score_mixtures(enh.inner, exs[:4], criteria=crit, labels=labels)
    assert np.asarray(scores["dist"]).shape == (4, len(G.W_GRID), 2)
    with pytest.raises(ConfigError, match="labels"):
        G.score_mixtures(enh.inner, exs[:1], criteria=crit)
    cal = enh.calibrate_on(groups, clips, source)
    assert cal["recipe"]["emotion_corpus"] == "spy-ser" and "log-loss" in cal["recipe"]["criterion"]
    assert "speech" not in cal["recipe"]
    assert set(cal["speakers"]) == mix_spk and set(cal["speakers"]).isdisjoint(fit_spk)
    plain = spy_registry.create("enhancer", "guarded-lowpass", CAL)
    assert plain.calibration_key() != enh.calibration_key()
    with pytest.raises(ConfigError, match="emotion_corpus=NAME"):
        spy_registry.create("enhancer", "guarded-lowpass", {**CAL, "criterion": "emotion"}).criteria(spy_registry)


def test_a_run_refuses_an_emotion_corpus_under_test(spy_registry, tmp_path):
    from ser_bench.errors import BenchError

    opts = {**CAL, "criterion": "emotion", "emotion_corpus": "spy-ser", "emotion_root": ".",
            "calibration_dir": str(tmp_path / "cal")}
    with pytest.raises(BenchError, match="'guarded-lowpass' is calibrated on spy-ser"):
        _run(spy_registry, tmp_path, opts)
    assert [e for e in LOG if e[2]] == []  # refused before calibrating


def test_emotion_criterion_follows_the_task_and_moves_with_w(spy_registry, monkeypatch):
    """The criterion is the log-loss of the true emotion: a very noisy input loses more than a
    clean one, and the loss moves with w (the RBF-SVM decision values first tried were constant
    far from the training data, which made every w look alike)."""
    monkeypatch.setattr(GF, "functionals", lambda x, fs: band_features(x))
    enh = spy_registry.create("enhancer", "guarded-lowpass", {**CAL, "criterion": "emotion",
                                                             "emotion_corpus": "spy-ser", "emotion_root": "."})
    crit = enh.criteria(spy_registry)
    clean = _voice(5, 120, 0.5)
    exs = [type("Ex", (), {"noisy": add_white_noise(clean, snr, seed=4), "clean": clean, "snr": snr,
                           "speech_id": "u"})() for snr in (-10, 0, 40)]
    scores = G.score_mixtures(LowPass(), exs, criteria=crit, labels={"u": "low"})
    d = np.asarray(scores["dist"])  # (3 mixtures, 6 w, 2 criteria)
    assert ((d >= 0) & (d <= -np.log(GF.PROB_FLOOR) + 1e-9)).all()
    assert d[0, 0, 0] > d[2, 0, 0]  # the -10 dB input is classified worse than the 40 dB one
    assert d[0, -1, 0] < d[0, 0, 0] - 1.0  # the low-pass output of the -10 dB input is classified better
