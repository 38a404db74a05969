"""The shared stage of the end-to-end models: options (:class:`E2EConfig`, the ``cpu-fast`` recipe),
data helpers (frames, hold-out subsets, devices) and :class:`_E2EBase`, the machinery both models
use: input gain, seeding and the speaker-disjoint hold-out, the expected-time announcement, fit
reuse within a process, and checkpoints (``save`` / ``load``). The models themselves, and the
names to import, are in :mod:`ser_bench_plugins.e2e.model`.
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import sys
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from ser_bench.errors import PluginError
from ser_bench.interfaces import FeatureSet, PluginConfig, SERModel, TimeSeries

from .network import SAMPLES_PER_FRAME, build_front_end

log = logging.getLogger("ser_bench.e2e")

HOP_S = 0.04
CHECKPOINT_FORMAT = "ser-bench-e2e/1"
#: Fits remembered per process for ``reuse_fits`` (weights are small: MBs).
MAX_REMEMBERED_FITS = 4
_FITS: OrderedDict[str, dict[str, Any]] = OrderedDict()


#: ``recipe = "cpu-fast"``: a network and schedule that train on a CPU in minutes, not hours (about
#: 25x less compute than the paper's: 20 filters instead of 40 cost 2.7x less per second of audio,
#: 10 epochs instead of 50 another 5x). Options given explicitly win over these.
CPU_FAST = {"n_filters": 20, "hidden_size": 64, "epochs": 10, "batch_size": 8, "chunk_seconds": 4.0, "lr": 1e-3}


class E2EConfig(PluginConfig):
    """Options shared by both models.

    Attributes:
        recipe: "paper" (the defaults below: the paper's network and schedule; about 15 s of
            audio per CPU-second of training, so 50 epochs of 3 minutes of audio take ~10 CPU
            minutes and hours on a shared machine) or "cpu-fast" (``CPU_FAST``: 20 filters,
            64 LSTM units, 10 epochs of batches of 8 chunks of 4 s, lr 1e-3; ~25x less compute).
            Options given explicitly override the recipe's. Before training, the model prints
            the expected training time (steps x the measured cost of the first step).
        preset: kernel widths: "end2you" (20 and 40 samples, per 40 ms frame: the End2You
            implementation) or "paper2016" (80 and 4000 samples, over the whole chunk, the
            second by FFT: the 2016 paper's sizes).
        n_filters: filters of each convolution (40 in both).
        channel_pool: max-pooling size across the channels after conv2 (10).
        conv: "auto" (FFT for kernels wider than 256), "direct" or "fft".
        hidden_size, lstm_layers: the uni-directional LSTM stack (256, 2).
        dropout: after each convolution (0.5).
        epochs, lr, batch_size: Adam training (50, 1e-4, 25 chunks).
        chunk_seconds: training chunk length (6 s; rounded to 40 ms frames).
        seed: seeds weights, dropout, shuffling and the hold-out split. Deliberately not the
            runner's per-cell seed: every cell fitted on the same data gets the same model, so
            the clean -> noisy / enhanced cells of a mismatched run differ only by their test
            audio (and ``reuse_fits`` can share one fit among them).
        reuse_fits: remember the last fits in this process, keyed by the options and a digest
            of the training and validation data, and reuse one instead of training again
            (training is deterministic on a CPU). Within ``bench run`` the runner itself fits
            once per training set and keeps fits in its on-disk cache, across runs and processes.
        device: "auto" (CUDA when present), "cpu" or "cuda".
        max_train_seconds: stop training once this much wall time has passed (after the step
            in progress; that epoch is still validated). None: no budget.
        valid_fraction: share of training speakers held out when fit() gets no validation set.
        normalize_input: scale all audio by the inverse RMS of the training audio (one gain).
        num_threads: torch CPU threads (0: leave torch's setting).
        progress: show a progress bar (training steps, with epoch, loss and validation score).
    """

    recipe: Literal["paper", "cpu-fast"] = "paper"
    preset: Literal["end2you", "paper2016"] = "end2you"
    n_filters: int = Field(40, ge=1)
    channel_pool: int = Field(10, ge=1)
    conv: Literal["auto", "direct", "fft"] = "auto"
    hidden_size: int = Field(256, ge=1)
    lstm_layers: int = Field(2, ge=1)
    dropout: float = Field(0.5, ge=0.0, lt=1.0)
    epochs: int = Field(50, ge=1)
    lr: float = Field(1e-4, gt=0.0)
    batch_size: int = Field(25, ge=1)
    chunk_seconds: float = Field(6.0, ge=HOP_S)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    max_train_seconds: float | None = Field(None, gt=0.0)
    valid_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    normalize_input: bool = True
    num_threads: int = Field(0, ge=0)
    progress: bool = True
    reuse_fits: bool = True

    @model_validator(mode="before")
    @classmethod
    def _recipe(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("recipe") == "cpu-fast":
            data = {**CPU_FAST, **data}
        return data

    @model_validator(mode="after")
    def _check(self) -> E2EConfig:
        if self.n_filters % self.channel_pool:
            raise ValueError(
                f"n_filters ({self.n_filters}) must be a multiple of channel_pool ({self.channel_pool})"
            )
        return self


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise PluginError("device='cuda' was asked for but torch sees no CUDA GPU; use device=auto or cpu")
    return torch.device(name)


def _subset(fs: FeatureSet, idx: Sequence[int]) -> FeatureSet:
    return FeatureSet(
        X=[fs.X[i] for i in idx],
        y=None if fs.y is None else [fs.y[i] for i in idx],
        groups=[fs.groups[i] for i in idx],
        ids=[fs.ids[i] for i in idx],
    )


def _frames(n_samples: int) -> int:
    """40 ms frames needed to cover ``n_samples`` (the last one zero-padded)."""
    return max(1, math.ceil(n_samples / SAMPLES_PER_FRAME))


def _fit_length(x: np.ndarray, n: int) -> np.ndarray:
    """Crop to ``n`` values, or pad at the end by repeating the last value."""
    if len(x) >= n:
        return x[:n]
    return np.concatenate([x, np.full(n - len(x), x[-1] if len(x) else 0.0, dtype=x.dtype)])


class _E2EBase(SERModel):
    """Shared machinery: devices, seeding, hold-out split, input gain, checkpoints."""

    cache_features: ClassVar[bool] = False
    version: ClassVar[str] = "1"
    Config = E2EConfig

    net_: torch.nn.Module | None = None

    # ---------------------------------------------------------------- helpers
    def featurize(self, audio: np.ndarray) -> np.ndarray:
        """The waveform itself (float32, 16 kHz)."""
        return np.asarray(audio, dtype=np.float32)

    @property
    def chunk_frames(self) -> int:
        return max(1, int(round(self.config.chunk_seconds / HOP_S)))

    def _front(self):
        c = self.config
        return build_front_end(
            c.preset, n_filters=c.n_filters, channel_pool=c.channel_pool, dropout=c.dropout, conv=c.conv
        )

    def _holdout(self, train: FeatureSet) -> tuple[FeatureSet, FeatureSet | None, str]:
        """Split off a speaker-disjoint validation part of ``train`` (seeded)."""
        speakers = sorted(set(train.groups))
        if len(speakers) < 2:
            return train, None, "none (a single training speaker: last epoch kept, no post-processing)"
        rng = np.random.default_rng([self.config.seed, 7])
        n_hold = min(len(speakers) - 1, max(1, int(round(self.config.valid_fraction * len(speakers)))))
        held = set(rng.permutation(speakers)[:n_hold].tolist())
        tr = [i for i, g in enumerate(train.groups) if g not in held]
        va = [i for i, g in enumerate(train.groups) if g in held]
        return _subset(train, tr), _subset(train, va), f"held-out training speakers: {', '.join(sorted(held))}"

    def _input_gain(self, audios: Sequence[np.ndarray]) -> float:
        if not self.config.normalize_input:
            return 1.0
        energy = sum(float(np.sum(np.square(a, dtype=np.float64))) for a in audios)
        count = sum(len(a) for a in audios)
        rms = math.sqrt(energy / max(count, 1))
        return 1.0 / rms if rms > 1e-6 else 1.0

    def _setup(self) -> torch.device:
        if self.config.num_threads:
            torch.set_num_threads(self.config.num_threads)
        return _resolve_device(self.config.device)

    def _check_fitted(self) -> None:
        if self.net_ is None:
            raise PluginError(f"SER model {self.name!r} is not fitted: call fit() or load a checkpoint first")

    def _progress(self, steps_per_epoch: int):
        """A progress bar over all training steps (epochs x batches)."""
        from ser_bench.progress import bar  # off while the run is quiet (bench run -q)

        return bar(total=self.config.epochs * steps_per_epoch, desc=f"{self.name} fit", leave=False, unit="step",
                   disable=not self.config.progress)

    def _announce(self, step_s: float, steps_per_epoch: int, train_audio_s: float, valid_audio_s: float,
                   device: torch.device) -> float:
        """Log (and, with ``progress``, print) the expected training time, from the measured cost of
        the first step; returns it in seconds. Validation is a forward pass (about a third of a
        training step's cost per second of audio) over the validation audio once per epoch."""
        cfg = self.config
        per_audio_s = step_s / max(train_audio_s / max(steps_per_epoch, 1), 1e-9)
        valid_s = valid_audio_s * per_audio_s / 3
        total = cfg.epochs * (steps_per_epoch * step_s + valid_s)
        budget = f" (capped at {cfg.max_train_seconds:g} s by max_train_seconds)" if cfg.max_train_seconds else ""
        hint = ""
        if cfg.recipe == "paper" and device.type == "cpu" and total > 600:
            hint = f"; -o {self.name}.recipe=cpu-fast trains a smaller network for fewer epochs (~25x less compute)"
        msg = (f"{self.name}: expected training time ~{total / 60:.1f} min{budget}: {cfg.epochs} epochs x "
               f"{steps_per_epoch} steps x {step_s:.2f} s (first step, {device.type}) + validation of "
               f"{valid_audio_s:.0f} s of audio per epoch{hint}")
        log.info(msg)
        if cfg.progress:
            print(msg, file=sys.stderr, flush=True)
        return total

    @staticmethod
    def _postfix(bar, rec: dict[str, Any]) -> None:
        bar.set_postfix({k: (round(v, 4) if isinstance(v, float) else v) for k, v in rec.items()})

    # ---------------------------------------------------------------- fit reuse
    _RUNTIME_OPTIONS: ClassVar[tuple[str, ...]] = ("progress", "num_threads", "reuse_fits")

    def _fit_key(self, train: FeatureSet, valid: FeatureSet | None) -> str:
        """Digest of the options that shape the fit and of the training/validation data."""
        h = hashlib.blake2b(digest_size=16)
        opts = {k: v for k, v in self.config.model_dump(mode="json").items() if k not in self._RUNTIME_OPTIONS}
        h.update(json.dumps([self.name, self.version, opts], sort_keys=True).encode())
        for fs in (train, valid):
            if fs is None:
                h.update(b"<none>")
                continue
            for x, y, g, i in zip(fs.X, fs.y or [None] * len(fs), fs.groups, fs.ids):
                a = np.ascontiguousarray(x, dtype=np.float32)
                h.update(f"{i}|{g}|{a.shape}|".encode())
                h.update(a.tobytes())
                if isinstance(y, TimeSeries):
                    h.update(np.ascontiguousarray(y.values, dtype=np.float32).tobytes() + f"|{y.hop_s}".encode())
                else:
                    h.update(repr(y).encode())
        return h.hexdigest()

    def _reuse_fit(self, key: str) -> bool:
        """Restore a remembered fit for ``key``; False if there is none."""
        if not self.config.reuse_fits or key not in _FITS:
            return False
        blob = _FITS[key]
        _FITS.move_to_end(key)
        self._restore(copy.deepcopy(blob["learned"]))
        self.net_ = self._build_net()
        self.net_.load_state_dict(blob["state_dict"])
        self.net_.to(self._setup())
        self.fit_info_ = {**(self.fit_info_ or {}), "reused_fit": True}
        return True

    def _remember_fit(self, key: str) -> None:
        if not self.config.reuse_fits:
            return
        _FITS[key] = {
            "state_dict": {k: v.detach().cpu().clone() for k, v in self.net_.state_dict().items()},
            "learned": copy.deepcopy(self._learned()),
        }
        while len(_FITS) > MAX_REMEMBERED_FITS:
            _FITS.popitem(last=False)

    # ---------------------------------------------------------------- checkpoints
    def _learned(self) -> dict[str, Any]:
        return {"input_gain_": self.input_gain_, "fit_info_": getattr(self, "fit_info_", None)}

    def _restore(self, learned: dict[str, Any]) -> None:
        self.input_gain_ = float(learned["input_gain_"])
        self.fit_info_ = learned.get("fit_info_")

    def save(self, path: str | Path) -> Path:
        """Write weights, options and learned attributes to ``path`` (a torch file)."""
        self._check_fitted()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        blob = {
            "format": CHECKPOINT_FORMAT,
            "name": self.name,
            "version": self.version,
            "config": self.config.model_dump(mode="json"),
            "state_dict": {k: v.detach().cpu() for k, v in self.net_.state_dict().items()},
            "learned": self._learned(),
        }
        tmp = path.with_name(path.name + ".tmp")
        torch.save(blob, tmp)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path, **overrides: Any) -> _E2EBase:
        """Rebuild a fitted model from :meth:`save` output; ``overrides`` replace runtime options
        (e.g. ``device``, ``progress``)."""
        path = Path(path)
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise PluginError(f"{path}: cannot read the checkpoint ({exc}); re-save it with save()") from None
        if not isinstance(blob, dict) or blob.get("format") != CHECKPOINT_FORMAT:
            raise PluginError(f"{path}: not a ser-bench e2e checkpoint (format {CHECKPOINT_FORMAT})")
        if blob["name"] != cls.name or blob["version"] != cls.version:
            raise PluginError(
                f"{path}: a checkpoint of {blob['name']!r} version {blob['version']}, not {cls.name!r} "
                f"version {cls.version}; retrain the model"
            )
        model = cls(**{**blob["config"], **overrides})
        model._restore(blob["learned"])
        model.net_ = model._build_net()
        model.net_.load_state_dict(blob["state_dict"])
        model.net_.to(_resolve_device(model.config.device))
        return model

    def _build_net(self) -> torch.nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError
