"""rescnn: architecture, dense == per-frame, training on a tiny task, checkpoints, enhancer, CLI."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402

from ser_bench.errors import BenchError, ConfigError  # noqa: E402
from ser_bench.interfaces import NoiseClip, NoiseSource, Utterance  # noqa: E402
from ser_bench_plugins.rescnn import model as M  # noqa: E402
from ser_bench_plugins.rescnn.enhancer import DEFAULT_CHECKPOINT, ResCNNEnhancer  # noqa: E402
from ser_bench_plugins.rescnn.trainer import TrainSettings, export, train  # noqa: E402

TINY = (4, 4, 8, 8)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models: one thread is faster than two, and robust on a busy 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

# parameter counts (weights + batch-norm affine) per width and time padding
PARAMS = {
    (M.CPU_WIDTHS, "valid"): 749_801,
    (M.CPU_WIDTHS, "same"): 833_417,
    (M.PAPER_WIDTHS, "valid"): 11_710_793,
    (M.PAPER_WIDTHS, "same"): 12_045_257,
}


@pytest.mark.parametrize("widths,padding", list(PARAMS))
def test_shapes_and_parameter_counts(widths, padding):
    net = M.ResCNN(M.Arch(widths=widths, time_padding=padding)).eval()
    assert M.n_parameters(net) == PARAMS[(widths, padding)]
    assert net.receptive_field == 118
    assert [b.conv1.out_channels for b in net.blocks] == [w for w in widths for _ in (0, 1)]
    assert [b.k for b in net.blocks] == [4] * 4 + [3] * 4
    assert [b.s for b in net.blocks] == [1, 1, 2, 1, 2, 1, 2, 1]
    assert [b.proj is not None for b in net.blocks] == [True, False, True, False, True, False, True, False]
    with torch.no_grad():
        if padding == "same":
            assert net.window == 35 and net.time_out == 5 and net.freq_out == 26
            assert net.forward_frames(torch.zeros(2, 35, 201)).shape == (2, 201)
        else:
            assert net.window == 118
            assert net.forward_frames(torch.zeros(2, 118, 201)).shape == (2, 201)
            assert net.forward_dense(torch.zeros(1, 117 + 30, 201)).shape == (1, 30, 201)


def test_paper_model_costs_about_5_gmac_per_window():
    paper = M.ResCNN(M.Arch(widths=M.PAPER_WIDTHS, time_padding="same"))
    assert 5.0e9 < M.macs_per_frame(paper) < 5.3e9
    dense = M.ResCNN(M.Arch(widths=M.PAPER_WIDTHS))
    assert M.macs_per_frame(paper) / M.macs_per_frame(dense) > 10


def _randomise_bn(net):
    g = torch.Generator().manual_seed(1)
    for mod in net.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.copy_(torch.randn(mod.num_features, generator=g))
            mod.running_var.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
            mod.weight.data.copy_(torch.randn(mod.num_features, generator=g))
            mod.bias.data.copy_(torch.randn(mod.num_features, generator=g))
    return net.eval()


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-9), (torch.float32, 1e-4)])
def test_dense_equals_per_frame(dtype, tol):
    """The dense path == its per-frame reference (window = receptive field) at every frame."""
    torch.manual_seed(0)
    widths = TINY if dtype == torch.float64 else M.CPU_WIDTHS
    net = _randomise_bn(M.ResCNN(M.Arch(widths=widths))).to(dtype)
    R, T = net.receptive_field, 37
    x = torch.randn(2, T + R - 1, 201, dtype=dtype)
    with torch.no_grad():
        dense = net.forward_dense(x)
        frames = torch.stack([net.forward_frames(x[:, i : i + R]) for i in range(T)], 1)
    assert dense.shape == frames.shape == (2, T, 201)
    assert float((dense - frames).abs().max()) < tol * max(1.0, float(frames.abs().max()))


def test_chunked_dense_inference_is_exact():
    net = _randomise_bn(M.ResCNN(M.Arch(widths=TINY)))
    R, T = net.receptive_field, 50
    x = np.random.default_rng(0).standard_normal((T + R - 1, 201)).astype(np.float32)
    whole = M.Runner(net, chunk_frames=1000).masks(x, T)
    chunked = M.Runner(net, chunk_frames=7).masks(x, T)
    np.testing.assert_allclose(whole, chunked, atol=1e-5)


def test_paper_model_needs_35_frames():
    net = M.ResCNN(M.Arch(widths=TINY, time_padding="same")).eval()
    with pytest.raises(ValueError, match="35"):
        net.forward_frames(torch.zeros(1, 70, 201))
    with pytest.raises(ValueError, match="per frame"):
        net.forward_dense(torch.zeros(1, 70, 201))


# ----------------------------------------------------------------------- a tiny synthetic task


def _speech(i: int, n: int = 16000) -> np.ndarray:
    """A 'voice': harmonics of a gliding f0, syllable-like amplitude modulation."""
    t = np.arange(n) / 16000
    f0 = 120 + 40 * i + 20 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / 16000
    x = sum(np.sin(h * phase) / h for h in range(1, 8)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2)
    return (0.2 * x).astype(np.float32)


class TinyNoise(NoiseSource):
    name = "tiny-noise"

    def load_clips(self):
        rng = np.random.default_rng(3)
        return [NoiseClip(id=f"n{i}", loader=lambda x=(0.1 * rng.standard_normal(24000)).astype(np.float32): x)
                for i in range(8)]

    def part_of(self, clip):
        return "test" if clip.id in ("n0", "n1") else "train"


def _utterances(n_speakers: int = 5) -> list[Utterance]:
    return [Utterance(id=f"s{s}-{k}", speaker=f"s{s}", label="speech", loader=lambda s=s, k=k: _speech(s + k, 16000))
            for s in range(n_speakers) for k in range(2)]


def test_training_loss_falls_on_tiny_task(tmp_path):
    settings = TrainSettings(model="dense", widths=TINY, steps=24, batch=2, crop_frames=40, optimizer="adam",
                             lr=3e-3, valid_every=12, valid_mixtures=6, snrs=(0, 10), seed=0)
    meta = train(_utterances(), TinyNoise(), tmp_path / "tiny.pt", settings, progress=False, log=lambda *_: None)
    hist = meta["state"]["history"]
    assert meta["steps"] == 24 and len(hist) == 2
    assert hist[-1]["valid_loss"] < meta["valid_loss_noisy"]  # beats the identity (mask 0)
    assert hist[-1]["train_loss_ema"] < hist[0]["train_loss_ema"] or hist[-1]["valid_loss"] < hist[0]["valid_loss"]
    spk = meta["data"]["speakers"]
    assert not set(spk["train"]) & (set(spk["valid"]) | set(spk["test"]))

    # resume continues the step count and the example stream
    more = TrainSettings(**{**settings.__dict__, "steps": 28})
    meta2 = train(_utterances(), TinyNoise(), tmp_path / "tiny2.pt", more, resume=tmp_path / "tiny.pt",
                  progress=False, log=lambda *_: None)
    assert meta2["steps"] == 28 and meta2["state"]["examples"] == 56


def test_paper_model_training_step_runs(tmp_path):
    settings = TrainSettings(model="paper", widths=TINY, steps=2, batch=8, frames_per_mix=4, valid_every=2,
                             valid_mixtures=2, snrs=(5,))
    meta = train(_utterances(), TinyNoise(), tmp_path / "paper.pt", settings, progress=False, log=lambda *_: None)
    assert meta["settings"]["optimizer"] == "sgd" and meta["settings"]["lr"] == 0.01
    enh = ResCNNEnhancer(model="paper", checkpoint=tmp_path / "paper.pt")
    x = _speech(1, 4000)
    assert enh.enhance(x).shape == x.shape



@pytest.mark.parametrize("model,extra", [("dense", {"crop_frames": 40}), ("paper", {"frames_per_mix": 4})])
def test_batches_built_by_workers_are_the_same_batches(tmp_path, model, extra):
    """--workers only moves batch building to other processes: same batches, same weights (and a resume
    from a run with workers continues the same stream without them)."""
    base = dict(model=model, widths=TINY, steps=3, batch=4, optimizer="adam", lr=3e-3, valid_every=3,
                valid_mixtures=2, snrs=(0, 10), seed=5, speed=(0.9, 1.3), p_speed=0.5, **extra)
    metas = {}
    for w in (0, 2):
        metas[w] = train(_utterances(), TinyNoise(), tmp_path / f"w{w}.pt", TrainSettings(**base, workers=w),
                         progress=False, log=lambda *_: None)
    a, b = (M.load_checkpoint(tmp_path / f"w{w}.pt")["state_dict"] for w in (0, 2))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert metas[2]["settings"]["workers"] == 2 and metas[2]["valid"]["valid_loss"] == metas[0]["valid"]["valid_loss"]
    # resuming the workers' run in the training process: workers is how to run, not what to learn
    from ser_bench_plugins.rescnn.trainer import resume_settings

    more = resume_settings(tmp_path / "w2.pt", {"steps": 4})
    assert more.workers == 0 and more.device == "cpu"
    train(_utterances(), TinyNoise(), tmp_path / "w2.pt", more, resume=tmp_path / "w2.pt", progress=False,
          log=lambda *_: None)
    train(_utterances(), TinyNoise(), tmp_path / "w0.pt", TrainSettings(**{**base, "steps": 4}),
          resume=tmp_path / "w0.pt", progress=False, log=lambda *_: None)
    a, b = (M.load_checkpoint(tmp_path / f"w{w}.pt")["state_dict"] for w in (0, 2))
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("kwargs,needle", [({"device": "gpu"}, "cpu, cuda or cuda:N"), ({"workers": -1}, "workers -1")])
def test_bad_run_settings_name_the_value(kwargs, needle):
    with pytest.raises(ConfigError, match=needle):
        TrainSettings(steps=1, **kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without a GPU")
def test_training_on_a_missing_gpu_says_so(tmp_path):
    settings = TrainSettings(widths=TINY, steps=1, batch=2, crop_frames=40, valid_mixtures=2, snrs=(0,), device="cuda")
    with pytest.raises(RuntimeError, match="cuda.*is_available"):
        train(_utterances(), TinyNoise(), tmp_path / "gpu.pt", settings, progress=False, log=lambda *_: None)
    assert not (tmp_path / "gpu.pt").exists()

# ----------------------------------------------------------------------- checkpoints and the enhancer


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    net = _randomise_bn(M.ResCNN(M.Arch(widths=TINY)))
    norm = {"mu": np.zeros(201, np.float32), "sigma": np.ones(201, np.float32)}
    M.save_checkpoint(path, net, norm, {"note": "test"})
    return path


def test_checkpoint_round_trip(tiny_checkpoint, tmp_path):
    blob = M.load_checkpoint(tiny_checkpoint)
    net = M.model_from_checkpoint(blob)
    assert blob["meta"]["note"] == "test" and net.arch.widths == TINY
    x = torch.randn(1, 150, 201)
    again = M.model_from_checkpoint(M.load_checkpoint(tiny_checkpoint))
    with torch.no_grad():
        assert torch.equal(net.forward_dense(x), again.forward_dense(x))
    half = tmp_path / "half.pt"
    export(tiny_checkpoint, half)
    assert M.load_checkpoint(half)["state_dict"]["blocks.0.conv1.weight"].dtype == torch.float16
    with torch.no_grad():
        y = M.model_from_checkpoint(M.load_checkpoint(half)).forward_dense(x)
        assert float((y - net.forward_dense(x)).abs().max()) < 0.05 * float(y.abs().max())
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="cannot read"):
        ResCNNEnhancer(checkpoint=tmp_path / "junk.pt").enhance(np.zeros(1600, np.float32) + 0.01)


def test_enhancer_identity_tracks_weights(tiny_checkpoint, tmp_path):
    a = ResCNNEnhancer(checkpoint=tiny_checkpoint)
    other = tmp_path / "other.pt"
    net = M.ResCNN(M.Arch(widths=TINY))
    M.save_checkpoint(other, net, {"mu": np.zeros(201), "sigma": np.ones(201)}, {})
    b = ResCNNEnhancer(checkpoint=other)
    assert a.identity()["weights_sha256"] != b.identity()["weights_sha256"]
    assert a.identity_hash() != b.identity_hash()


def test_enhancer_keeps_length_and_options(tiny_checkpoint):
    enh = ResCNNEnhancer(checkpoint=tiny_checkpoint)
    assert enh.is_trained()
    for n in (1, 159, 16000):
        x = (0.1 * np.random.default_rng(n).standard_normal(n)).astype(np.float32)
        assert enh.enhance(x).shape == (n,)
    with pytest.raises(ConfigError, match="dense"):
        ResCNNEnhancer(model="paper", checkpoint=tiny_checkpoint).enhance(np.ones(800, np.float32))
    with pytest.raises(ConfigError, match="widths"):
        ResCNNEnhancer(width=(8, 8, 8, 8), checkpoint=tiny_checkpoint).enhance(np.ones(800, np.float32))
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="cuda"):
            ResCNNEnhancer(device="cuda", checkpoint=tiny_checkpoint).enhance(np.ones(800, np.float32))


def test_untrained_paper_model_says_how_to_train():
    enh = ResCNNEnhancer(model="paper")
    assert enh.requires_training and not enh.is_trained()
    with pytest.raises(BenchError, match="bench train rescnn"):
        enh.enhance(np.ones(1600, np.float32))


def test_shipped_checkpoint_loads_and_is_small():
    if not DEFAULT_CHECKPOINT.exists():
        pytest.skip("no shipped checkpoint in this checkout")
    assert DEFAULT_CHECKPOINT.stat().st_size < 4 * 2**20
    enh = ResCNNEnhancer()
    assert enh.is_trained() and enh.checkpoint_path() == DEFAULT_CHECKPOINT
    x = _speech(0, 8000) + (0.05 * np.random.default_rng(0).standard_normal(8000)).astype(np.float32)
    y = enh.enhance(x)
    assert y.shape == x.shape and np.isfinite(y).all()
    assert enh.meta["data"]["noise"]["part"] == "train"
    assert (DEFAULT_CHECKPOINT.parent / "MODEL_CARD.md").exists()


# ----------------------------------------------------------------------- CLI


def test_cli_enhance_keeps_rate_channels_length(tmp_path, tiny_checkpoint):
    from ser_bench.cli_enhance import enhance

    src = tmp_path / "in" / "stereo.wav"
    src.parent.mkdir()
    rng = np.random.default_rng(0)
    sf.write(src, (0.1 * rng.standard_normal((8001, 2))).astype(np.float32), 8000, subtype="PCM_16")
    for name, extra in [("none", []), ("rescnn", ["--checkpoint", str(tiny_checkpoint)])]:
        out = tmp_path / name
        r = CliRunner().invoke(enhance, ["--enhancer", name, *extra, str(src), "--out", str(out)],
                               catch_exceptions=False)
        assert r.exit_code == 0, r.output
        y, sr = sf.read(out / "stereo.wav", always_2d=True)
        assert sr == 8000 and y.shape == (8001, 2) and sf.info(str(out / "stereo.wav")).subtype == "PCM_16"
    r = CliRunner().invoke(enhance, ["--enhancer", "none", "--checkpoint", str(tiny_checkpoint), str(src),
                                     "--out", str(tmp_path / "x")])
    assert r.exit_code != 0 and "takes no checkpoint" in str(r.exception)
    r = CliRunner().invoke(enhance, ["--enhancer", "rescnn", "-o", "rescnn.model=\"paper\"", str(src),
                                     "--out", str(tmp_path / "y")])
    assert r.exit_code != 0 and "bench train rescnn" in str(r.exception)


def test_cli_train_on_fixture_corpora(tmp_path):
    from ser_bench.cli_enhance import train as train_cmd

    libri = tmp_path / "libri" / "train-clean-5"
    for s in range(5):
        d = libri / str(100 + s) / "7"
        d.mkdir(parents=True)
        for k in range(2):
            sf.write(d / f"{100 + s}-7-{k:04d}.flac", _speech(s + k, 16000), 16000)
    noise = tmp_path / "noise"
    noise.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        sf.write(noise / f"n{i}.flac", (0.1 * rng.standard_normal(16000)).astype(np.float32), 16000)
    out = tmp_path / "ckpt.pt"
    args = ["rescnn", "--speech", "librispeech", "--speech-root", str(tmp_path / "libri"), "--noise", "folder",
            "--noise-root", str(noise), "--out", str(out), "--steps", "2", "--width", "4,4,8,8", "--batch", "2",
            "--crop-frames", "40", "--optimizer", "adam", "--lr", "0.001", "--valid-every", "1", "--quiet"]
    augment = ["--speed", "0.9,1.4", "--p-speed", "0.5", "--tilt", "0.7", "--p-tilt", "0.3"]
    r = CliRunner().invoke(train_cmd, args + augment + ["--device", "cpu", "--workers", "1"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    blob = M.load_checkpoint(out)
    assert blob["meta"]["steps"] == 2 and blob["meta"]["data"]["speech"]["dataset"] == "librispeech"
    assert blob["arch"]["widths"] == [4, 4, 8, 8]
    settings = blob["meta"]["settings"]
    assert (list(settings["speed"]), settings["p_speed"], settings["tilt"], settings["p_tilt"]) == ([0.9, 1.4], 0.5, 0.7, 0.3)
    assert (settings["device"], settings["workers"]) == ("cpu", 1)
    r = CliRunner().invoke(train_cmd, args[:-7] + ["--steps", "3", "--resume", str(out), "--quiet"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert M.load_checkpoint(out)["meta"]["steps"] == 3
    resumed = M.load_checkpoint(out)["meta"]["settings"]  # --resume without the flags keeps them
    assert (list(resumed["speed"]), resumed["p_speed"], resumed["tilt"], resumed["p_tilt"]) == ([0.9, 1.4], 0.5, 0.7, 0.3)
    bad = CliRunner().invoke(train_cmd, args[:-7] + ["--steps", "1", "--speed", "1.2"])
    assert bad.exit_code != 0 and "--speed" in bad.output and "LOW,HIGH" in bad.output
    bad = CliRunner().invoke(train_cmd, args[:-7] + ["--steps", "1", "--p-speed", "0.5"])
    assert bad.exit_code != 0 and "--speed LOW,HIGH" in str(bad.exception or bad.output)


def test_conformance_shipped_checkpoint():
    from ser_bench.testing import check_enhancer

    if not DEFAULT_CHECKPOINT.exists():
        pytest.skip("no shipped checkpoint in this checkout")
    check_enhancer(ResCNNEnhancer)


def test_conformance_trained_from_scratch(tmp_path):
    from ser_bench.testing import check_enhancer

    check_enhancer(ResCNNEnhancer, options={"width": TINY}, train=True,
                   train_kwargs={"out": tmp_path / "ck.pt", "steps": 2, "batch": 2, "crop_frames": 40,
                                 "optimizer": "adam", "lr": 1e-3, "valid_every": 2, "progress": False})


# ----------------------------------------------------------------------- losses, splits, held-out corpus


def test_compressed_loss_is_level_free_and_zero_at_the_ideal_mask():
    rng = np.random.default_rng(0)
    clean = torch.as_tensor(rng.normal(-3, 1, (2, 10, 201)), dtype=torch.float32)
    noisy = clean + torch.as_tensor(rng.uniform(0, 2, (2, 10, 201)), dtype=torch.float32)
    ideal = clean - noisy
    assert float(M.loss_fn(noisy, ideal, clean, "compressed")) < 1e-10
    zero = torch.zeros_like(noisy)
    a = float(M.loss_fn(noisy, zero, clean, "compressed"))
    b = float(M.loss_fn(noisy + 3.0, zero, clean + 3.0, "compressed"))  # every level x e^3
    assert a > 0.01 and b == pytest.approx(a, rel=1e-4)
    assert float(M.loss_fn(noisy + 3.0, zero, clean + 3.0, "logmag")) == pytest.approx(
        float(M.loss_fn(noisy, zero, clean, "logmag")), rel=1e-5)
    with pytest.raises(ValueError, match="loss must be"):
        M.loss_fn(noisy, zero, clean, "l1")


def test_training_with_compressed_loss_beats_identity(tmp_path):
    settings = TrainSettings(model="dense", widths=TINY, steps=24, batch=2, crop_frames=40, optimizer="adam",
                             lr=3e-3, valid_every=24, valid_mixtures=6, snrs=(0, 10), seed=0, loss="compressed",
                             test_fraction=0.0)
    meta = train(_utterances(), TinyNoise(), tmp_path / "c.pt", settings, progress=False, log=lambda *_: None)
    last = meta["state"]["history"][-1]
    assert last["valid_loss"] == last["valid_losses"]["compressed"]
    assert last["valid_loss"] < meta["valid_losses_noisy"]["compressed"]  # learns on held-out speakers
    assert meta["data"]["speakers"]["test"] == [] and len(meta["data"]["speakers"]["train"]) == 4


def test_split_speakers_without_test_part():
    from ser_bench.training import split_speakers

    utts = _utterances(10)
    parts = split_speakers(utts, valid_fraction=0.1, test_fraction=0.0)
    assert parts["test"] == [] and len({u.speaker for u in parts["valid"]}) == 1
    assert len({u.speaker for u in parts["train"]}) == 9
    assert split_speakers(utts)["test"]  # the default still holds speakers out



def test_warm_start_takes_weights_and_norm_but_a_fresh_run(tmp_path):
    base = TrainSettings(model="dense", widths=TINY, steps=4, batch=2, crop_frames=40, optimizer="adam", lr=3e-3,
                         valid_every=4, valid_mixtures=4, snrs=(0, 10), seed=0)
    train(_utterances(), TinyNoise(), tmp_path / "a.pt", base, progress=False, log=lambda *_: None)
    a = M.load_checkpoint(tmp_path / "a.pt")
    warm = TrainSettings(**{**base.__dict__, "steps": 0, "init": str(tmp_path / "a.pt"), "loss": "compressed"})
    meta = train(_utterances(), TinyNoise(), tmp_path / "b.pt", warm, progress=False, log=lambda *_: None)
    b = M.load_checkpoint(tmp_path / "b.pt")
    assert meta["steps"] == 0 and meta["state"]["init"]["steps"] == 4  # a new run, its origin recorded
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    assert torch.equal(a["norm"]["mu"], b["norm"]["mu"])
    with pytest.raises(ValueError, match="dense"):
        train(_utterances(), TinyNoise(), tmp_path / "c.pt", TrainSettings(**{**warm.__dict__, "model": "paper"}),
              progress=False, log=lambda *_: None)


def test_tune_offset_keeps_high_snr_safe():
    from ser_bench_plugins.rescnn.validate import tune_offset

    table = {"0.0": {"-5.0": 3.0, "0.0": 3.0, "15.0": -1.0, "20.0": -2.0},
             "4.0": {"-5.0": 2.5, "0.0": 2.4, "15.0": 0.1, "20.0": -0.2},
             "6.0": {"-5.0": 2.0, "0.0": 1.8, "15.0": 0.3, "20.0": 0.1},
             "8.0": {"-5.0": 1.0, "0.0": 0.5, "15.0": 0.2, "20.0": 0.1}}
    assert tune_offset(table) == 6.0  # the best of those losing nothing at 15-20 dB
    assert tune_offset(table, max_loss_db=0.5) == 4.0
    assert tune_offset({"0.0": {"20.0": -2.0}, "2.0": {"20.0": -1.0}}) == 2.0  # none safe: the least loss
