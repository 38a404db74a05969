"""The cache policy (``keep_audio``): features, fits and predictions are always kept; audio only as
the run says, as 16-bit FLAC; a damaged entry of any kind is detected and recomputed."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ser_bench.cache import Cache
from ser_bench.db import Store
from ser_bench.runner import run


def _signals(cache: Path) -> dict[str, list[Path]]:
    """Audio entries by format (enhancer SNR estimates, 1-value .npy files, aside)."""
    audio = cache / "audio"
    flac = sorted(audio.rglob("*.flac")) if audio.exists() else []
    npy = [p for p in audio.rglob("*.npy") if np.load(p).size > 1] if audio.exists() else []
    return {"flac": flac, "npy": npy}


@pytest.fixture
def spies(monkeypatch):
    """Counts of mixtures made and enhancer calls."""
    import ser_bench.artefacts as A
    from conftest import HalfGain

    calls = {"mix": 0, "enhance": 0}
    real_mix, real_enh = A.mix, HalfGain.enhance_signal

    def mix(*a, **k):
        calls["mix"] += 1
        return real_mix(*a, **k)

    def enhance(self, x):
        calls["enhance"] += 1
        return real_enh(self, x)

    monkeypatch.setattr(A, "mix", mix)
    monkeypatch.setattr(HalfGain, "enhance_signal", enhance)
    return calls


def _run(registry, cfg, tmp_path, db="r.db", cache="cache"):
    return run(cfg, store=Store(str(tmp_path / db)), registry=registry, progress=False, cache_dir=str(tmp_path / cache))


def test_by_default_no_audio_is_kept_and_a_warm_rerun_needs_none(registry, tiny_config, tmp_path, spies):
    cfg = tiny_config("mismatched")
    assert cfg.keep_audio == "none"
    s = _run(registry, cfg, tmp_path)
    assert s.n_failed == 0 and spies["mix"] > 0 and spies["enhance"] > 0
    assert _signals(tmp_path / "cache") == {"flac": [], "npy": []}
    assert list((tmp_path / "cache" / "features").rglob("*.npy")) and list((tmp_path / "cache" / "fits").rglob("*.pkl"))
    spies.update(mix=0, enhance=0)
    s2 = _run(registry, cfg, tmp_path, db="fresh.db")  # a new registry, the cache kept: every cell recomputed
    assert s2.n_done == s.n_done and spies == {"mix": 0, "enhance": 0}  # ... from features alone


def test_keep_enhanced_keeps_flac_that_spares_the_enhancer(registry, tiny_config, tmp_path, spies):
    cfg = tiny_config("mismatched", keep_audio="enhanced")
    _run(registry, cfg, tmp_path)
    sig = _signals(tmp_path / "cache")
    assert len(sig["flac"]) == 12 * 2 and sig["npy"] == []  # 12 utterances x 2 SNRs x enhancer "half"
    n_enh = spies["enhance"]
    import shutil

    shutil.rmtree(tmp_path / "cache" / "features")  # e.g. a new SER model: features are missing
    spies.update(mix=0, enhance=0)
    s = _run(registry, cfg, tmp_path, db="fresh.db")
    assert s.n_failed == 0 and n_enh == 24 and spies["enhance"] == 0  # read back, not re-enhanced
    assert spies["mix"] == 24  # the noisy conditions' mixtures are remade (cheap), not kept


def test_keep_all_keeps_mixtures_too_and_results_do_not_depend_on_the_policy(registry, tiny_config, tmp_path):
    a = _run(registry, tiny_config("mismatched", keep_audio="all"), tmp_path, db="a.db", cache="ca")
    b = _run(registry, tiny_config("mismatched"), tmp_path, db="b.db", cache="cb")
    assert len(_signals(tmp_path / "ca")["flac"]) == 12 * 2 * 2
    fa = Store(str(tmp_path / "a.db")).results_frame().sort_values(["cell_key", "metric"])
    fb = Store(str(tmp_path / "b.db")).results_frame().sort_values(["cell_key", "metric"])
    assert a.n_done == b.n_done and fa.cell_key.tolist() == fb.cell_key.tolist()
    assert np.array_equal(fa.value.to_numpy(), fb.value.to_numpy())
    # the same features under the same keys, whichever policy made them
    feats = lambda c: {p.name: np.load(p).tobytes() for p in (tmp_path / c / "features").rglob("*.npy")}  # noqa: E731
    assert feats("ca") == feats("cb")


def test_the_policy_is_not_part_of_the_config_hash(tiny_config):
    assert tiny_config(keep_audio="all").config_hash() == tiny_config().config_hash()


def test_flac_entries_round_trip_within_16_bit_and_keep_level(tmp_path):
    c = Cache(tmp_path)
    rng = np.random.default_rng(0)
    x = (0.3 * rng.standard_normal(16000)).astype(np.float32)
    loud = 4.0 * x  # an enhancer may overshoot full scale: the gain is kept
    for key, sig in (("a" * 32, x), ("b" * 32, loud), ("c" * 32, np.zeros(0, np.float32))):
        c.store_audio(key, sig)
        y = c.load_audio(key)
        assert y.dtype == np.float32 and y.shape == sig.shape
        if sig.size:
            assert np.max(np.abs(y - sig)) <= np.max(np.abs(sig)) / 32767 * 0.51 + 1e-7
    bytes_per_s = c.audio_path("a" * 32).stat().st_size
    assert bytes_per_s < 16000 * 2  # less than raw 16-bit PCM (and an eighth of the float32 .npy)


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty", "foreign"])
def test_a_damaged_audio_entry_is_dropped_never_trusted(tmp_path, damage):
    c = Cache(tmp_path)
    x = (0.3 * np.random.default_rng(1).standard_normal(32000)).astype(np.float32)
    key = "d" * 32
    c.store_audio(key, x)
    p = c.audio_path(key)
    blob = bytearray(p.read_bytes())
    if damage == "truncate":
        blob = blob[: len(blob) * 2 // 3]
    elif damage == "flip":
        blob[len(blob) // 2] ^= 0x5A
    elif damage == "empty":
        blob = bytearray()
    else:  # a valid FLAC file that is not one of ours (no sample count / CRC)
        import soundfile as sf

        sf.write(p, x, 16000, format="FLAC", subtype="PCM_16")
        blob = bytearray(p.read_bytes())
    p.write_bytes(bytes(blob))
    assert c.load_audio(key) is None and not p.exists()


def test_damaged_entries_in_a_run_are_recomputed(registry, tiny_config, tmp_path, spies):
    cfg = tiny_config("mismatched", keep_audio="enhanced")
    first = _run(registry, cfg, tmp_path)
    root = tmp_path / "cache"
    flac = _signals(root)["flac"]
    feats = sorted((root / "features").rglob("*.npy"))
    flac[0].write_bytes(flac[0].read_bytes()[:100])  # an OS crash mid-write (entries are not fsynced)
    for f in feats:
        if f.name == _enhanced_feature_name(registry, cfg, root, flac[0].stem):
            f.unlink()  # its features missing: the run needs that audio back
    feats[-1].write_bytes(feats[-1].read_bytes()[:40])  # a truncated feature entry
    spies.update(mix=0, enhance=0)
    s = _run(registry, cfg, tmp_path, db="fresh.db")
    assert s.n_failed == 0 and s.n_done == first.n_done
    assert spies["enhance"] == 1  # the damaged signal is remade, not read
    assert _signals(root)["flac"][0].stat().st_size > 1000 and feats[-1].stat().st_size > 100
    a = Store(str(tmp_path / "r.db")).results_frame().sort_values(["cell_key", "metric"]).value.to_numpy()
    b = Store(str(tmp_path / "fresh.db")).results_frame().sort_values(["cell_key", "metric"]).value.to_numpy()
    assert np.array_equal(a, b)


def _enhanced_feature_name(registry, cfg, root, audio_key: str) -> str:
    """The file name of the feature entry computed from enhanced audio ``audio_key``."""
    from ser_bench.plan import plan
    from ser_bench.protocols import Condition

    ctx, _, _ = plan(cfg, registry)
    ctx.cache = Cache(root)
    for utt in ctx.utterances("tones").values():
        for snr in cfg.snrs:
            cond = Condition("enhanced", snr, "white-test", "half")
            if ctx._audio_key(utt, cond) == audio_key:
                return ctx.feature_key(utt, cond, "peak") + ".npy"
    raise AssertionError(audio_key)


def test_egemaps_from_flac_audio_stay_within_the_stated_tolerance():
    """Features computed from a kept (16-bit FLAC) signal, where a feature entry is missing, differ
    from those of the float signal. Stated tolerance, eGeMAPS functionals, relative to |f| + 1:
    median <= 1e-3 and at most 10 % of values beyond 1 % (measured on 12 synthetic utterances x
    noisy / Wiener x 0 / 20 dB: median 7.5e-5, 3.5 % beyond 1 %; F0 and voicing functionals are
    discontinuous: one frame's voicing decision can move them, even at 24 bits)."""
    pytest.importorskip("opensmile", reason="pip install -e '.[dev]' (opensmile) for eGeMAPS")
    from ser_bench.mixing import mix
    from ser_bench.plugins import default_registry
    from ser_bench_plugins.opensmile_svm import smile_functionals

    reg = default_registry()
    utts = reg.create("dataset", "synthetic", {}).utterances()[:4]
    noise = reg.create("noise_source", "synthetic-noise", {})
    wiener = reg.create("enhancer", "wiener", {})
    c = Cache(".")
    rel = []
    for u in utts:
        x = mix(u.load(), noise.clips("test"), 5.0, key=u.id, seed=0, source="n").noisy
        for sig in (x, wiener.enhance(x)):
            c.store_audio("e" * 32, sig)
            f0, f1 = smile_functionals(sig, "eGeMAPSv02"), smile_functionals(c.load_audio("e" * 32), "eGeMAPSv02")
            rel.append(np.abs(f0 - f1) / (np.abs(f0) + 1.0))
    rel = np.concatenate(rel)
    assert np.median(rel) <= 1e-3 and (rel > 0.01).mean() <= 0.10
    assert rel.max() > 0  # the 16-bit copy is not exact: the tolerance is real
