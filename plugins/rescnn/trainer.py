"""Training loop for rescnn (torch reached only through :mod:`ser_bench_plugins.rescnn.model`).

Data: clean speech split by speaker (train / valid / test, :func:`ser_bench.training.split_speakers`),
mixed on the fly with the *train* part of a noise source (itself split into clips to train on and
clips to validate on), a fresh random SNR, noise clip and noise segment per example, all derived
from ``(seed, example index)`` so a resumed run continues the same stream.

* dense model: each example is a ``crop_frames``-frame speech segment; the loss covers every frame.
* paper model: each example gives ``frames_per_mix`` random 35-frame windows; the loss covers
  their centre frames (batch = windows, the paper's 64 by default).

A checkpoint (weights, architecture, normalisation, optimizer state, settings, data description,
steps, time, validation history) is written atomically at every validation and at the end;
``resume`` continues from one.

The batch of step ``k`` is a pure function of the settings and ``k`` (its examples are
``first + k * per_step ...``; the paper model's window positions come from ``(seed, k)``), so
``workers > 0`` (batches built by that many processes, ahead of the training step) gives the same
batches as building them in the training process, and a model on ``device="cuda"`` sees the same
stream as on the CPU.
"""
from __future__ import annotations

import collections
import itertools
import logging
import math
import multiprocessing
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ser_bench.interfaces import NoiseSource, Utterance
from ser_bench.training import (
    OnTheFlyMixer, SpeechPool, cache_clips, fixed_mixtures, split_clips, split_speakers,
)

from . import features as fe


@dataclass
class TrainSettings:
    """Training options (recorded in the checkpoint). Defaults: the paper (SGD 0.01, batch 64)."""

    model: str = "dense"  # "dense" or "paper"
    widths: tuple[int, int, int, int] | None = None  # None: CPU widths (dense) / paper widths (paper)
    steps: int | None = None
    minutes: float | None = None
    batch: int | None = None  # dense: crops per step (default 8); paper: windows per step (64)
    crop_frames: int = 200  # dense: frames per training crop
    frames_per_mix: int = 8  # paper: windows taken from each mixture
    optimizer: str = "sgd"
    loss: str = "logmag"  # "logmag" (the paper) or "compressed" (see model.loss_fn)
    lr: float = 0.01
    schedule: str = "constant"  # or "cosine" (decays to lr_final_fraction * lr over the budget)
    lr_final_fraction: float = 0.05
    snrs: tuple[float, ...] = (0, 5, 10, 15, 20, 25)
    p_clean: float = 0.0
    speed: tuple[float, float] = (1.0, 1.0)  # speed perturbation range (see OnTheFlyMixer)
    p_speed: float = 0.0
    tilt: float = 0.0  # largest pre-emphasis coefficient
    p_tilt: float = 0.0
    seed: int = 0
    valid_every: int = 200
    valid_mixtures: int = 48
    valid_fraction: float = 0.1
    test_fraction: float = 0.2
    threads: int | None = None
    device: str = "cpu"  # where the model trains: "cpu", "cuda" or "cuda:N"
    workers: int = 0  # processes building batches ahead of the training step (0: the training process)
    init: str | None = None  # start from this checkpoint's weights and normalisation (fresh optimizer)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from ser_bench.errors import ConfigError

        if self.p_speed and tuple(self.speed) == (1.0, 1.0):
            raise ConfigError(f"p_speed {self.p_speed} with no speed range changes nothing: give --speed LOW,HIGH "
                              "(e.g. 0.9,1.6), or drop --p-speed")
        if self.p_tilt and not self.tilt:
            raise ConfigError(f"p_tilt {self.p_tilt} with tilt 0 changes nothing: give --tilt A (e.g. 0.8), or drop --p-tilt")
        if not (self.device == "cpu" or self.device == "cuda" or self.device.startswith("cuda:")):
            raise ConfigError(f"device {self.device!r}: give cpu, cuda or cuda:N")
        if self.workers < 0:
            raise ConfigError(f"workers {self.workers}: give 0 (build batches in the training process) or more")

    def resolved_widths(self) -> tuple[int, int, int, int]:
        from .model import CPU_WIDTHS, PAPER_WIDTHS

        return tuple(self.widths) if self.widths else (CPU_WIDTHS if self.model == "dense" else PAPER_WIDTHS)

    def resolved_batch(self) -> int:
        return self.batch or (8 if self.model == "dense" else 64)


