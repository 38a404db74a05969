"""The ``rescnn`` enhancer plugin: the paper's residual CNN as an :class:`~ser_bench.Enhancer`.

Options (``--option rescnn.KEY=VALUE``):

* ``model``: ``"dense"`` (default; "valid" time padding, run once over the whole spectrogram;
  reduced widths 16-32-64-128 by default, the shipped CPU checkpoint) or ``"paper"`` (the
  paper-exact per-frame model: a 35-frame window, "same" padding, paper widths 64-128-256-512;
  no checkpoint ships for it: train one with ``bench train rescnn --model paper``).
* ``width``: the four feature-map counts (blocks 1-2, 3-4, 5-6, 7-8).
* ``checkpoint``: a checkpoint written by ``bench train rescnn``; default: the shipped one
  (dense model, CPU widths). The checkpoint fixes the architecture.
* ``device``: ``"cpu"`` (default) or ``"cuda"``.
* ``mask_offset_db``, ``max_gain_db`` (0), ``min_gain_db`` (none): post-processing of the mask,
  beyond the paper (see below).

The enhanced log-magnitude is the noisy one plus the predicted mask (a log gain, so the mask
multiplies the noisy magnitude); the signal is resynthesised with the noisy phase by weighted
overlap-add, with the input's length.

Beyond the paper, so that the enhancer does not hurt clean-ish speech: the mask (in dB) is
offset by ``mask_offset_db`` and capped at ``max_gain_db``: ``gain = min(mask + offset, cap)``.
With the default cap of 0 dB it never amplifies; the offset removes the small attenuations that
an imperfect estimate spreads over speech-dominated bins (these cost several dB SI-SDR at 20 dB
SNR) while keeping most of the strong ones (noise-dominated bins). Its default comes from the
checkpoint (``meta.inference.mask_offset_db``, tuned on validation speakers and noise); 0 gives
the paper's plain additive mask (``--option rescnn.mask_offset_db=0 -o rescnn.max_gain_db=null``). The cache identity includes the checkpoint's SHA-256, so
changed weights never reuse stale enhanced audio.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from ser_bench.errors import BenchError, ConfigError
from ser_bench.interfaces import Enhancer, PluginConfig

CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"
#: The shipped CPU checkpoint (dense model, widths 16-32-64-128, fp16).
DEFAULT_CHECKPOINT = CHECKPOINT_DIR / "rescnn-cpu-dense.pt"
CPU_WIDTHS = (16, 32, 64, 128)
PAPER_WIDTHS = (64, 128, 256, 512)
DB_PER_NEPER = 20 / np.log(10)


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class ResCNNEnhancer(Enhancer):
    """Residual-CNN log-magnitude mask estimator (Sec. 3 of the seed paper)."""

    name: ClassVar[str] = "rescnn"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = (
        "The paper's residual CNN (additive log-magnitude mask); dense CPU checkpoint shipped, "
        "paper-exact 35-frame model trainable with `bench train rescnn`"
    )
    requires_training: ClassVar[bool] = True

    class Config(PluginConfig):
        model: Literal["dense", "paper"] = Field("dense", description="dense (default) or paper (per-frame, 35 frames)")
        width: tuple[int, int, int, int] | None = Field(None, description="feature maps of blocks 1-2, 3-4, 5-6, 7-8")
        checkpoint: Path | None = Field(None, description="checkpoint file; default: the shipped CPU checkpoint")
        device: Literal["cpu", "cuda"] = "cpu"
        mask_offset_db: float | None = Field(
            None, description="added to the mask (dB) before the cap: small attenuations vanish, large ones shrink; "
            "None: the checkpoint's tuned value (meta.inference), else 0")
        max_gain_db: float | None = Field(0.0, description="cap on the mask as a gain in dB (None: no cap)")
        min_gain_db: float | None = Field(None, description="floor on the mask as a gain in dB (None: no floor)")

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._runner = None
        self._norm: dict[str, np.ndarray] | None = None
        self._digest: str | None = None

    # ------------------------------------------------------------------ weights
    @property
    def widths(self) -> tuple[int, int, int, int]:
        if self.config.width is not None:
            return tuple(self.config.width)
        return CPU_WIDTHS if self.config.model == "dense" else PAPER_WIDTHS

    def checkpoint_path(self) -> Path | None:
        """The checkpoint in use: the option, else the shipped one when it fits model and width."""
        if self.config.checkpoint is not None:
            return Path(self.config.checkpoint).expanduser()
        if self.config.model == "dense" and self.widths == CPU_WIDTHS and DEFAULT_CHECKPOINT.exists():
            return DEFAULT_CHECKPOINT
        return None

    def is_trained(self) -> bool:
        p = self.checkpoint_path()
        return p is not None and p.exists()

    def untrained_message(self) -> str:
        w = "-".join(map(str, self.widths))
        return (
            f"enhancer 'rescnn' (model {self.config.model!r}, widths {w}) has no trained weights: only the dense "
            "CPU model (widths 16-32-64-128) ships with a checkpoint. Train one with\n"
            f"  bench train rescnn --model {self.config.model} --width {w.replace('-', ',')} "
            "--speech librispeech --speech-root PATH --noise folder --noise-root PATH --out rescnn.pt\n"
            "then pass --option rescnn.checkpoint=rescnn.pt (or --checkpoint rescnn.pt)."
        )

    def identity(self) -> dict[str, Any]:
        ident = super().identity()
        p = self.checkpoint_path()
        if p is not None and p.exists():
            if self._digest is None:
                self._digest = file_digest(p)
            ident["weights_sha256"] = self._digest
            ident["config"]["checkpoint"] = None  # weights are identified by content, not by where they lie
        return ident

    def _load(self):
        if self._runner is not None:
            return self._runner
        path = self.checkpoint_path()
        if path is None:
            raise BenchError(self.untrained_message())
        if not path.exists():
            raise ConfigError(f"rescnn checkpoint {path} does not exist; check --option rescnn.checkpoint=PATH")
        from . import model as M

        try:
            blob = M.load_checkpoint(path)
        except Exception as exc:
            raise ConfigError(f"{path}: cannot read the rescnn checkpoint ({exc}); pass a file written by "
                              "`bench train rescnn`") from None
        arch = M.Arch.from_dict(blob["arch"])
        fields = self.config.model_fields_set
        want_model = "dense" if arch.time_padding == "valid" else "paper"
        if "model" in fields and self.config.model != want_model:
            raise ConfigError(f"{path} holds a {want_model!r} model but the option model={self.config.model!r}")
        if "width" in fields and self.config.width is not None and tuple(self.config.width) != arch.widths:
            raise ConfigError(f"{path} has widths {arch.widths}, not the option width={self.config.width}")
        try:
            runner = M.Runner(M.model_from_checkpoint(blob), device=self.config.device)
        except RuntimeError as exc:
            raise ConfigError(f"rescnn: {exc}; use --option rescnn.device=cpu") from None
        self._norm = {k: v.numpy() for k, v in blob["norm"].items()}
        self.meta = blob.get("meta", {})
        self._runner = runner
        return runner

    # ------------------------------------------------------------------ inference
    def masks(self, noisy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(noisy complex STFT, predicted additive log-magnitude mask), both (frames, 201)."""
        from . import features as fe

        runner = self._load()
        spec, L = fe.logmag(noisy)
        m = runner.model
        x = fe.pad_frames(fe.normalise(L, self._norm), m.target_offset, m.window - 1 - m.target_offset)
        return spec, runner.masks(x, len(L))

    def mask_offset_db(self) -> float:
        """The option, else the value tuned on validation data and stored in the checkpoint, else 0."""
        if self.config.mask_offset_db is not None:
            return float(self.config.mask_offset_db)
        self._load()
        return float(self.meta.get("inference", {}).get("mask_offset_db", 0.0))

    def enhance_signal(self, noisy: np.ndarray) -> np.ndarray:
        from ser_bench.dsp import from_log_magnitude, log_magnitude

        spec, mask = self.masks(noisy)
        offset = self.mask_offset_db()
        if offset:
            mask = mask + offset / DB_PER_NEPER
        lo, hi = self.config.min_gain_db, self.config.max_gain_db
        if lo is not None or hi is not None:  # dB -> natural-log gain: 20 log10(e^m) = 8.686 m
            mask = np.clip(mask, None if lo is None else lo / DB_PER_NEPER, None if hi is None else hi / DB_PER_NEPER)
        return from_log_magnitude(log_magnitude(spec) + mask, spec, len(noisy))

    # ------------------------------------------------------------------ training
    def train(self, speech, noise, **kwargs: Any) -> dict[str, Any]:
        """Train on ``speech`` (utterances) + ``noise`` (train part); see :mod:`ser_bench_plugins.rescnn.trainer`.

        Keyword arguments: ``out`` (checkpoint path, required), ``resume`` and any
        :class:`~ser_bench_plugins.rescnn.trainer.TrainSettings` field. The trained checkpoint becomes this
        enhancer's weights.
        """
        from . import trainer

        out = kwargs.pop("out", None)
        if out is None:
            raise ConfigError("rescnn.train needs out=PATH for the checkpoint")
        resume = kwargs.pop("resume", None)
        data = kwargs.pop("data_description", None)
        progress = kwargs.pop("progress", True)
        if resume is not None:  # the checkpoint's settings, updated with what was asked now
            settings = trainer.resume_settings(resume, kwargs)
        else:
            kwargs.setdefault("model", self.config.model)
            kwargs.setdefault("widths", self.widths)
            settings = trainer.TrainSettings(**kwargs)
        meta = trainer.train(speech, noise, out, settings, resume=resume,
                             data_description=data, progress=progress)
        kept = {k: getattr(self.config, k) for k in self.config.model_fields_set if k != "checkpoint"}
        self.config = self.Config(**kept, checkpoint=Path(out))
        self._runner, self._digest = None, None
        return meta
