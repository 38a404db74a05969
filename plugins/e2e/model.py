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

This module holds the two models; the options and machinery they share (:class:`E2EConfig`,
devices, hold-out, fit reuse, checkpoints) are in :mod:`ser_bench_plugins.e2e.base`.
"""
from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field

from ser_bench.errors import PluginError
from ser_bench.interfaces import FeatureSet, TimeSeries

from .base import (
    CHECKPOINT_FORMAT, CPU_FAST, HOP_S, MAX_REMEMBERED_FITS, E2EConfig, _E2EBase, _fit_length, _frames, log,
)
from .network import SAMPLES_PER_FRAME, E2EClassifier, E2ERegressor, ccc_loss
from .postprocess import DEFAULT_WINDOWS, PostProcessing, concat_ccc, fit_postprocessing

__all__ = [  # the models, and the names other code imported from here before the split (see .base)
    "CHECKPOINT_FORMAT", "CPU_FAST", "HOP_S", "MAX_REMEMBERED_FITS", "E2EArousalModel", "E2EClassifierModel",
    "E2EConfig",
]


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
