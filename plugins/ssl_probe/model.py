"""``ssl-probe`` / ``ssl-probe-reg``: a frozen transformers audio encoder and a light head.

Features (:meth:`SSLProbe.featurize`, cached by the harness under :meth:`SSLProbe.feature_key`):
the hidden states of *every* layer (the embedding output and each transformer layer), pooled over
time -- the mean, or the mean and standard deviation -- as a float32 array ``(layers, P*dim)``.
The key holds the encoder's config, a digest of its weights and the pooling and chunking options,
so heads and layer choices are refitted from the cache without encoding again, and other weights
(or other options) never reuse stale features. ``ssl-probe-reg`` pools per window of
``window_seconds`` instead, ``(windows, layers, P*dim + 1)``, the last column being the number of
samples each window covers, and predicts a trace (e.g. RECOLA arousal, scored by CCC).

Heads (SUPERB / EmoBox practice), fitted on features standardised on the training fold:

* ``linear`` (default): softmax-normalised learned layer weights, a weighted sum of the layers,
  a linear layer; ``mlp``: the same with one hidden layer (ReLU, dropout). Trained with Adam on
  class-balanced cross-entropy (regression: 1 - CCC) with early stopping on a validation set: the
  official development partition when the fold has one, else a seeded split of *whole training
  speakers* (``valid_fraction`` of them). The test fold is never seen. The epoch with the lowest
  validation loss is kept (UAR / CCC saturate early on easy data, before the layer weights settle).
* ``best-layer``: logistic regression (class-balanced; regression: ridge) on the one layer with
  the best speaker-grouped inner cross-validation score, refitted on the whole training fold.

Learned attributes end in ``_`` and are numpy arrays: a fit pickles small (the runner caches it)
and predicts without torch.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from ser_bench.errors import ConfigError, PluginError
from ser_bench.interfaces import SAMPLE_RATE, FeatureSet, PluginConfig, SERModel, TimeSeries, stable_hash
from ser_bench.metrics import ccc, uar

from . import encoder as E

#: Bump when what featurize computes for the same encoder and options changes (part of the feature key).
FEATURE_VERSION = "1"


class SSLConfig(PluginConfig):
    """Options of ``ssl-probe`` (``bench plugins ssl-probe`` lists them).

    Attributes:
        model: the encoder: a folder (save_pretrained / ``hf download --local-dir``), a Hugging Face
            id already in the local cache (``microsoft/wavlm-base-plus``), or ``random:NAME``
            (random weights of a known size: cost measurements and smoke tests only). Never downloaded.
        pooling: "mean" or "mean+std" over time, per layer.
        chunk_seconds, overlap_seconds: longer utterances are encoded in chunks of this length
            overlapping by this much (Whisper: its own 30 s window).
        head: "linear", "mlp" (learned layer weights + a linear / one-hidden-layer head) or
            "best-layer" (logistic / ridge regression on one layer chosen by inner CV).
        hidden_size, dropout: the ``mlp`` head.
        lr, weight_decay, epochs, patience, batch_size: Adam training of the ``linear``/``mlp`` heads;
            training stops after ``patience`` epochs without a lower validation loss (the epoch with
            the lowest is kept; its validation UAR / CCC is in ``fit_info_``).
        valid_fraction: share of training speakers held out for early stopping (when the fold has
            no development partition).
        inner_folds: speaker groups of the ``best-layer`` inner cross-validation.
        C: inverse regularisation of the ``best-layer`` logistic regression (regression: ridge
            alpha = 1 / C).
        seed: weights, shuffling and the held-out speakers.
        device: "auto" (CUDA where torch sees a GPU), "cpu" or "cuda".
        batch_seconds: padded audio per forward pass; chunks are sorted by length and batched
            (mixed lengths only where padding is masked exactly: WavLM / HuBERT / wav2vec2 with
            layer-norm feature extractors; Whisper always). None: 0 (one chunk per pass) on a CPU,
            160 s on a GPU.
        num_threads: torch CPU threads of this process while encoding (1: one per worker, as the
            harness's process pool runs; 0: leave torch's setting).
    """

    model: str = ""
    pooling: Literal["mean", "mean+std"] = "mean"
    chunk_seconds: float = Field(20.0, gt=0.5, le=600.0)
    overlap_seconds: float = Field(1.0, ge=0.0)
    head: Literal["linear", "mlp", "best-layer"] = "linear"
    hidden_size: int = Field(256, ge=1)
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    lr: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(1e-4, ge=0.0)
    epochs: int = Field(200, ge=1)
    patience: int = Field(20, ge=1)
    batch_size: int = Field(32, ge=1)
    valid_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    inner_folds: int = Field(5, ge=2, le=50)
    C: float = Field(1.0, gt=0.0)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    batch_seconds: float | None = Field(None, ge=0.0)
    num_threads: int = Field(1, ge=0)


#: Options that change how fast, not what, is computed: left out of identity() and the feature key.
RUNTIME_OPTIONS = ("device", "batch_seconds", "num_threads")
#: Options of the encoder's features (the rest belong to the head).
FEATURE_OPTIONS = ("model", "pooling", "chunk_seconds", "overlap_seconds")


def _softmax(w: np.ndarray) -> np.ndarray:
    e = np.exp(w - w.max())
    return e / e.sum()


class SSLProbe(SERModel):
    """Frozen SSL / Whisper encoder features of every layer + a light head (classification, UAR)."""

    name: ClassVar[str] = "ssl-probe"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = (
        "frozen transformers audio encoder (WavLM, HuBERT, wav2vec2/XLS-R, data2vec-audio, Whisper encoder; "
        "local files only, -o ssl-probe.model=PATH_OR_ID), every layer pooled, learned layer weights + "
        "linear/MLP head or best-layer logistic regression")
    task: ClassVar[str] = "classification"
    cache_features: ClassVar[bool] = True
    Config = SSLConfig
    #: None: utterance-level pooling; seconds: per-window pooling (regression).
    window_seconds: ClassVar[float | None] = None

    # ---------------------------------------------------------------- encoder
    def _model_spec(self) -> str:
        if not self.config.model:
            raise ConfigError(f"{self.name} needs an encoder: -o {self.name}.model=FOLDER (save_pretrained / "
                              f"`hf download ID --local-dir FOLDER`), -o {self.name}.model=ID (in the local Hugging "
                              f"Face cache) or -o {self.name}.model=random:wavlm-tiny (a tiny random model, smoke test)")
        return self.config.model

    def _device(self) -> str:
        want = self.config.device
        if want == "cpu":
            return "cpu"
        import torch

        if want == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"{self.name}.device=cuda, but torch sees no CUDA GPU; use device=auto or cpu")
        return "cuda" if torch.cuda.is_available() else "cpu"

    def _encoder(self) -> E.Encoder:
        device = self._device()
        if device == "cpu" and self.config.num_threads:
            import torch

            if torch.get_num_threads() != self.config.num_threads:
                torch.set_num_threads(self.config.num_threads)
        return E.load(self._model_spec(), device)

    def _encoder_identity(self) -> Any:
        """What identifies the encoder's weights and config (without where the folder lies)."""
        info = E.describe(self._model_spec())
        if info.folder is None:  # random:NAME -- its weights are digested once built
            return {"random": info.spec, "weights": self._encoder().digest}
        return {"type": info.model_type, "config": stable_hash(E.config_identity(info), n=32),
                "weights": info.weights, "preprocessor": stable_hash(info.preprocessor)}

    def identity(self) -> dict[str, Any]:
        ident = super().identity()
        for k in RUNTIME_OPTIONS:
            ident["config"].pop(k, None)
        ident["config"]["model"] = self._encoder_identity()
        return ident

    def feature_key(self) -> str:
        key = getattr(self, "_feature_key", None)
        if key is None:
            c = self.config
            parts = {"encoder": self._encoder_identity(), "pooling": c.pooling, "chunk_seconds": c.chunk_seconds,
                     "overlap_seconds": c.overlap_seconds, "window_seconds": self.window_seconds,
                     "v": FEATURE_VERSION}
            info = E.describe(self._model_spec())
            key = self._feature_key = f"ssl-{info.model_type}-{stable_hash(parts, n=32)}"
        return key

    def _batch_seconds(self) -> float:
        if self.config.batch_seconds is not None:
            return self.config.batch_seconds
        return 160.0 if self._device() == "cuda" else 0.0

    def featurize(self, audio: np.ndarray) -> np.ndarray:
        return self.featurize_batch([audio])[0]

    def featurize_batch(self, audios: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Features of several signals, their chunks batched by length (one forward pass per batch)."""
        c = self.config
        return E.encode(self._encoder(), list(audios), chunk_seconds=c.chunk_seconds, overlap_seconds=c.overlap_seconds,
                        pooling=c.pooling, window_seconds=self.window_seconds, batch_seconds=self._batch_seconds())

    # ---------------------------------------------------------------- data
    def _stack(self, fs: FeatureSet) -> np.ndarray:
        X = np.stack([np.asarray(x, dtype=np.float32) for x in fs.X])
        if X.ndim != 3:
            raise PluginError(f"{self.name}: features of shape {X.shape[1:]}; expected (layers, dim) from featurize()")
        return X

    def _split(self, groups: Sequence[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Indices of (inner train, inner validation) and the held-out speakers: whole speakers, seeded."""
        speakers = sorted(set(groups))
        idx = np.arange(len(groups))
        if len(speakers) < 2:
            return idx, idx[:0], []
        rng = np.random.default_rng([self.config.seed, 7])
        n_hold = min(len(speakers) - 1, max(1, int(round(self.config.valid_fraction * len(speakers)))))
        held = sorted(rng.permutation(speakers)[:n_hold].tolist())
        va = np.isin(np.asarray(groups), held)
        return idx[~va], idx[va], held

    # ---------------------------------------------------------------- fit / predict
    def fit(self, train: FeatureSet, valid: FeatureSet | None = None) -> SSLProbe:
        if train.y is None:
            raise PluginError(f"{self.name}: fit() needs labels")
        X = self._stack(train)
        y_all = np.asarray([str(v) for v in train.y])
        self.classes_ = sorted(set(y_all.tolist()))
        y = np.searchsorted(self.classes_, y_all)
        self._fit_any(X, y, np.asarray(train.groups), valid)
        return self

    def _fit_any(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray, valid: FeatureSet | None) -> None:
        self.mean_ = X.mean(0)
        sd = X.std(0)
        self.scale_ = np.where(sd < 1e-8, 1.0, sd).astype(np.float32)
        Z = ((X - self.mean_) / self.scale_).astype(np.float32)
        info: dict[str, Any] = {"head": self.config.head, "n_layers": int(X.shape[1]), "dim": int(X.shape[2])}
        if self.config.head == "best-layer":
            info.update(self._fit_best_layer(Z, y, groups))
        else:
            if valid is not None and len(valid):
                Zv = (self._targets_x(valid) - self.mean_) / self.scale_
                yv = self._targets_y(valid)
                Ztr, ytr, note = Z, y, "the development partition"
            else:
                tr, va, held = self._split(groups.tolist())
                Ztr, ytr, Zv, yv = Z[tr], y[tr], Z[va], y[va]
                note = f"held-out training speakers: {', '.join(held)}" if held else "none (one speaker): last epoch kept"
            info.update(self._fit_weighted(Ztr, ytr, Zv, yv))
            info["early_stopping_on"] = note
        self.fit_info_ = info

    def _targets_x(self, fs: FeatureSet) -> np.ndarray:
        return self._stack(fs)

    def _targets_y(self, fs: FeatureSet) -> np.ndarray:
        known = {c: i for i, c in enumerate(self.classes_)}
        return np.asarray([known.get(str(v), -1) for v in fs.y])

    # -- the learned-layer-weights heads
    @property
    def _n_out(self) -> int:
        return len(self.classes_)

    def _loss(self, out, yb, weight):
        import torch

        return torch.nn.functional.cross_entropy(out, yb, weight=weight)

    def _score(self, out: np.ndarray, y: np.ndarray) -> float:
        keep = y >= 0
        return uar(y[keep].tolist(), out[keep].argmax(1).tolist()) if keep.any() else 0.0

    def _class_weight(self, y: np.ndarray):
        import torch

        counts = np.bincount(y, minlength=self._n_out).astype(np.float64)
        w = np.where(counts > 0, len(y) / (self._n_out * np.maximum(counts, 1)), 0.0)
        return torch.tensor(w, dtype=torch.float32)

    def _fit_weighted(self, Z: np.ndarray, y: np.ndarray, Zv: np.ndarray, yv: np.ndarray) -> dict[str, Any]:
        import torch

        c = self.config
        if c.num_threads and torch.get_num_threads() != c.num_threads:
            torch.set_num_threads(c.num_threads)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(c.seed)
            L, F = Z.shape[1], Z.shape[2]
            layer_w = torch.nn.Parameter(torch.zeros(L))
            if c.head == "mlp":
                head = torch.nn.Sequential(torch.nn.Linear(F, c.hidden_size), torch.nn.ReLU(), torch.nn.Dropout(c.dropout),
                                           torch.nn.Linear(c.hidden_size, self._n_out))
            else:
                head = torch.nn.Sequential(torch.nn.Linear(F, self._n_out))
            opt = torch.optim.Adam([layer_w, *head.parameters()], lr=c.lr, weight_decay=c.weight_decay)
            Zt, yt = torch.from_numpy(np.ascontiguousarray(Z)), torch.from_numpy(np.asarray(y))
            Zvt = torch.from_numpy(np.ascontiguousarray(Zv, dtype=np.float32))
            weight = self._class_weight(y) if self.task == "classification" else None
            yvt = torch.from_numpy(np.asarray(yv))
            vweight = self._class_weight(np.maximum(yv, 0)[yv >= 0]) if self.task == "classification" and len(yv) else None
            rng = np.random.default_rng([c.seed, 3])

            def forward(z):
                return head(torch.einsum("l,nlf->nf", torch.softmax(layer_w, 0), z))

            def snapshot() -> dict[str, np.ndarray]:
                return {"layer_w": layer_w.detach().numpy().copy(),
                        **{k: v.detach().numpy().copy() for k, v in head.state_dict().items()}}

            best, best_epoch, best_state, bad, history, best_score = -np.inf, 0, snapshot(), 0, [], None
            for epoch in range(1, c.epochs + 1):
                head.train()
                perm = rng.permutation(len(y))
                for b in range(0, len(perm), c.batch_size):
                    sel = torch.from_numpy(perm[b: b + c.batch_size])
                    opt.zero_grad()
                    loss = self._loss(forward(Zt[sel]), yt[sel], weight)
                    loss.backward()
                    opt.step()
                if len(yv) == 0:
                    best_state, best_epoch = snapshot(), epoch
                    continue
                head.eval()
                with torch.no_grad():
                    out_v = forward(Zvt)
                    score = self._score(out_v.numpy(), yv)
                    keep = torch.from_numpy(yv >= 0) if self.task == "classification" else torch.ones(len(yv), dtype=torch.bool)
                    vloss = float(self._loss(out_v[keep], yvt[keep], vweight)) if bool(keep.any()) else 0.0
                history.append([round(float(score), 4), round(vloss, 4)])
                if -vloss > best + 1e-9:  # the validation loss decides (the score saturates early on easy data)
                    best, best_epoch, best_state, bad, best_score = -vloss, epoch, snapshot(), 0, score
                else:
                    bad += 1
                    if bad >= c.patience:
                        break
        self.layer_w_ = best_state.pop("layer_w")
        self.head_ = best_state
        return {"best_epoch": best_epoch, "valid_score": None if best_score is None else float(best_score),
                "valid_loss": None if best == -np.inf else -float(best),
                "layer_weights": [round(float(v), 4) for v in _softmax(self.layer_w_)], "valid_history": history}

    def _head_out(self, Z: np.ndarray) -> np.ndarray:
        h = np.einsum("l,nlf->nf", _softmax(self.layer_w_), Z)
        s = self.head_
        if "3.weight" in s:  # input -> hidden (ReLU, dropout) -> output
            h = np.maximum(h @ s["0.weight"].T + s["0.bias"], 0.0)
            return h @ s["3.weight"].T + s["3.bias"]
        return h @ s["0.weight"].T + s["0.bias"]

    # -- the best-layer head
    def _best_layer_model(self):
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=self.config.C, class_weight="balanced", max_iter=2000)

    def _fit_best_layer(self, Z: np.ndarray, y: np.ndarray, groups: np.ndarray) -> dict[str, Any]:
        uniq = np.unique(groups)
        scores: dict[int, float] = {}
        if len(uniq) >= 2:
            rng = np.random.default_rng([self.config.seed, 5])
            folds = np.array_split(rng.permutation(uniq), min(self.config.inner_folds, len(uniq)))
            for layer in range(Z.shape[1]):
                preds, trues = [], []
                for held in folds:
                    te = np.isin(groups, held)
                    if len(np.unique(y[~te])) < 2 and self.task == "classification":
                        continue
                    m = self._best_layer_model().fit(Z[~te, layer], y[~te])
                    preds.append(m.predict(Z[te, layer]))
                    trues.append(y[te])
                scores[layer] = self._cv_score(np.concatenate(trues), np.concatenate(preds)) if trues else -np.inf
        layer = max(scores, key=lambda k: (scores[k], -k)) if scores else Z.shape[1] - 1
        m = self._best_layer_model().fit(Z[:, layer], y)
        self.layer_ = int(layer)
        self.linear_ = {"coef": np.atleast_2d(np.asarray(m.coef_, dtype=np.float64)),
                        "intercept": np.atleast_1d(np.asarray(m.intercept_, dtype=np.float64))}
        if hasattr(m, "classes_"):
            self.linear_["classes"] = np.asarray(m.classes_)
        return {"layer": int(layer), "cv_scores": {str(k): round(float(v), 4) for k, v in scores.items()}}

    def _cv_score(self, y: np.ndarray, pred: np.ndarray) -> float:
        return uar(y.tolist(), pred.tolist())

    def _best_layer_out(self, Z: np.ndarray) -> np.ndarray:
        d = Z[:, self.layer_] @ self.linear_["coef"].T + self.linear_["intercept"]
        if d.shape[1] == 1 and len(self.linear_.get("classes", ())) == 2:  # binary: one decision value
            d = np.concatenate([-d, d], axis=1)
        return d

    def _outputs(self, X: np.ndarray) -> np.ndarray:
        Z = ((X - self.mean_) / self.scale_).astype(np.float32)
        return self._best_layer_out(Z) if self.config.head == "best-layer" else self._head_out(Z)

    def _check_fitted(self) -> None:
        if not hasattr(self, "mean_"):
            raise PluginError(f"{self.name}: predict() before fit()")

    def predict(self, test: FeatureSet) -> list[str]:
        self._check_fitted()
        out = self._outputs(self._stack(test))
        if self.config.head == "best-layer":
            idx = self.linear_["classes"][out.argmax(1)]
        else:
            idx = out.argmax(1)
        return [self.classes_[int(i)] for i in idx]


