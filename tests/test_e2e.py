"""End-to-end CNN-LSTM models (e2e-arousal, e2e-cls), CCC loss and post-processing."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from ser_bench.errors import ConfigError, PluginError
from ser_bench.interfaces import FeatureSet, TimeSeries
from ser_bench.metrics import ccc, uar
from ser_bench_plugins.e2e.postprocess import PostProcessing, concat_ccc, delay, fit_postprocessing, median_smooth

torch = pytest.importorskip("torch")

import ser_bench_plugins.e2e as e2e_pkg  # noqa: E402
from ser_bench.testing import ToneTraceDataset, check_hooks, check_ser_model, make_tone_dataset  # noqa: E402
from ser_bench_plugins.e2e.model import E2EArousalModel, E2EClassifierModel  # noqa: E402
from ser_bench_plugins.e2e.network import SameConv1d, build_front_end, ccc_loss, same_pad, E2ERegressor  # noqa: E402
from ser_bench_plugins.recola import RecolaDataset, write_synthetic_recola  # noqa: E402

#: A tiny configuration: fast on one CPU core, still learns the synthetic corpus.
TINY = dict(n_filters=10, channel_pool=10, hidden_size=16, lr=3e-3, batch_size=8, chunk_seconds=3.0,
            dropout=0.2, progress=False)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def feature_sets(dataset):
    utts = dataset.utterances()
    out = {}
    for part in ("train", "dev", "test"):
        us = [u for u in utts if u.partition == part]
        out[part] = FeatureSet(X=[u.load() for u in us], y=[u.label for u in us],
                               groups=[u.speaker for u in us], ids=[u.id for u in us])
    return out


@pytest.fixture(scope="module")
def recola_sets(tmp_path_factory):
    root = write_synthetic_recola(tmp_path_factory.mktemp("recola"), n_train=3, n_dev=2, n_test=2, seconds=20.0)
    return feature_sets(RecolaDataset(root=root))


@pytest.fixture(scope="module")
def trained(recola_sets):
    """The tiny regressor fitted on the synthetic RECOLA (train, dev): ~6 s on one core."""
    return E2EArousalModel(**TINY, epochs=4).fit(recola_sets["train"], recola_sets["dev"])


# --------------------------------------------------------------------------- registration


def test_registers_both_models_lazily():
    found = check_hooks(e2e_pkg)
    assert found[("ser_model", "e2e-arousal")] is E2EArousalModel
    assert found[("ser_model", "e2e-cls")] is E2EClassifierModel
    assert E2EArousalModel.task == "regression" and E2EClassifierModel.task == "classification"
    assert not E2EArousalModel.cache_features and not E2EClassifierModel.cache_features


def test_package_and_postprocess_do_not_import_torch():
    code = "import sys, ser_bench_plugins.e2e, ser_bench_plugins.e2e.postprocess; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_options_are_validated():
    with pytest.raises(ConfigError, match="multiple of channel_pool"):
        E2EArousalModel(n_filters=12, channel_pool=10)
    with pytest.raises(ConfigError, match="kernel"):
        E2EArousalModel(kernel=3)
    with pytest.raises(ConfigError, match="preset"):
        E2EArousalModel(preset="paper2017")


# --------------------------------------------------------------------------- network


@pytest.mark.parametrize("k", [1, 20, 40, 81, 400])
def test_fft_convolution_equals_direct(k):
    torch.manual_seed(0)
    conv = SameConv1d(3, 4, k, fft=True)
    x = torch.randn(2, 3, 1000)
    direct = torch.nn.functional.conv1d(same_pad(x, k), conv.weight, conv.bias)
    assert conv(x).shape == direct.shape == (2, 4, 1000)
    assert torch.allclose(conv(x), direct, atol=1e-4)
    # gradients agree too (training runs through the FFT path)
    g = torch.randn(2, 4, 1000)
    grads = []
    for fft in (True, False):
        conv.fft = fft
        conv.zero_grad()
        (conv(x) * g).sum().backward()
        grads.append((conv.weight.grad.clone(), conv.bias.grad.clone()))
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-3) and torch.allclose(grads[0][1], grads[1][1], atol=1e-3)


@pytest.mark.parametrize("preset", ["end2you", "paper2016"])
def test_one_output_per_40_ms(preset):
    front = build_front_end(preset, n_filters=10, channel_pool=10, dropout=0.5)
    assert front.conv1.kernel_size[0] == (20 if preset == "end2you" else 80)
    assert front.conv2.kernel_size[0] == (40 if preset == "end2you" else 4000)
    assert front.conv2.fft == (preset == "paper2016")
    net = E2ERegressor(front, hidden_size=8, lstm_layers=2).eval()
    y = net(torch.randn(3, 2 * 16000))  # 2 s
    assert y.shape == (3, 50) and float(y.detach().abs().max()) < 1.0  # tanh output


def test_paper2016_preset_trains_and_predicts(recola_sets):
    short = FeatureSet(X=[x[: 4 * 16000] for x in recola_sets["train"].X[:2]],
                       y=[TimeSeries(y.values[:101]) for y in recola_sets["train"].y[:2]],
                       groups=["a", "b"], ids=["a", "b"])
    m = E2EArousalModel(**{**TINY, "chunk_seconds": 2.0}, preset="paper2016", epochs=1).fit(short)
    preds = m.predict(FeatureSet(X=short.X, y=None, groups=short.groups, ids=short.ids))
    assert [len(p) for p in preds] == [101, 101]


# --------------------------------------------------------------------------- CCC loss


def test_ccc_loss_matches_reference():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 50))
    y = 0.6 * x + rng.normal(0.3, 0.5, size=(4, 50))
    z = y - y.mean()
    loss = ccc_loss(torch.tensor(x), torch.tensor(y))
    assert float(loss) == pytest.approx(1 - ccc(x.ravel(), y.ravel()), abs=1e-10)
    mask = rng.random((4, 50)) > 0.3
    loss = ccc_loss(torch.tensor(x), torch.tensor(y), torch.tensor(mask))
    assert float(loss) == pytest.approx(1 - ccc(x[mask], y[mask]), abs=1e-10)
    assert float(ccc_loss(torch.tensor(y), torch.tensor(y))) == pytest.approx(0.0, abs=1e-12)
    assert float(ccc_loss(torch.tensor(-z), torch.tensor(z))) == pytest.approx(2.0)
    p = torch.tensor(x, requires_grad=True)
    ccc_loss(p, torch.tensor(y)).backward()
    assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


# --------------------------------------------------------------------------- post-processing


def smooth_trace(n, seed):
    rng = np.random.default_rng(seed)
    t = np.arange(n) * 0.04
    return sum(rng.normal() * np.sin(2 * np.pi * t / rng.uniform(3, 15) + rng.uniform(0, 6)) for _ in range(5))


def test_delay_and_median_helpers():
    assert delay(np.array([1.0, 2, 3, 4]), 2).tolist() == [1, 1, 1, 2]
    assert delay(np.array([1.0, 2, 3, 4]), -1).tolist() == [2, 3, 4, 4]
    assert median_smooth(np.array([0.0, 0, 9, 0, 0]), 3).tolist() == [0, 0, 0, 0, 0]


def test_shift_search_recovers_a_delayed_copy():
    labels = [smooth_trace(800, s) for s in range(3)]
    preds = [delay(y, -12) for y in labels]  # the gold standard lags the predictions by 12 frames
    pp = fit_postprocessing(preds, labels, labels)
    assert pp.shift == 12
    assert pp.valid_ccc_after > 0.99 > pp.valid_ccc_before
    assert concat_ccc(pp.apply(preds), labels) == pytest.approx(pp.valid_ccc_after)
    # without the lag, nothing needs shifting
    assert fit_postprocessing(labels, labels, labels).shift == 0
    assert pp.as_dict()["shift_s"] == pytest.approx(0.48)


def test_median_centring_and_scaling_are_chosen_when_they_help():
    rng = np.random.default_rng(1)
    train = [smooth_trace(1000, 10 + s) * 0.3 + 0.2 for s in range(3)]
    labels = [smooth_trace(1000, s) * 0.3 + 0.2 for s in range(3)]
    spikes = [np.where(rng.random(len(y)) < 0.05, rng.normal(0, 3, len(y)), 0.0) for y in labels]
    preds = [0.5 * (y - 0.2) - 1.0 + s for y, s in zip(labels, spikes)]  # shrunk, offset, spiky
    pp = fit_postprocessing(preds, labels, train)
    assert concat_ccc(pp.apply(preds), labels) == pytest.approx(pp.valid_ccc_after)
    assert pp.median_window >= 3 and pp.centre and pp.scale and pp.shift == 0
    assert pp.train_mean == pytest.approx(np.concatenate(train).mean())
    assert pp.valid_ccc_after > 0.9 and pp.valid_ccc_before < 0.3
    # the fitted steps apply unchanged to new predictions of the same kind
    test_y = [smooth_trace(1000, 7) * 0.3 + 0.2]
    raw = [0.5 * (test_y[0] - 0.2) - 1.0]
    assert concat_ccc(pp.apply(raw), test_y) > concat_ccc(raw, test_y) + 0.3
    again = PostProcessing.from_dict(json.loads(json.dumps(pp.as_dict())))
    np.testing.assert_allclose(again.apply(raw)[0], pp.apply(raw)[0])


def test_postprocessing_never_lowers_validation_ccc():
    labels = [smooth_trace(500, 3)]
    pp = fit_postprocessing([labels[0].copy()], labels, labels)  # already perfect
    assert (pp.median_window, pp.centre, pp.scale, pp.shift) == (0, False, False, 0)
    assert pp.valid_ccc_after == pp.valid_ccc_before == pytest.approx(1.0)


# --------------------------------------------------------------------------- e2e-arousal


def test_learns_synthetic_recola(trained, recola_sets):
    test = recola_sets["test"]
    labels = [y.values for y in test.y]
    preds = trained.predict(FeatureSet(X=test.X, y=None, groups=test.groups, ids=test.ids))
    assert all(isinstance(p, TimeSeries) and p.hop_s == 0.04 for p in preds)
    assert [len(p) for p in preds] == [len(y) for y in labels]
    rho = concat_ccc([p.values for p in preds], labels)
    train_mean = float(np.mean(np.concatenate([y.values for y in recola_sets["train"].y])))
    constant = concat_ccc([np.full(len(y), train_mean) for y in labels], labels)
    rng = np.random.default_rng(0)
    shuffled = concat_ccc([rng.permutation(p.values) for p in preds], labels)
    assert constant == 0.0 and abs(shuffled) < 0.15
    assert rho > 0.4 and rho > shuffled + 0.3, (rho, shuffled)
    info = trained.fit_info_
    assert info["valid_ccc_after_postprocess"] >= info["valid_ccc_before_postprocess"] > 0.2
    assert 1 <= info["best_epoch"] <= info["epochs_run"] == 4
    assert info["postprocess"] == trained.postprocess_ and "shift" in trained.postprocess_
    assert info["validation"] == "the validation partition" and info["train_time_s"] > 0
    json.dumps(info)  # stored with each cell


def test_output_length_follows_the_label_or_the_audio(trained):
    audio = np.random.default_rng(0).normal(0, 0.05, 10 * 16000 + 100).astype(np.float32)
    fs = FeatureSet(X=[audio], y=None, groups=["s"], ids=["u"])
    assert len(trained.predict(fs)[0]) == 251  # floor(10.006 s / 40 ms) + 1, as in AVEC 2016
    for n in (200, 300):
        fs = FeatureSet(X=[audio], y=[TimeSeries(np.zeros(n))], groups=["s"], ids=["u"])
        assert len(trained.predict(fs)[0]) == n


def test_checkpoint_round_trip(trained, recola_sets, tmp_path):
    test = recola_sets["test"]
    path = trained.save(tmp_path / "e2e.pt")
    loaded = E2EArousalModel.load(path, progress=False)
    assert loaded.config == trained.config and loaded.postprocess_ == trained.postprocess_
    assert loaded.fit_info_ == trained.fit_info_ and loaded.input_gain_ == trained.input_gain_
    for a, b in zip(trained.predict(test), loaded.predict(test)):
        np.testing.assert_array_equal(a.values, b.values)
    with pytest.raises(PluginError, match="checkpoint of 'e2e-arousal'"):
        E2EClassifierModel.load(path)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(PluginError, match="junk.pt: cannot read the checkpoint"):
        E2EArousalModel.load(tmp_path / "junk.pt")
    with pytest.raises(PluginError, match="not fitted"):
        E2EArousalModel(**TINY).save(tmp_path / "unfitted.pt")


def test_a_second_fit_on_the_same_data_is_reused(trained, recola_sets):
    assert trained.fit_info_["reused_fit"] is False
    again = E2EArousalModel(**{**TINY, "progress": True}, epochs=4).fit(recola_sets["train"], recola_sets["dev"])
    assert again.fit_info_["reused_fit"] is True and again.fit_info_["best_epoch"] == trained.fit_info_["best_epoch"]
    assert again.postprocess_ == trained.postprocess_
    test = recola_sets["test"]
    for a, b in zip(trained.predict(test), again.predict(test)):
        np.testing.assert_array_equal(a.values, b.values)
    other = FeatureSet(X=[x[:-640] for x in recola_sets["train"].X], y=recola_sets["train"].y,
                       groups=recola_sets["train"].groups, ids=recola_sets["train"].ids)
    fresh = E2EArousalModel(**TINY, epochs=1)
    assert fresh._fit_key(other, recola_sets["dev"]) != fresh._fit_key(recola_sets["train"], recola_sets["dev"])
    assert E2EArousalModel(**TINY, epochs=1, seed=1)._fit_key(other, None) != fresh._fit_key(other, None)


def test_holds_out_speakers_without_validation_and_honours_time_budget(recola_sets):
    tr = recola_sets["train"]
    m = E2EArousalModel(**TINY, epochs=3, max_train_seconds=0.01).fit(tr, None)
    info = m.fit_info_
    assert info["stopped_by_time_budget"] and info["epochs_run"] == 1
    assert info["validation"].startswith("held-out training speakers: train_")
    assert info["valid_ccc_after_postprocess"] is not None


def test_arousal_model_conforms():
    check_ser_model(E2EArousalModel, options={**TINY, "epochs": 1, "chunk_seconds": 1.0, "reuse_fits": False},
                    dataset=ToneTraceDataset(n_speakers=3, per_speaker=2))


def test_arousal_model_refuses_class_labels():
    fs = FeatureSet(X=[np.zeros(16000, np.float32)] * 2, y=["a", "b"], groups=["s1", "s2"], ids=["u1", "u2"])
    with pytest.raises(PluginError, match="use 'e2e-cls'"):
        E2EArousalModel(**TINY).fit(fs)


# --------------------------------------------------------------------------- e2e-cls


def test_classifier_learns_tones():
    utts = make_tone_dataset(n_speakers=4, per_class=4).utterances()

    def fs(keep):
        us = [u for u in utts if keep(u)]
        return FeatureSet(X=[u.load() for u in us], y=[u.label for u in us],
                          groups=[u.speaker for u in us], ids=[u.id for u in us])

    train, test = fs(lambda u: u.speaker != "s3"), fs(lambda u: u.speaker == "s3")
    m = E2EClassifierModel(**{**TINY, "chunk_seconds": 2.0}, epochs=20).fit(train)
    assert m.fit_info_["validation"].startswith("held-out training speakers") and m.classes_ == ["high", "low"]
    assert uar(test.y, m.predict(test)) >= 0.75
    proba = m.predict_proba(test)
    assert proba.shape == (len(test), 2) and np.allclose(proba.sum(axis=1), 1.0)


def test_classifier_conforms_and_pools_long_utterances():
    m = check_ser_model(E2EClassifierModel, options={**TINY, "epochs": 1, "chunk_seconds": 0.2, "reuse_fits": False},
                        dataset=make_tone_dataset(n_speakers=3, per_class=2))
    long = np.tile(make_tone_dataset().utterances()[0].load(), 3)  # 1.5 s: 8 chunks of 0.2 s
    assert m.predict_proba([long]).shape == (1, 2)
    with pytest.raises(PluginError, match="use 'e2e-arousal'"):
        m.fit(FeatureSet(X=[long, long], y=[TimeSeries(np.zeros(3))] * 2, groups=["a", "b"], ids=["1", "2"]))


# --------------------------------------------------------------------------- CPU recipe and time estimate


def test_cpu_fast_recipe_fills_the_options_not_given():
    from ser_bench_plugins.e2e.model import CPU_FAST

    m = E2EArousalModel(recipe="cpu-fast", epochs=3)
    assert m.config.epochs == 3  # given explicitly: kept
    assert {k: getattr(m.config, k) for k in CPU_FAST if k != "epochs"} == {k: v for k, v in CPU_FAST.items()
                                                                              if k != "epochs"}
    paper = E2EArousalModel()
    assert (paper.config.recipe, paper.config.epochs, paper.config.batch_size, paper.config.n_filters) == \
        ("paper", 50, 25, 40)
    assert m.identity_hash() != E2EArousalModel(epochs=3).identity_hash()
    with pytest.raises(ConfigError, match="recipe"):
        E2EArousalModel(recipe="gpu-slow")


def test_cpu_fast_recipe_learns_and_announces_its_time_before_training(recola_sets, capsys, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="ser_bench.e2e")
    m = E2EArousalModel(recipe="cpu-fast", progress=True, seed=0).fit(recola_sets["train"], recola_sets["dev"])
    err = capsys.readouterr().err
    assert "e2e-arousal: expected training time ~" in err and "10 epochs x 2 steps" in err
    msgs = [r.getMessage() for r in caplog.records]
    first = next(i for i, t in enumerate(msgs) if "expected training time" in t)
    assert first < next(i for i, t in enumerate(msgs) if "epoch 1:" in t)  # said before the first epoch ends
    info = m.fit_info_
    assert info["epochs_run"] == 10 and info["expected_train_time_s"] > 0
    test = recola_sets["test"]
    preds = m.predict(FeatureSet(X=test.X, y=None, groups=test.groups, ids=test.ids))
    rho = concat_ccc([p.values for p in preds], [y.values for y in test.y])
    assert rho > 0.4, rho  # held-out recordings
