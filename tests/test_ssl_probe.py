"""ssl-probe: frozen transformers encoders (tiny random configs saved with save_pretrained), cached
pooled features of every layer, learned-layer-weight and best-layer heads, offline errors."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

import importlib.util

import torch

from ser_bench.cli import cli
from ser_bench.db import Store
from ser_bench.errors import ConfigError, PluginError
from ser_bench.interfaces import FeatureSet, TimeSeries
from ser_bench.testing import check_ser_model
from ser_bench_plugins.ssl_probe import encoder as E
from ser_bench_plugins.ssl_probe.model import SSLProbe, SSLProbeRegressor

try:
    HAVE_TRANSFORMERS = importlib.util.find_spec("transformers") is not None
except ModuleNotFoundError:
    HAVE_TRANSFORMERS = False
pytestmark = pytest.mark.skipif(not HAVE_TRANSFORMERS, reason="needs transformers: pip install 'ser-bench[ssl]'")

ARCHS = {"wavlm": "wavlm-tiny", "hubert": "hubert-tiny", "wav2vec2": "wav2vec2-tiny",
         "data2vec-audio": "data2vec-audio-tiny", "whisper": "whisper-tiny-random"}


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """arch -> a folder holding a tiny random-config encoder written by save_pretrained (~100 kB each)."""
    root = tmp_path_factory.mktemp("ssl-models")
    out = {}
    for arch, name in ARCHS.items():
        model = E.build_full_random(name, seed=1)
        model.save_pretrained(str(root / arch))
        out[arch] = root / arch
    return out


def _direct(folder, audio: np.ndarray) -> np.ndarray:
    """Mean over time of every hidden state, by transformers itself (no ser-bench code)."""
    from transformers import AutoConfig, AutoModel, WhisperFeatureExtractor

    cfg = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    model = AutoModel.from_pretrained(str(folder), local_files_only=True).eval()
    with torch.inference_mode():
        if cfg.model_type == "whisper":
            n = cfg.max_source_positions * 320
            fe = WhisperFeatureExtractor(feature_size=cfg.num_mel_bins, chunk_length=n // 16000)
            feats = fe(audio, sampling_rate=16000, return_tensors="pt")["input_features"]
            hs = model.get_encoder()(feats, output_hidden_states=True).hidden_states
            frames = -(-len(audio) // 320)
            return np.stack([h[0, :frames].mean(0).numpy() for h in hs])
        x = audio
        if getattr(cfg, "feat_extract_norm", "layer") == "layer":
            x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
        hs = model(torch.from_numpy(x.astype(np.float32))[None], output_hidden_states=True).hidden_states
        return np.stack([h[0].mean(0).numpy() for h in hs])


def _tone(seconds: float, f0: float = 200.0, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * 16000)) / 16000
    rng = np.random.default_rng(seed)
    return (0.3 * np.sin(2 * np.pi * f0 * t) + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


# ----------------------------------------------------------------------------- encoder


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_features_equal_a_direct_transformers_forward_pass(tiny_models, arch):
    m = SSLProbe(model=str(tiny_models[arch]), pooling="mean+std")
    x = _tone(1.3, seed=3)
    f = m.featurize(x)
    ref = _direct(tiny_models[arch], x)
    assert f.dtype == np.float32 and f.shape == (ref.shape[0], 2 * ref.shape[1])
    np.testing.assert_allclose(f[:, : ref.shape[1]], ref, atol=2e-5, rtol=1e-4)
    assert np.all(f[:, ref.shape[1]:] > 0)  # the standard deviations


@pytest.mark.parametrize("arch", ["wavlm", "wav2vec2", "whisper"])
def test_batching_by_length_gives_the_same_features(tiny_models, arch):
    m1 = SSLProbe(model=str(tiny_models[arch]), batch_seconds=0, chunk_seconds=1.0, overlap_seconds=0.2)
    m2 = SSLProbe(model=str(tiny_models[arch]), batch_seconds=30, chunk_seconds=1.0, overlap_seconds=0.2)
    audios = [_tone(s, seed=i) for i, s in enumerate((0.4, 1.0, 2.7, 0.01, 1.0))]
    one = [m1.featurize(a) for a in audios]
    many = m2.featurize_batch(audios)
    for a, b in zip(one, many):
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_chunks_cover_every_frame_once():
    x = np.zeros(100_000, np.float32)
    ps = E.pieces(x, chunk=32_000, overlap=8_000)
    assert all(len(p.audio) == 32_000 for p in ps) and ps[-1].start + 32_000 == 100_000
    owned = [p.own for p in ps]
    assert owned[0][0] == -np.inf and owned[-1][1] == np.inf
    assert all(a[1] == b[0] for a, b in zip(owned, owned[1:]))  # contiguous, disjoint
    for p in ps:  # a frame is taken from a piece that contains it, away from the cut
        lo, hi = max(p.own[0], p.start), min(p.own[1], p.start + 32_000)
        assert p.start <= lo < hi <= p.start + 32_000
        assert (p.start == 0 or lo - p.start >= 3_999) and (p.start + 32_000 == 100_000 or p.start + 32_000 - hi >= 3_999)


def test_long_audio_is_encoded_in_chunks(tiny_models):
    m = SSLProbe(model=str(tiny_models["wavlm"]), chunk_seconds=1.0, overlap_seconds=0.25)
    enc = m._encoder()
    x = _tone(3.3, seed=5)
    calls = []
    real = E._forward
    E._forward = lambda enc_, batch: calls.append([len(p.audio) for p in batch]) or real(enc_, batch)
    try:
        f = m.featurize(x)
    finally:
        E._forward = real
    assert len(calls) == 5 and all(n == [16000] for n in calls)  # 3.3 s in 1 s chunks stepping 0.75 s
    assert f.shape == (enc.n_layers, enc.dim) and np.all(np.isfinite(f))
    # every frame of the whole signal counted once: as many as one 3.3 s pass would give
    counts = []
    real_f = E._forward

    def counting(enc_, batch):
        out = real_f(enc_, batch)
        for p, (_, c) in zip(batch, out):
            counts.append(int(((c >= p.own[0]) & (c < p.own[1])).sum()))
        return out

    E._forward = counting
    try:
        m.featurize(x)
    finally:
        E._forward = real
    whole = int(enc.model._get_feat_extract_output_lengths(len(x)))  # 164 frames in one pass
    assert len(counts) == 5 and abs(sum(counts) - whole) <= 2, (counts, whole)


def test_changing_weights_changes_the_cache_key(tiny_models, tmp_path):
    src = tiny_models["wavlm"]
    base = SSLProbe(model=str(src)).feature_key()
    copy = tmp_path / "moved"
    shutil.copytree(src, copy)
    assert SSLProbe(model=str(copy)).feature_key() == base  # where the folder lies does not matter
    assert SSLProbe(model=str(copy)).identity() == SSLProbe(model=str(src)).identity()
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(copy), local_files_only=True)
    with torch.no_grad():
        next(model.parameters()).add_(1e-3)
    model.save_pretrained(str(copy))
    E._INFOS.clear()
    changed = SSLProbe(model=str(copy)).feature_key()
    assert changed != base
    assert SSLProbe(model=str(src), pooling="mean+std").feature_key() != base  # options of the features too
    assert SSLProbe(model=str(src), head="mlp").feature_key() == base  # a head refits from the cache
    assert SSLProbe(model=str(src), device="cpu", batch_seconds=9).identity() == SSLProbe(model=str(src)).identity()
    other = tmp_path / "config-changed"
    shutil.copytree(src, other)
    cfg = json.loads((other / "config.json").read_text())
    cfg["layer_norm_eps"] = 1e-3
    (other / "config.json").write_text(json.dumps(cfg))
    assert SSLProbe(model=str(other)).feature_key() != base


# ----------------------------------------------------------------------------- errors


def test_missing_weights_say_what_to_download(tmp_path):
    with pytest.raises(PluginError) as e:
        SSLProbe(model="microsoft/wavlm-base-plus").feature_key()
    msg = str(e.value)
    assert "\n" not in msg and "hf download microsoft/wavlm-base-plus" in msg and "ssl-probe.model=" in msg
    r = CliRunner().invoke(cli, ["run", "clean", "--ser-model", "ssl-probe", "-o", "ssl-probe.model=nobody/no-such-model",
                                 "-q", "-j", "1"])
    assert r.exit_code != 0 and "Traceback" not in r.output and "hf download nobody/no-such-model" in r.output
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text(json.dumps({"model_type": "wavlm"}))
    with pytest.raises(PluginError, match="no weights"):
        SSLProbe(model=str(tmp_path / "half")).feature_key()
    with pytest.raises(ConfigError, match="ssl-probe.model="):
        SSLProbe().feature_key()
    with pytest.raises(ConfigError, match="random:wavlm-base"):
        SSLProbe(model="random:nonsense").feature_key()
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            SSLProbe(model="random:wavlm-tiny", device="cuda").featurize(_tone(0.2))


def test_a_model_that_is_not_an_audio_encoder_is_refused(tmp_path):
    from transformers import BertConfig, BertModel

    BertModel(BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                         vocab_size=50)).save_pretrained(str(tmp_path / "bert"))
    with pytest.raises(PluginError, match="'bert' model.*not an audio encoder"):
        SSLProbe(model=str(tmp_path / "bert")).featurize(_tone(0.5))


def test_nothing_is_ever_downloaded(tiny_models):
    import os

    SSLProbe(model=str(tiny_models["hubert"])).featurize(_tone(0.3))
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"


# ----------------------------------------------------------------------------- heads


def _layered(n_per: int, seed: int, carrier: int = 2, L: int = 5, F: int = 12):
    """Features (N, L, F) where only layer ``carrier`` carries the class (others are noise)."""
    rng = np.random.default_rng(seed)
    classes = ["a", "b", "c"]
    X, y, g = [], [], []
    for s in range(6):
        for ci, c in enumerate(classes):
            for _ in range(n_per):
                x = rng.standard_normal((L, F)).astype(np.float32)
                x[carrier, ci] += 2.5
                X.append(x)
                y.append(c)
                g.append(f"spk{s}")
    return FeatureSet(X=X, y=y, groups=g, ids=[str(i) for i in range(len(X))])


@pytest.mark.parametrize("head", ["linear", "mlp"])
def test_layer_weights_find_the_layer_that_carries_the_label(head):
    train, test = _layered(8, seed=0), _layered(5, seed=1)
    m = SSLProbe(head=head, hidden_size=32).fit(train)
    w = np.asarray(m.fit_info_["layer_weights"])
    assert w.argmax() == 2 and w[2] > 0.3, w
    pred = m.predict(FeatureSet(X=test.X, y=None, groups=test.groups, ids=test.ids))
    acc = np.mean(np.asarray(pred) == np.asarray(test.y))
    assert acc > 0.85, acc
    held = m.fit_info_["early_stopping_on"]
    assert held.startswith("held-out training speakers: spk")  # whole training speakers
    assert m.fit_info_["best_epoch"] >= 1 and m.fit_info_["valid_score"] > 0.7


def test_best_layer_head_picks_the_label_layer_by_inner_cv():
    train, test = _layered(8, seed=2, carrier=3), _layered(5, seed=3, carrier=3)
    m = SSLProbe(head="best-layer").fit(train)
    assert m.fit_info_["layer"] == 3 and m.layer_ == 3
    pred = m.predict(FeatureSet(X=test.X, y=None, groups=test.groups, ids=test.ids))
    assert np.mean(np.asarray(pred) == np.asarray(test.y)) > 0.85


def test_early_stopping_uses_the_development_partition_when_given():
    train, dev = _layered(6, seed=4), _layered(3, seed=5)
    m = SSLProbe(epochs=30).fit(train, dev)
    assert m.fit_info_["early_stopping_on"] == "the development partition"


def test_fit_is_deterministic_and_pickles_without_torch_objects():
    import pickle

    train = _layered(4, seed=6)
    a, b = SSLProbe(head="mlp", hidden_size=16).fit(train), SSLProbe(head="mlp", hidden_size=16).fit(train)
    assert a.fit_info_ == b.fit_info_
    blob = pickle.dumps(a)
    assert b"torch" not in blob
    c = pickle.loads(blob)
    test = FeatureSet(X=train.X, y=None, groups=train.groups, ids=train.ids)
    assert c.predict(test) == a.predict(test)


def _traces(seed: int, carrier: int = 1, L: int = 4, F: int = 8, win: float = 0.4):
    """Regression features (windows, L, F+1) whose layer ``carrier`` encodes the trace."""
    rng = np.random.default_rng(seed)
    X, y, g = [], [], []
    for s in range(5):
        for k in range(2):
            n_win = 25
            t = np.arange(n_win)
            trace_w = np.sin(2 * np.pi * t / rng.uniform(8, 15) + rng.uniform(0, 6))
            x = rng.standard_normal((n_win, L, F + 1)).astype(np.float32)
            x[:, carrier, 0] += 2 * trace_w
            x[:, :, -1] = win * 16000
            X.append(x)
            frames = np.repeat(trace_w, int(win / 0.04))
            y.append(TimeSeries(frames.astype(np.float32), hop_s=0.04))
            g.append(f"s{s}")
    return FeatureSet(X=X, y=y, groups=g, ids=[str(i) for i in range(len(X))])


@pytest.mark.parametrize("head", ["linear", "best-layer"])
def test_regression_head_learns_a_trace_from_one_layer(head):
    from ser_bench.metrics import ccc

    train, test = _traces(0), _traces(1)
    m = SSLProbeRegressor(head=head, window_seconds=0.4).fit(train)
    if head == "linear":
        assert np.argmax(m.fit_info_["layer_weights"]) == 1
    else:
        assert m.fit_info_["layer"] == 1
    pred = m.predict(FeatureSet(X=test.X, y=None, groups=test.groups, ids=test.ids))
    assert all(len(p.values) == len(t.values) and p.hop_s == 0.04 for p, t in zip(pred, test.y))
    score = ccc(np.concatenate([t.values for t in test.y]), np.concatenate([p.values for p in pred]))
    assert score > 0.7, score


# ----------------------------------------------------------------------------- the kit and the harness


@pytest.mark.parametrize("arch", ["wavlm", "hubert", "wav2vec2", "whisper"])
def test_conformance_kit(tiny_models, arch):
    check_ser_model(SSLProbe, options={"model": str(tiny_models[arch]), "epochs": 40})


def test_conformance_kit_regression(tiny_models):
    check_ser_model(SSLProbeRegressor, options={"model": str(tiny_models["wavlm"]), "epochs": 40, "window_seconds": 0.2})


def _run(args, tmp_path, name):
    r = CliRunner().invoke(cli, ["run", "mismatched", "--ser-model", "ssl-probe", "--enhancer", "wiener", "--snr", "0",
                                 "-o", "synthetic.per_class=1", "-q", "--db", str(tmp_path / f"{name}.db"),
                                 "--cache", str(tmp_path / f"cache-{name}"), *args])
    assert r.exit_code == 0, r.output + repr(r.exception)
    df = Store(f"sqlite:///{tmp_path / f'{name}.db'}").results_frame()
    return df[df.metric == "uar"].sort_values("cell_key")[["cell_key", "test_condition", "value"]].reset_index(drop=True)


def test_bench_run_mismatched_end_to_end_identical_at_j1_and_j2(tiny_models, tmp_path):
    model = ["-o", f"ssl-probe.model={tiny_models['wavlm']}"]
    one = _run([*model, "-j", "1"], tmp_path, "j1")
    assert set(one.test_condition) == {"clean", "noisy", "enhanced"} and len(one) == 18  # 6 folds x 3
    assert one.value.between(0, 1).all()
    two = _run([*model, "-j", "2"], tmp_path, "j2")
    assert one.equals(two)  # same cells, same numbers, bit for bit
    feats = sorted((tmp_path / "cache-j1" / "features").rglob("*.npy"))
    assert len(feats) == 6 * 4 * 3  # 24 utterances x 3 conditions, encoded once
    stamps = [f.stat().st_mtime_ns for f in feats]
    again = _run([*model, "-j", "1", "-o", "ssl-probe.head=best-layer"], tmp_path, "j1")  # another head: refitted
    assert len(again) == 18 and not set(again.cell_key) & set(one.cell_key)
    assert sorted((tmp_path / "cache-j1" / "features").rglob("*.npy")) == feats  # from the cached features
    assert [f.stat().st_mtime_ns for f in feats] == stamps


def test_cached_features_are_the_encoders(tiny_models, tmp_path, monkeypatch):
    """After a run, the feature cache holds exactly what transformers computes for the audio."""
    from ser_bench.config import RunConfig
    from ser_bench.plugins import default_registry
    from ser_bench.protocols import Condition
    from ser_bench.runner import Context

    folder = tiny_models["hubert"]
    r = CliRunner().invoke(cli, ["run", "clean", "--ser-model", "ssl-probe", "-o", f"ssl-probe.model={folder}",
                                 "-o", "synthetic.per_class=1", "-q", "-j", "1", "--cache", str(tmp_path / "c")])
    assert r.exit_code == 0, r.output
    cfg = RunConfig(protocol="clean", ser_models=["ssl-probe"], options={"ssl-probe": {"model": str(folder)},
                                                                          "synthetic": {"per_class": 1}})
    ctx = Context(cfg, default_registry(), str(tmp_path / "c"))
    utts = list(ctx.utterances("synthetic").values())[:3]
    monkeypatch.setattr(SSLProbe, "featurize_batch", lambda self, a: pytest.fail("features were not cached"))
    for u in utts:
        cached = ctx.cache.load("features", ctx.feature_key(u, Condition("clean"), "ssl-probe"))
        assert cached is not None
        np.testing.assert_allclose(cached, _direct(folder, u.load()), atol=2e-5, rtol=1e-4)


def test_plugins_lists_every_option():
    r = CliRunner().invoke(cli, ["plugins", "ssl-probe"])
    assert r.exit_code == 0
    for opt in SSLProbe.Config.model_fields:
        assert f"    {opt}:" in r.output, opt


def test_bench_run_regression_on_a_recola_layout(tiny_models, tmp_path):
    """ssl-probe-reg on dimensional labels: a trace per recording, as long as its label, scored by CCC."""
    from ser_bench_plugins.recola import write_synthetic_recola

    root = write_synthetic_recola(tmp_path / "recola", n_train=2, n_dev=1, n_test=1, seconds=5.0)
    r = CliRunner().invoke(cli, ["run", "mismatched", "--dataset", "recola", "--data-root", f"recola={root}",
                                 "--ser-model", "ssl-probe-reg", "-o", f"ssl-probe-reg.model={tiny_models['whisper']}",
                                 "-o", "ssl-probe-reg.epochs=20", "--enhancer", "wiener", "--snr", "10", "-q", "-j", "1"])
    assert r.exit_code == 0, r.output
    df = Store().results_frame()
    assert sorted(df.test_condition) == ["clean", "enhanced", "noisy"] and set(df.metric) == {"ccc"}
    assert df.value.between(-1, 1).all()