# =========================================================================== regression


class SSLRegConfig(SSLConfig):
    """Besides ``ssl-probe``'s options:

    Attributes:
        window_seconds: features are pooled per window of this length; the head predicts one value
            per window, interpolated to the label's frames (40 ms for RECOLA).
    """

    window_seconds: float = Field(0.4, gt=0.0, le=10.0)


class SSLProbeRegressor(SSLProbe):
    """The same encoder features per window + a regression head (a trace, scored by CCC)."""

    name: ClassVar[str] = "ssl-probe-reg"
    description: ClassVar[str] = (
        "ssl-probe for dimensional labels (arousal / valence traces, CCC): every layer pooled per window, "
        "learned layer weights + linear/MLP head trained on 1 - CCC, or best-layer ridge regression")
    task: ClassVar[str] = "regression"
    Config = SSLRegConfig

    @property
    def window_seconds(self) -> float:  # type: ignore[override]
        return self.config.window_seconds

    @property
    def _n_out(self) -> int:
        return 1

    def _stack(self, fs: FeatureSet) -> np.ndarray:  # windows of every utterance, the cover column dropped
        arrs = [np.asarray(x, dtype=np.float32) for x in fs.X]
        if any(a.ndim != 3 for a in arrs):
            raise PluginError(f"{self.name}: features must be (windows, layers, dim+1) from featurize()")
        return np.concatenate([a[:, :, :-1] for a in arrs])

    def _window_targets(self, fs: FeatureSet) -> np.ndarray:
        """The label averaged over each window's frames (frame i at i * hop seconds)."""
        out = []
        for x, lab in zip(fs.X, fs.y):
            if not isinstance(lab, TimeSeries):
                raise PluginError(f"{self.name}: labels must be TimeSeries (a regression corpus)")
            v = np.asarray(lab.values, dtype=np.float64)
            n_win = np.asarray(x).shape[0]
            w = np.minimum((np.arange(len(v)) * lab.hop_s // self.window_seconds).astype(np.int64), n_win - 1)
            sums = np.bincount(w, weights=v, minlength=n_win)
            cnt = np.bincount(w, minlength=n_win)
            t = np.where(cnt > 0, sums / np.maximum(cnt, 1), np.nan)
            if np.isnan(t).any():  # a window without a frame: the nearest frame's value
                idx = np.flatnonzero(~np.isnan(t))
                t = np.interp(np.arange(n_win), idx, t[idx]) if len(idx) else np.zeros(n_win)
            out.append(t)
        return np.concatenate(out) if out else np.zeros(0)

    def fit(self, train: FeatureSet, valid: FeatureSet | None = None) -> SSLProbeRegressor:
        if train.y is None:
            raise PluginError(f"{self.name}: fit() needs labels")
        X = self._stack(train)
        y = self._window_targets(train).astype(np.float32)
        groups = np.concatenate([[g] * np.asarray(x).shape[0] for g, x in zip(train.groups, train.X)])
        self.hop_s_ = float(next(lab.hop_s for lab in train.y))
        self._fit_any(X, y, groups, valid)
        return self

    def _targets_y(self, fs: FeatureSet) -> np.ndarray:
        return self._window_targets(fs).astype(np.float32)

    def _loss(self, out, yb, weight):
        p = out[:, 0]
        t = yb.float()
        pm, tm = p.mean(), t.mean()
        cov = ((p - pm) * (t - tm)).mean()
        denom = p.var(unbiased=False) + t.var(unbiased=False) + (pm - tm) ** 2
        return 1 - 2 * cov / (denom + 1e-8)

    def _score(self, out: np.ndarray, y: np.ndarray) -> float:
        return ccc(y.astype(np.float64), out[:, 0].astype(np.float64)) if len(y) > 1 else 0.0

    def _best_layer_model(self):
        from sklearn.linear_model import Ridge

        return Ridge(alpha=1.0 / self.config.C)

    def _cv_score(self, y: np.ndarray, pred: np.ndarray) -> float:
        return ccc(y.astype(np.float64), pred.astype(np.float64))

    def _best_layer_out(self, Z: np.ndarray) -> np.ndarray:
        return (Z[:, self.layer_] @ self.linear_["coef"].T + self.linear_["intercept"]).reshape(-1, 1)

    def predict(self, test: FeatureSet) -> list[TimeSeries]:
        self._check_fitted()
        out: list[TimeSeries] = []
        hop = self.hop_s_
        for i, x in enumerate(test.X):
            x = np.asarray(x, dtype=np.float32)
            cover = x[:, 0, -1].astype(np.float64)
            p = self._outputs(x[:, :, :-1])[:, 0].astype(np.float64)
            lab = test.y[i] if test.y is not None else None
            n = len(lab.values) if isinstance(lab, TimeSeries) else int(cover.sum() / (hop * SAMPLE_RATE))
            centres = (np.cumsum(cover) - cover / 2) / SAMPLE_RATE
            t = np.arange(max(n, 1)) * hop
            out.append(TimeSeries(np.interp(t, centres, p).astype(np.float32), hop_s=hop))
        return out