#: Settings that say how a run is carried out, not what it learns: a resume does not inherit them
#: (a run started on a GPU can continue on a CPU).
RUN_ONLY = ("device", "workers")


def resume_settings(resume: str | Path, overrides: dict[str, Any]) -> TrainSettings:
    """The settings a checkpoint was trained with, updated with ``overrides`` (e.g. a larger budget)."""
    from . import model as M

    saved = dict(M.load_checkpoint(resume)["meta"].get("settings", {}))
    known = set(TrainSettings.__dataclass_fields__) - set(RUN_ONLY)
    base = {k: v for k, v in saved.items() if k in known}
    for k in ("widths", "snrs", "speed"):
        if base.get(k) is not None:
            base[k] = tuple(base[k])
    return TrainSettings(**{**base, **overrides})


def make_batch(examples, model, norm) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dense: (x (B, T+R-1, F), noisy (B, T, F), clean (B, T, F)) with T the shortest example."""
    off, w = model.target_offset, model.window
    xs, ns, cs = [], [], []
    for ex in examples:
        _, Ln = fe.logmag(ex.noisy)
        _, Lc = fe.logmag(ex.clean)
        xs.append(fe.pad_frames(fe.normalise(Ln, norm), off, w - 1 - off))
        ns.append(Ln)
        cs.append(Lc)
    T = min(len(n) for n in ns)
    return (np.stack([x[: T + w - 1] for x in xs]), np.stack([n[:T] for n in ns]), np.stack([c[:T] for c in cs]))


def make_window_batch(examples, model, norm, per_mix: int, rng: np.random.Generator):
    """Paper: ``per_mix`` random windows per example -> (x (B, 35, F), noisy (B, F), clean (B, F))."""
    off, w = model.target_offset, model.window
    xs, ns, cs = [], [], []
    for ex in examples:
        _, Ln = fe.logmag(ex.noisy)
        _, Lc = fe.logmag(ex.clean)
        xp = fe.pad_frames(fe.normalise(Ln, norm), off, w - 1 - off)
        for t in rng.integers(0, len(Ln), size=per_mix):
            xs.append(xp[t : t + w])
            ns.append(Ln[t])
            cs.append(Lc[t])
    return np.stack(xs), np.stack(ns), np.stack(cs)


class BatchMaker:
    """Builds the batch of one step from its index alone (see the module docstring)."""

    def __init__(self, mixer: OnTheFlyMixer, norm: dict[str, np.ndarray], geometry: Any, dense: bool,
                 per_step: int, frames_per_mix: int, seed: int) -> None:
        self.mixer, self.norm, self.dense = mixer, norm, dense
        self.per_step, self.frames_per_mix, self.seed = per_step, frames_per_mix, seed
        # only what make_batch / make_window_batch read from the model, so workers never hold torch modules
        self.geometry = _Geometry(int(geometry.target_offset), int(geometry.window))

    def __call__(self, step: int, first: int):
        exs = [self.mixer.example(first + i) for i in range(self.per_step)]
        if self.dense:
            return make_batch(exs, self.geometry, self.norm)
        return make_window_batch(exs, self.geometry, self.norm, self.frames_per_mix,
                                 np.random.default_rng([self.seed, step]))


@dataclass(frozen=True)
class _Geometry:
    target_offset: int
    window: int


_WORKER_MAKER: BatchMaker | None = None


def _worker_init(maker: BatchMaker) -> None:
    global _WORKER_MAKER
    _WORKER_MAKER = maker


def _worker_batch(step: int, first: int):
    assert _WORKER_MAKER is not None
    return _WORKER_MAKER(step, first)


def batch_stream(make: Callable[[int, int], Any], step0: int, first0: int, per_step: int,
                 workers: int = 0) -> Iterator[Any]:
    """Batches of steps ``step0, step0 + 1, ...`` (step ``k`` from examples ``first0 + (k - step0) *
    per_step ...``), in order. With ``workers`` > 0, that many processes build up to ``2 * workers``
    batches ahead; closing the generator stops them."""
    steps = itertools.count(step0)

    def first(k: int) -> int:
        return first0 + (k - step0) * per_step

    if workers <= 0:
        yield from (make(k, first(k)) for k in steps)
        return
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    pool = ctx.Pool(workers, initializer=_worker_init, initargs=(make,))
    try:
        pending: collections.deque = collections.deque()
        while True:
            while len(pending) < 2 * workers:
                k = next(steps)
                pending.append(pool.apply_async(_worker_batch, (k, first(k))))
            yield pending.popleft().get()
    finally:
        pool.terminate()
        pool.join()


def _lr(s: TrainSettings, progress: float) -> float:
    if s.schedule == "cosine":
        f = s.lr_final_fraction
        return s.lr * (f + (1 - f) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))
    return s.lr


def train(speech: Sequence[Utterance], noise: NoiseSource, out: str | Path, settings: TrainSettings, *,
          resume: str | Path | None = None, data_description: dict[str, Any] | None = None,
          progress: bool = True, log=None) -> dict[str, Any]:
    """Train (or resume) a rescnn model; write the checkpoint to ``out``. Returns the final metadata."""
    from . import model as M

    s = settings
    if log is None:  # visible with a progress bar (stderr), else to the logger
        log = (lambda m: print(m, file=sys.stderr)) if progress else logging.getLogger("ser_bench.rescnn").info
    if s.steps is None and s.minutes is None:
        raise ValueError("give a training budget: steps and/or minutes")
    M.set_threads(s.threads)
    M.seed_all(s.seed)
    device = M.pick_device(s.device, training=True)
    split = split_speakers(speech, valid_fraction=s.valid_fraction, test_fraction=s.test_fraction)
    train_pool = SpeechPool.load(split["train"], progress=progress)
    valid_pool = SpeechPool.load(split["valid"], progress=progress)
    clips = cache_clips(noise.clips("train"))
    train_clips, valid_clips = split_clips(clips)
    if not valid_clips:
        valid_clips = train_clips
    dense = s.model == "dense"
    segment_s = (s.crop_frames - 1) * 0.01 if dense else 2.0
    mixer = OnTheFlyMixer(train_pool, train_clips, snrs=s.snrs, p_clean=s.p_clean, segment_s=segment_s,
                          seed=s.seed, source=noise.name, speed=tuple(s.speed), p_speed=s.p_speed,
                          tilt=s.tilt, p_tilt=s.p_tilt)

    blob = M.load_checkpoint(resume) if resume else None
    if blob is not None:
        arch = M.Arch.from_dict(blob["arch"])
        net = M.model_from_checkpoint(blob)
        norm = {k: v.numpy() for k, v in blob["norm"].items()}
        state = blob["meta"].get("state", {})
    elif s.init:  # warm start: weights and normalisation of another checkpoint, a fresh run otherwise
        init = M.load_checkpoint(s.init)
        arch = M.Arch.from_dict(init["arch"])
        if (arch.time_padding == "valid") != dense:
            raise ValueError(f"{s.init} holds a {'dense' if arch.time_padding == 'valid' else 'paper'} model, "
                             f"not a {s.model!r} one")
        net = M.model_from_checkpoint(init)
        norm = {k: v.numpy() for k, v in init["norm"].items()}
        state = {"init": {"checkpoint": Path(s.init).name, "steps": init["meta"].get("steps"),
                          "speakers": init["meta"].get("data", {}).get("speakers")}}
    else:
        arch = M.Arch(widths=s.resolved_widths(), time_padding="valid" if dense else "same")
        net = M.ResCNN(arch)
        # normalisation statistics from a separate stretch of the example stream
        norm = fe.fit_norm([fe.logmag(mixer.example(10**9 + i).noisy)[1] for i in range(64)])
        state = {}
    net = net.to(device)
    opt = M.make_optimizer(net, s.optimizer, s.lr)
    if blob is not None and "optimizer" in blob:
        opt.load_state_dict(blob["optimizer"])
    init_info = state.get("init")  # the warm start's origin (kept across resumes)
    step, elapsed = int(state.get("step", 0)), float(state.get("elapsed_s", 0.0))
    examples_seen, frames_seen = int(state.get("examples", 0)), int(state.get("frames", 0))
    history: list[dict[str, Any]] = list(state.get("history", []))

    vex = fixed_mixtures(valid_pool, valid_clips, s.snrs, seed=s.seed + 1, source=noise.name,
                         per_snr=max(1, s.valid_mixtures // len(s.snrs)), max_seconds=4.0)
    vrng = np.random.default_rng([s.seed, 7])
    vbatches = ([make_batch([e], net, norm) for e in vex] if dense else
                [make_window_batch([e], net, norm, 16, vrng) for e in vex])
    identity = M.identity_losses(vbatches)
    identity_loss = identity[s.loss]
    log(f"validation: {len(vex)} mixtures; {s.loss} loss of the noisy input (mask 0): {identity_loss:.4f}")
    batch = s.resolved_batch()
    per_step = batch if dense else max(1, batch // s.frames_per_mix)

    meta_base = {
        "settings": {**asdict(s), "widths": list(s.resolved_widths()), "batch": batch},
        "data": {
            "speech": data_description or {},
            "speakers": {k: sorted({u.speaker for u in v}) for k, v in split.items()},
            "train_speech": {k: v for k, v in train_pool.describe().items() if k != "speakers"},
            "valid_speech": {k: v for k, v in valid_pool.describe().items() if k != "speakers"},
            "noise": {"source": noise.name, "options": noise.identity()["config"], "part": "train",
                      "train_clips": len(train_clips), "valid_clips": len(valid_clips)},
            "mixing": mixer.describe(),
        },
        "valid_loss_noisy": round(identity_loss, 5),
        "valid_losses_noisy": {k: round(v, 5) for k, v in identity.items()},
        "normalisation": "input = (max(L, log 1e-4) - mean over the utterance - mu[f]) / sigma[f]; "
                         "L = log(|STFT| + 1e-8); mu, sigma from 64 training mixtures",
    }

    def save(final: bool = False) -> dict[str, Any]:
        meta = {**meta_base, "state": {"step": step, "elapsed_s": round(elapsed, 1), "examples": examples_seen,
                                       "frames": frames_seen, "history": history, "init": init_info},
                "steps": step, "wall_s": round(elapsed, 1), "final": final,
                "valid": history[-1] if history else None}
        M.save_checkpoint(out, net, norm, meta, optimizer=opt)
        return meta

    def budget_progress() -> float:
        p = [step / s.steps] if s.steps else []
        if s.minutes:
            p.append(elapsed / (s.minutes * 60))
        return max(p)

    def done() -> bool:
        return (s.steps is not None and step >= s.steps) or (s.minutes is not None and elapsed >= s.minutes * 60)

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=s.steps, initial=step, unit="step", desc="training rescnn", dynamic_ncols=True)
    ema = None
    last_valid = step
    maker = BatchMaker(mixer, norm, net, dense, per_step, s.frames_per_mix, s.seed)
    stream = batch_stream(maker, step, examples_seen, per_step, s.workers)
    try:
        while not done():
            t0 = time.perf_counter()
            x, n, c = next(stream)
            examples_seen += per_step
            for g in opt.param_groups:
                g["lr"] = _lr(s, budget_progress())
            loss = M.train_step(net, opt, x, n, c, s.loss, device=device)
            if not math.isfinite(loss):
                raise FloatingPointError(f"training diverged at step {step} (loss {loss}); lower the learning rate")
            frames_seen += int(np.prod(n.shape[:2])) if dense else len(n)
            step += 1
            elapsed += time.perf_counter() - t0
            ema = loss if ema is None else 0.98 * ema + 0.02 * loss
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{ema:.4f}", lr=f"{opt.param_groups[0]['lr']:.2g}", min=f"{elapsed / 60:.1f}")
            if step - last_valid >= s.valid_every or done():
                t1 = time.perf_counter()
                vls = M.eval_losses(net, vbatches, device=device)
                vl = vls[s.loss]
                elapsed += time.perf_counter() - t1
                history.append({"step": step, "train_loss_ema": round(ema, 5), "valid_loss": round(vl, 5),
                                "valid_losses": {k: round(v, 5) for k, v in vls.items()},
                                "elapsed_s": round(elapsed, 1), "frames": frames_seen})
                last_valid = step
                save()
                msg = f"step {step}: train loss {ema:.4f}, valid loss {vl:.4f}, {elapsed / 60:.1f} min"
                (bar.write(msg) if bar is not None else log(msg))
    finally:
        stream.close()
    if bar is not None:
        bar.close()
    return save(final=True)


def noisy_validation_loss(vbatches, loss: str = "logmag") -> float:
    """The loss of the identity (mask 0): the reference a trained model must beat."""
    from . import model as M

    return M.identity_losses(vbatches)[loss]


def export(src: str | Path, dst: str | Path, extra_meta: dict[str, Any] | None = None) -> None:
    """Write a shippable copy of a checkpoint: fp16 weights, no optimizer state."""
    from . import model as M

    blob = M.load_checkpoint(src)
    net = M.model_from_checkpoint(blob)
    norm = {k: v.numpy() for k, v in blob["norm"].items()}
    meta = {**blob["meta"], **(extra_meta or {})}
    M.save_checkpoint(dst, net, norm, meta, half=True)
