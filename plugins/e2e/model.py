"""SER model plugins around the end-to-end CNN-LSTM: ``e2e-arousal`` and ``e2e-cls``.

``e2e-arousal`` (Trigeorgis et al. 2016): raw 16 kHz audio cut into chunks (6 s), one arousal
value per 40 ms, trained with the CCC loss (1 - ρc); the epoch with the best validation ρc is
kept, then post-processing (median filter, centring, scaling, time shift; see
:mod:`ser_bench_plugins.e2e.postprocess`) is fitted on the validation partition and applied to test.

``e2e-cls`` (beyond the paper): the same network with the LSTM outputs mean-pooled over each
utterance, softmax and cross-entropy, for categorical corpora (EMO-DB, RAVDESS); the epoch with
the best validation UAR is kept.

Both take the waveform itself as features (``cache_features = False``). When ``fit`` gets no
validation set (e.g. leave-one-speaker-out folds, or RECOLA with dev serving as test), a
speaker-disjoint part of train (``valid_fraction`` of the speakers) is held out for early
stopping and post-processing. Input audio is multiplied by one fixed gain, the inverse RMS of
all training audio (``normalize_input``), which keeps loudness differences (arousal cues) and
only helps optimisation. Learned attributes end in ``_``; ``fit_info_`` (JSON-able) records the
best epoch, validation scores, post-processing parameters and training time.
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import sys
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from ser_bench.errors import PluginError
from ser_bench.interfaces import FeatureSet, PluginConfig, SERModel, TimeSeries

from .network import SAMPLES_PER_FRAME, E2EClassifier, E2ERegressor, build_front_end, ccc_loss
from .postprocess import DEFAULT_WINDOWS, PostProcessing, concat_ccc, fit_postprocessing

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


# =========================================================================== regression


class E2EArousalModel(_E2EBase):
    """Trigeorgis et al. (2016): raw-audio CNN-LSTM, one arousal value every 40 ms, CCC loss."""

    name: ClassVar[str] = "e2e-arousal"
    description: ClassVar[str] = (
        "end-to-end raw-audio CNN-LSTM (Trigeorgis et al. 2016): continuous arousal every 40 ms, "
        "CCC loss, post-processing fitted on dev"
    )
    task: ClassVar[Literal["regression"]] = "regression"

    class Config(E2EConfig):
        """Besides the shared options:

        Attributes:
            postprocess: fit median filter / centring / scaling / time shift on validation.
            median_windows: odd median-filter windows to try (frames of 40 ms).
            max_shift_s: the largest prediction delay to try (seconds).
        """

        postprocess: bool = True
        median_windows: tuple[int, ...] = DEFAULT_WINDOWS
        max_shift_s: float = Field(10.0, ge=0.0)

    def _build_net(self) -> torch.nn.Module:
        return E2ERegressor(self._front(), hidden_size=self.config.hidden_size, lstm_layers=self.config.lstm_layers)

    def _learned(self) -> dict[str, Any]:
        return {**super()._learned(), "postprocess_": self.postprocess_}

    def _restore(self, learned: dict[str, Any]) -> None:
        super()._restore(learned)
        self.postprocess_ = learned.get("postprocess_")

    def _labels(self, fs: FeatureSet, what: str) -> list[np.ndarray]:
        if fs.y is None:
            raise PluginError(f"{self.name}: the {what} set has no labels")
        out = []
        for uid, y in zip(fs.ids, fs.y):
            if not isinstance(y, TimeSeries):
                raise PluginError(
                    f"{self.name} needs continuous labels (TimeSeries, e.g. dataset 'recola'), but "
                    f"utterance {uid!r} has the class label {y!r}; use 'e2e-cls' for categorical corpora"
                )
            if abs(y.hop_s - HOP_S) > 1e-9:
                raise PluginError(
                    f"{self.name} predicts one value every {HOP_S} s, but utterance {uid!r} has labels "
                    f"every {y.hop_s} s; resample the labels to 40 ms"
                )
            out.append(np.asarray(y.values, dtype=np.float32))
        return out

    # ---------------------------------------------------------------- training
    def _batch(self, audios, labels, items, device):
        c = self.chunk_frames
        n = c * SAMPLES_PER_FRAME
        x = np.zeros((len(items), n), dtype=np.float32)
        y = np.zeros((len(items), c), dtype=np.float32)
        m = np.zeros((len(items), c), dtype=bool)
        for b, (i, s) in enumerate(items):
            seg = audios[i][s * SAMPLES_PER_FRAME : s * SAMPLES_PER_FRAME + n]
            x[b, : len(seg)] = seg
            lab = labels[i][s : s + c]
            k = min(len(lab), _frames(len(seg)))  # label frames past the audio's end are ignored
            y[b, :k] = lab[:k]
            m[b, :k] = True
        t = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
        return t(x) * self.input_gain_, t(y), t(m)

    def fit(self, train: FeatureSet, valid: FeatureSet | None = None) -> E2EArousalModel:
        cfg = self.config
        t0 = time.perf_counter()
        self._labels(train, "training")  # checks label types before any split
        key = self._fit_key(train, valid)
        if self._reuse_fit(key):
            return self
        if valid is None or len(valid) == 0:
            train, valid, valid_source = self._holdout(train)
        else:
            valid_source = "the validation partition"
        tr_audio = [np.asarray(a, dtype=np.float32) for a in train.X]
        tr_labels = self._labels(train, "training")
        va_labels = self._labels(valid, "validation") if valid is not None else None
        device = self._setup()
        self.input_gain_ = self._input_gain(tr_audio)
        self.postprocess_ = None
        c = self.chunk_frames
        items = [(i, s) for i, y in enumerate(tr_labels) for s in range(0, min(len(y), _frames(len(tr_audio[i]))), c)]
        rng = np.random.default_rng([self.config.seed, 1])
        history: list[dict[str, float]] = []
        best = (-math.inf, 0, None)  # (valid ccc, epoch, state)
        stopped = False
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed)
            self.net_ = net = self._build_net().to(device)
            opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
            steps = math.ceil(len(items) / cfg.batch_size)
            bar = self._progress(steps)
            expected_s = None
            for epoch in range(1, cfg.epochs + 1):
                net.train()
                order = rng.permutation(len(items))
                losses = []
                for b0 in range(0, len(order), cfg.batch_size):
                    x, y, m = self._batch(tr_audio, tr_labels, [items[j] for j in order[b0 : b0 + cfg.batch_size]], device)
                    if int(m.sum()) < 2:
                        continue
                    ts = time.perf_counter()
                    loss = ccc_loss(net(x), y, m)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    losses.append(loss.item())
                    bar.update(1)
                    if expected_s is None:
                        expected_s = self._announce(
                            time.perf_counter() - ts, steps, len(items) * c * HOP_S,
                            0.0 if valid is None else sum(len(a) for a in valid.X) / 16000, device)
                    if cfg.max_train_seconds and time.perf_counter() - t0 > cfg.max_train_seconds:
                        stopped = True
                        break
                rec = {"epoch": epoch, "train_loss": float(np.mean(losses)) if losses else None}
                if valid is not None:
                    rec["valid_ccc"] = concat_ccc(self._predict_raw(valid.X, va_labels), va_labels)
                    if rec["valid_ccc"] > best[0]:
                        best = (rec["valid_ccc"], epoch, copy.deepcopy(net.state_dict()))
                history.append(rec)
                self._postfix(bar, rec)
                log.info("%s epoch %d: %s", self.name, epoch, rec)
                if stopped:
                    break
            bar.close()
        if best[2] is not None:
            net.load_state_dict(best[2])
        best_epoch = best[1] if valid is not None else history[-1]["epoch"]

        pp_info: dict[str, Any] | None = None
        if valid is not None:
            va_pred = self._predict_raw(valid.X, va_labels)
            if cfg.postprocess:
                pp = fit_postprocessing(
                    va_pred, va_labels, tr_labels, windows=cfg.median_windows,
                    max_shift=int(round(cfg.max_shift_s / HOP_S)),
                )
                self.postprocess_ = pp.as_dict()
            else:
                score = concat_ccc(va_pred, va_labels)
                self.postprocess_ = None
                pp = PostProcessing(valid_ccc_before=score, valid_ccc_after=score)
            pp_info = pp.as_dict()
        self.fit_info_ = {
            "model": self.name,
            "preset": cfg.preset,
            "device": str(device),
            "seed": self.config.seed,
            "best_epoch": int(best_epoch),
            "epochs_run": len(history),
            "stopped_by_time_budget": stopped,
            "validation": valid_source,
            "valid_ccc_before_postprocess": None if pp_info is None else pp_info["valid_ccc_before"],
            "valid_ccc_after_postprocess": None if pp_info is None else pp_info["valid_ccc_after"],
            "postprocess": self.postprocess_,
            "history": history,
            "train_audio_s": round(sum(len(a) for a in tr_audio) / 16000, 2),
            "train_time_s": round(time.perf_counter() - t0, 3),
            "expected_train_time_s": None if expected_s is None else round(expected_s, 1),
            "reused_fit": False,
        }
        self._remember_fit(key)
        return self

    # ---------------------------------------------------------------- prediction
    @torch.inference_mode()
    def _predict_raw(self, audios: Sequence[np.ndarray], labels: Sequence[np.ndarray] | None = None) -> list[np.ndarray]:
        """Per-recording predictions, one per 40 ms frame, cut/padded to the label length (or, with
        no labels, to ``floor(duration / 40 ms) + 1`` frames, the AVEC 2016 convention)."""
        self._check_fitted()
        net = self.net_
        net.eval()
        device = next(net.parameters()).device
        c = self.chunk_frames
        audios = [np.asarray(a, dtype=np.float32) for a in audios]
        items = [(i, s) for i, a in enumerate(audios) for s in range(0, _frames(len(a)), c)]
        outs: list[list[np.ndarray]] = [[] for _ in audios]
        dummy = [np.zeros(0, dtype=np.float32)] * len(audios)
        for b0 in range(0, len(items), self.config.batch_size):
            batch = items[b0 : b0 + self.config.batch_size]
            x, _, _ = self._batch(audios, dummy, batch, device)
            pred = net(x).float().cpu().numpy()
            for (i, _s), p in zip(batch, pred):
                outs[i].append(p)
        result = []
        for i, a in enumerate(audios):
            seq = np.concatenate(outs[i])[: _frames(len(a))]
            n = len(labels[i]) if labels is not None else len(a) // SAMPLES_PER_FRAME + 1
            result.append(_fit_length(seq.astype(np.float64), n))
        return result

    def predict(self, test: FeatureSet) -> list[TimeSeries]:
        """One :class:`TimeSeries` (40 ms) per test recording, as long as its label when known."""
        labels = None
        if test.y is not None and all(isinstance(y, TimeSeries) for y in test.y):
            labels = [np.asarray(y.values) for y in test.y]
        preds = self._predict_raw(test.X, labels)
        if self.postprocess_:
            preds = PostProcessing.from_dict(self.postprocess_).apply(preds)
        return [TimeSeries(np.asarray(p, dtype=np.float32), hop_s=HOP_S) for p in preds]


# =========================================================================== classification


class E2EClassifierModel(_E2EBase):
    """The same CNN-LSTM with mean-pooled LSTM outputs, softmax and cross-entropy (utterance level)."""

    name: ClassVar[str] = "e2e-cls"
    description: ClassVar[str] = (
        "end-to-end raw-audio CNN-LSTM, utterance level: pooled LSTM outputs, softmax, cross-entropy "
        "(beyond the paper; for categorical corpora)"
    )
    task: ClassVar[Literal["classification"]] = "classification"

    class Config(E2EConfig):
        """Besides the shared options:

        Attributes:
            class_weight: "balanced" weighs the cross-entropy by inverse class frequency (UAR is
                the metric); "none" does not.
        """

        class_weight: Literal["balanced", "none"] = "balanced"

    classes_: list[str]

    def _build_net(self) -> torch.nn.Module:
        return E2EClassifier(
            self._front(), len(self.classes_), hidden_size=self.config.hidden_size, lstm_layers=self.config.lstm_layers
        )

    def _learned(self) -> dict[str, Any]:
        return {**super()._learned(), "classes_": list(self.classes_)}

    def _restore(self, learned: dict[str, Any]) -> None:
        super()._restore(learned)
        self.classes_ = list(learned["classes_"])

    def _class_labels(self, fs: FeatureSet, what: str) -> list[str]:
        if fs.y is None:
            raise PluginError(f"{self.name}: the {what} set has no labels")
        for uid, y in zip(fs.ids, fs.y):
            if not isinstance(y, str):
                raise PluginError(
                    f"{self.name} needs class labels, but utterance {uid!r} has a continuous label; "
                    "use 'e2e-arousal' for continuous corpora such as recola"
                )
        return list(fs.y)  # type: ignore[arg-type]

    def _segments(self, audio: np.ndarray, rng: np.random.Generator | None) -> list[np.ndarray]:
        """Training (rng given): one random crop of at most a chunk. Prediction: all chunks."""
        n = self.chunk_frames * SAMPLES_PER_FRAME
        if len(audio) <= n:
            return [audio]
        if rng is not None:
            s = int(rng.integers(0, len(audio) - n + 1))
            return [audio[s : s + n]]
        return [audio[s : s + n] for s in range(0, len(audio), n) if len(audio) - s >= SAMPLES_PER_FRAME or s == 0]

    def _pad(self, segs: Sequence[np.ndarray], device):
        t = max(_frames(len(s)) for s in segs)
        x = np.zeros((len(segs), t * SAMPLES_PER_FRAME), dtype=np.float32)
        m = np.zeros((len(segs), t), dtype=bool)
        for b, s in enumerate(segs):
            x[b, : len(s)] = s
            m[b, : _frames(len(s))] = True
        return torch.from_numpy(x).to(device) * self.input_gain_, torch.from_numpy(m).to(device)

    def fit(self, train: FeatureSet, valid: FeatureSet | None = None) -> E2EClassifierModel:
        from ser_bench.metrics import uar

        cfg = self.config
        t0 = time.perf_counter()
        self._class_labels(train, "training")
        key = self._fit_key(train, valid)
        if self._reuse_fit(key):
            return self
        if valid is None or len(valid) == 0:
            train, valid, valid_source = self._holdout(train)
        else:
            valid_source = "the validation partition"
        y_tr = self._class_labels(train, "training")
        self.classes_ = sorted(set(y_tr))
        if len(self.classes_) < 2:
            raise PluginError(f"{self.name}: the training set holds a single class {self.classes_}; need two or more")
        y_va = self._class_labels(valid, "validation") if valid is not None else None
        tr_audio = [np.asarray(a, dtype=np.float32) for a in train.X]
        device = self._setup()
        self.input_gain_ = self._input_gain(tr_audio)
        index = {c: i for i, c in enumerate(self.classes_)}
        targets = np.array([index[y] for y in y_tr])
        counts = np.bincount(targets, minlength=len(self.classes_)).astype(np.float64)
        weight = None
        if cfg.class_weight == "balanced":
            weight = torch.tensor(len(targets) / (len(counts) * counts), dtype=torch.float32, device=device)
        rng = np.random.default_rng([self.config.seed, 2])
        history: list[dict[str, float]] = []
        best = (-math.inf, 0, None)
        stopped = False
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed)
            self.net_ = net = self._build_net().to(device)
            opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
            steps = math.ceil(len(tr_audio) / cfg.batch_size)
            bar = self._progress(steps)
            expected_s = None
            crop = self.chunk_frames * SAMPLES_PER_FRAME
            for epoch in range(1, cfg.epochs + 1):
                net.train()
                order = rng.permutation(len(tr_audio))
                losses = []
                for b0 in range(0, len(order), cfg.batch_size):
                    idx = order[b0 : b0 + cfg.batch_size]
                    x, m = self._pad([self._segments(tr_audio[i], rng)[0] for i in idx], device)
                    y = torch.from_numpy(targets[idx]).to(device)
                    ts = time.perf_counter()
                    loss = torch.nn.functional.cross_entropy(net(x, m), y, weight=weight)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    losses.append(loss.item())
                    bar.update(1)
                    if expected_s is None:
                        expected_s = self._announce(
                            time.perf_counter() - ts, steps, sum(min(len(a), crop) for a in tr_audio) / 16000,
                            0.0 if valid is None else sum(len(a) for a in valid.X) / 16000, device)
                    if cfg.max_train_seconds and time.perf_counter() - t0 > cfg.max_train_seconds:
                        stopped = True
                        break
                rec = {"epoch": epoch, "train_loss": float(np.mean(losses)) if losses else None}
                if valid is not None:
                    rec["valid_uar"] = uar(y_va, self._predict_labels(valid.X))
                    if rec["valid_uar"] > best[0]:
                        best = (rec["valid_uar"], epoch, copy.deepcopy(net.state_dict()))
                history.append(rec)
                self._postfix(bar, rec)
                log.info("%s epoch %d: %s", self.name, epoch, rec)
                if stopped:
                    break
            bar.close()
        if best[2] is not None:
            net.load_state_dict(best[2])
        self.fit_info_ = {
            "model": self.name,
            "preset": cfg.preset,
            "device": str(device),
            "seed": self.config.seed,
            "best_epoch": int(best[1] if valid is not None else history[-1]["epoch"]),
            "epochs_run": len(history),
            "stopped_by_time_budget": stopped,
            "validation": valid_source,
            "valid_uar": None if valid is None else float(best[0]),
            "classes": list(self.classes_),
            "history": history,
            "train_audio_s": round(sum(len(a) for a in tr_audio) / 16000, 2),
            "train_time_s": round(time.perf_counter() - t0, 3),
            "expected_train_time_s": None if expected_s is None else round(expected_s, 1),
            "reused_fit": False,
        }
        self._remember_fit(key)
        return self

    @torch.inference_mode()
    def predict_proba(self, test: FeatureSet | Sequence[np.ndarray]) -> np.ndarray:
        """Class probabilities (rows: utterances, columns: ``classes_``), averaged over chunks."""
        self._check_fitted()
        audios = test.X if isinstance(test, FeatureSet) else test
        net = self.net_
        net.eval()
        device = next(net.parameters()).device
        segs = [(i, s) for i, a in enumerate(audios) for s in self._segments(np.asarray(a, dtype=np.float32), None)]
        probs = np.zeros((len(audios), len(self.classes_)))
        n_seg = np.zeros(len(audios))
        for b0 in range(0, len(segs), self.config.batch_size):
            batch = segs[b0 : b0 + self.config.batch_size]
            x, m = self._pad([s for _, s in batch], device)
            p = torch.softmax(net(x, m).float(), dim=-1).cpu().numpy()
            for (i, _), row in zip(batch, p):
                probs[i] += row
                n_seg[i] += 1
        return probs / n_seg[:, None]

    def _predict_labels(self, audios: Sequence[np.ndarray]) -> list[str]:
        return [self.classes_[k] for k in np.argmax(self.predict_proba(audios), axis=1)]

    def predict(self, test: FeatureSet) -> list[str]:
        return self._predict_labels(test.X)
