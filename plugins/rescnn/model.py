"""The residual CNN of the seed paper, in torch (the only module of this package importing torch).

Two ways to run the same trunk of 8 residual blocks (4x4 kernels in blocks 1-4, 3x3 in 5-8;
``widths[i // 2]`` feature maps in block ``i``; 2x2 strides in blocks 3, 5 and 7; a 1x1
projection on the skip path where the shape changes), followed by a 1x1 convolution reducing
the channels and a fully connected layer to 201 values (the additive log-magnitude mask of the
target frame, no activation):

* ``time_padding="same"`` -- the **paper-exact** model: a 35-frame window, "same" padding in
  time and frequency, one window per output frame (:meth:`ResCNN.forward_frames`).
* ``time_padding="valid"`` -- the **dense** model: "valid" padding in time, "same" in frequency.
  :meth:`ResCNN.forward_frames` is its exact per-frame reference (a window of
  :attr:`ResCNN.receptive_field` frames gives one output frame, time strides as strides), and
  :meth:`ResCNN.forward_dense` runs the trunk once over a whole spectrogram (time strides turned
  into dilations, the FC into a convolution over frequency): output frame ``i`` equals the
  per-frame output for the window starting at frame ``i``. The two agree to float rounding
  (tested: max abs difference < 1e-4 in float32, < 1e-9 in float64).

Frequency is always strided and zero-padded the same way in both paths, so only time changes.
Batch normalisation follows every convolution; in eval mode it is a per-channel affine map, so
it does not break the equivalence.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

PAPER_WIDTHS: tuple[int, int, int, int] = (64, 128, 256, 512)
CPU_WIDTHS: tuple[int, int, int, int] = (16, 32, 64, 128)
N_BINS = 201
PAPER_CONTEXT = 35
STRIDED_BLOCKS = (2, 4, 6)  # 0-based: blocks 3, 5 and 7


def same_pad(n: int, k: int, s: int) -> tuple[int, int]:
    """TensorFlow-style "same" padding: ``ceil(n / s)`` outputs; the extra sample goes right."""
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return total // 2, total - total // 2


@dataclass(frozen=True)
class Arch:
    """Everything that fixes the network's shape (stored in checkpoints)."""

    widths: tuple[int, int, int, int] = CPU_WIDTHS
    time_padding: str = "valid"  # "valid": dense model; "same": paper-exact per-frame model
    context: int = PAPER_CONTEXT  # window length of the "same" model (ignored by "valid")
    n_bins: int = N_BINS
    reduce_channels: int = 0  # 0: max(4, widths[-1] // 32)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["widths"] = list(self.widths)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Arch:
        d = dict(d)
        d["widths"] = tuple(int(w) for w in d["widths"])
        return cls(**d)

    @property
    def c_red(self) -> int:
        return self.reduce_channels or max(4, self.widths[-1] // 32)


class ResBlock(nn.Module):
    """conv(k, stride s)-BN-ReLU-conv(k)-BN, plus the (projected) skip, then ReLU.

    ``crop`` is the time offset (in output-grid frames) of the skip path in "valid" time
    padding: the centre of what the two convolutions consume, rounded down to the output grid,
    so the strided and the dilated paths crop the same samples.
    """

    def __init__(self, cin: int, cout: int, k: int, s: int) -> None:
        super().__init__()
        self.k, self.s = k, s
        self.conv1 = nn.Conv2d(cin, cout, k, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, k, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.proj: nn.Module | None = None
        if cin != cout or s != 1:
            self.proj = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.crop = ((k - 1) + (k - 1) * s) // (2 * s)

    def _conv(self, x: torch.Tensor, conv: nn.Conv2d, s: int, mode: str, jump: int) -> torch.Tensor:
        k = self.k
        fl, fr = same_pad(x.shape[-1], k, s)
        if mode == "same":
            tl, tr = same_pad(x.shape[-2], k, s)
            return F.conv2d(F.pad(x, (fl, fr, tl, tr)), conv.weight, stride=(s, s))
        x = F.pad(x, (fl, fr, 0, 0))
        if mode == "frames":
            return F.conv2d(x, conv.weight, stride=(s, s))
        return F.conv2d(x, conv.weight, stride=(1, s), dilation=(jump, 1))  # dense

    def forward(self, x: torch.Tensor, mode: str = "same", jump: int = 1) -> torch.Tensor:
        s = self.s
        h = F.relu(self.bn1(self._conv(x, self.conv1, s, mode, jump)))
        h = self.bn2(self._conv(h, self.conv2, 1, mode, jump * s))
        sk = x[..., ::s] if s > 1 else x  # frequency: always strided
        if mode != "dense" and s > 1:
            sk = sk[..., ::s, :]
        if self.proj is not None:
            sk = self.proj(sk)
        if mode == "frames":
            sk = sk[..., self.crop : self.crop + h.shape[-2], :]
        elif mode == "dense":
            o = self.crop * s * jump
            sk = sk[..., o : o + h.shape[-2], :]
        return F.relu(h + sk)


class ResCNN(nn.Module):
    """The enhancer network. Input: normalised log-magnitude frames; output: additive mask."""

    def __init__(self, arch: Arch = Arch()) -> None:
        super().__init__()
        if arch.time_padding not in ("same", "valid"):
            raise ValueError(f"time_padding must be 'same' or 'valid', not {arch.time_padding!r}")
        self.arch = arch
        blocks, cin = [], 1
        for i in range(8):
            blocks.append(ResBlock(cin, arch.widths[i // 2], 4 if i < 4 else 3, 2 if i in STRIDED_BLOCKS else 1))
            cin = arch.widths[i // 2]
        self.blocks = nn.ModuleList(blocks)
        self.reduce = nn.Sequential(nn.Conv2d(cin, arch.c_red, 1, bias=False), nn.BatchNorm2d(arch.c_red))
        self.freq_out = arch.n_bins
        for _ in STRIDED_BLOCKS:
            self.freq_out = -(-self.freq_out // 2)
        self.time_out = 1
        if arch.time_padding == "same":
            t = arch.context
            for _ in STRIDED_BLOCKS:
                t = -(-t // 2)
            self.time_out = t
        self.fc = nn.Linear(arch.c_red * self.time_out * self.freq_out, arch.n_bins)

    # ---------------------------------------------------------------- geometry
    @property
    def window(self) -> int:
        """Frames per per-frame input window: 35 (paper) or the receptive field (dense)."""
        return self.arch.context if self.arch.time_padding == "same" else self.receptive_field

    @property
    def receptive_field(self) -> int:
        """Frames seen by one output frame in "valid" time padding."""
        r, jump = 1, 1
        for b in self.blocks:
            r += (b.k - 1) * jump
            jump *= b.s
            r += (b.k - 1) * jump
        return r

    @property
    def target_offset(self) -> int:
        """Index, inside a window, of the frame whose mask the window predicts (its centre)."""
        return (self.window - 1) // 2

    # ---------------------------------------------------------------- forward
    def forward_frames(self, x: torch.Tensor) -> torch.Tensor:
        """Per-frame path. ``x``: (batch, window, bins) -> mask (batch, bins)."""
        mode = "same" if self.arch.time_padding == "same" else "frames"
        h = x.unsqueeze(1)
        for b in self.blocks:
            h = b(h, mode)
        h = F.relu(self.reduce(h))
        if h.shape[-2] != self.time_out:
            raise ValueError(f"window of {x.shape[1]} frames; this model takes {self.window}")
        return self.fc(h.flatten(1))

    def forward_dense(self, x: torch.Tensor) -> torch.Tensor:
        """Dense path ("valid" models only). ``x``: (batch, T, bins) -> (batch, T - R + 1, bins)."""
        if self.arch.time_padding != "valid":
            raise ValueError("the paper-exact ('same' padding) model runs per frame only")
        h, jump = x.unsqueeze(1), 1
        for b in self.blocks:
            h = b(h, "dense", jump)
            jump *= b.s
        h = F.relu(self.reduce(h))  # (B, c_red, T', F')
        w = self.fc.weight.view(self.arch.n_bins, self.arch.c_red, 1, self.freq_out)
        out = F.conv2d(h, w, self.fc.bias)  # (B, bins, T', 1)
        return out[..., 0].transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Dense for "valid" models, per-frame for the paper-exact model."""
        return self.forward_dense(x) if self.arch.time_padding == "valid" else self.forward_frames(x)


def macs_per_frame(model: ResCNN) -> int:
    """Multiply-accumulates for one output frame (one window in the per-frame paper path)."""
    t_len = model.window if model.arch.time_padding == "same" else 1
    f, total = model.arch.n_bins, 0
    t = t_len
    for b in model.blocks:
        cin, cout = b.conv1.in_channels, b.conv1.out_channels
        f2 = -(-f // b.s)
        t2 = -(-t // b.s) if model.arch.time_padding == "same" else 1
        total += t2 * f2 * (cin * cout + cout * cout) * b.k * b.k
        if b.proj is not None:
            total += t2 * f2 * cin * cout
        f, t = f2, t2
    total += t * f * model.blocks[-1].conv2.out_channels * model.arch.c_red
    total += model.fc.in_features * model.fc.out_features
    return total


def n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------- numpy <-> torch glue


def pick_device(device: str, training: bool = False) -> torch.device:
    """``torch.device(device)``; a GPU one must exist. For training on a GPU, convolutions and matrix
    products may use TF32 and cuDNN picks its fastest algorithms (training shapes repeat)."""
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {device!r} requested but torch.cuda.is_available() is False")
        if training:
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
    return torch.device(device)


class Runner:
    """Inference wrapper: normalised frames in, masks out, in chunks (dense) or batches (paper)."""

    def __init__(self, model: ResCNN, device: str = "cpu", chunk_frames: int = 2000, batch: int = 64) -> None:
        self.device = pick_device(device)
        self.model = model.to(self.device).eval()
        self.chunk_frames, self.batch = chunk_frames, batch

    @torch.inference_mode()
    def masks(self, padded, n_frames: int):  # padded: np (n_frames + window - 1, bins)
        import numpy as np

        m, w = self.model, self.model.window
        x = torch.as_tensor(np.ascontiguousarray(padded), dtype=torch.float32, device=self.device)
        out = []
        if m.arch.time_padding == "valid":
            for start in range(0, n_frames, self.chunk_frames):  # chunks overlap by R-1: exact
                stop = min(start + self.chunk_frames, n_frames)
                out.append(m.forward_dense(x[None, start : stop + w - 1])[0])
        else:
            windows = x.unfold(0, w, 1).transpose(1, 2)  # (n_frames, w, bins), a view
            for start in range(0, n_frames, self.batch):
                out.append(m.forward_frames(windows[start : start + self.batch]))
        return torch.cat(out).float().cpu().numpy()


# ---------------------------------------------------------------------- checkpoints

CHECKPOINT_FORMAT = "ser-bench/rescnn/1"


def save_checkpoint(path, model: ResCNN, norm: dict[str, Any], meta: dict[str, Any],
                    optimizer: torch.optim.Optimizer | None = None, half: bool = False) -> None:
    """Write weights + architecture + normalisation + metadata (+ optimizer state for resuming)."""
    import os
    from pathlib import Path

    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().clone()
             for k, v in model.state_dict().items()}
    blob = {
        "format": CHECKPOINT_FORMAT,
        "arch": model.arch.to_dict(),
        "state_dict": state,
        "norm": {k: torch.as_tensor(v, dtype=torch.float32) for k, v in norm.items()},
        "meta": meta,
    }
    if optimizer is not None:
        blob["optimizer"] = optimizer.state_dict()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(blob, tmp)
    os.replace(tmp, path)  # atomic: an interrupted save never leaves half a checkpoint


def load_checkpoint(path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (weights_only: no code is executed)."""
    blob = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or blob.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a rescnn checkpoint (format {blob.get('format') if isinstance(blob, dict) else '?'})")
    return blob


def model_from_checkpoint(blob: dict[str, Any]) -> ResCNN:
    model = ResCNN(Arch.from_dict(blob["arch"]))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in blob["state_dict"].items()})
    return model.eval()


# ---------------------------------------------------------------------- training step pieces


def make_optimizer(model: ResCNN, name: str, lr: float) -> torch.optim.Optimizer:
    """"sgd" (the paper: plain SGD; momentum 0) or "adam" (used for the CPU checkpoint)."""
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr)
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr)
    raise ValueError(f"optimizer must be 'sgd' or 'adam', not {name!r}")


LOSSES = ("logmag", "compressed")
#: Exponent of the compressed-magnitude loss (|X|^0.3, as in many DNS-challenge systems).
COMPRESSION = 0.3


def loss_fn(noisy: torch.Tensor, mask: torch.Tensor, clean: torch.Tensor, loss: str = "logmag") -> torch.Tensor:
    """Training loss between the masked noisy and the clean log-magnitudes.

    * ``"logmag"`` (the paper): MSE of the log-magnitudes, every bin weighted alike.
    * ``"compressed"``: MSE of the power-law compressed magnitudes ``|X|^0.3`` (``exp(0.3 L)``),
      divided per example by the clean's mean compressed power, so it is level-free and weights
      bins by their (compressed) energy: quiet, noise-dominated bins matter less than speech.
    """
    if loss == "logmag":
        return F.mse_loss(noisy + mask, clean)
    if loss == "compressed":
        est, ref = torch.exp(COMPRESSION * (noisy + mask)), torch.exp(COMPRESSION * clean)
        dims = tuple(range(1, ref.dim()))
        per = ((est - ref) ** 2).mean(dims) / (ref**2).mean(dims).clamp_min(1e-12)
        return per.mean()
    raise ValueError(f"loss must be one of {LOSSES}, not {loss!r}")


def _tensors(arrays, device) -> tuple[torch.Tensor, ...]:
    return tuple(torch.as_tensor(a, dtype=torch.float32).to(device, non_blocking=True) for a in arrays)


def train_step(model: ResCNN, opt: torch.optim.Optimizer, x, noisy, clean, loss: str = "logmag",
               device: torch.device | str = "cpu") -> float:
    """One step. Dense: x (B, T+R-1, bins), noisy/clean (B, T, bins) log-magnitudes.
    Paper: x (B, 35, bins), noisy/clean (B, bins) for the centre frames. ``loss``: see :func:`loss_fn`.
    ``device``: where ``model`` lies (the arrays are moved there)."""
    model.train()
    x, noisy, clean = _tensors((x, noisy, clean), device)
    mask = model(x)
    loss = loss_fn(noisy, mask, clean, loss)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return float(loss.detach())


@torch.inference_mode()
def eval_losses(model: ResCNN, batches, device: torch.device | str = "cpu") -> dict[str, float]:
    """Every loss of :data:`LOSSES` over ``(x, noisy, clean)`` batches, in eval mode, from one
    forward pass (log-magnitude MSE: weighted by each batch's number of bins; others: mean over
    batches)."""
    model.eval()
    sums = dict.fromkeys(LOSSES, 0.0)
    n_bins = n_batches = 0
    for x, noisy, clean in batches:
        x, noisy, clean = _tensors((x, noisy, clean), device)
        mask = model(x)
        sums["logmag"] += float(((noisy + mask - clean) ** 2).sum())
        n_bins += clean.numel()
        for name in LOSSES[1:]:
            sums[name] += float(loss_fn(noisy, mask, clean, name))
        n_batches += 1
    return {k: v / max(n_bins if k == "logmag" else n_batches, 1) for k, v in sums.items()}


def identity_losses(batches) -> dict[str, float]:
    """Every loss of :data:`LOSSES` for the noisy input itself (mask 0): what a model must beat."""
    sums = dict.fromkeys(LOSSES, 0.0)
    n_bins = n_batches = 0
    for _, noisy, clean in batches:
        noisy, clean = (torch.as_tensor(a, dtype=torch.float32) for a in (noisy, clean))
        zero = torch.zeros_like(noisy)
        sums["logmag"] += float(((noisy - clean) ** 2).sum())
        n_bins += clean.numel()
        for name in LOSSES[1:]:
            sums[name] += float(loss_fn(noisy, zero, clean, name))
        n_batches += 1
    return {k: v / max(n_bins if k == "logmag" else n_batches, 1) for k, v in sums.items()}


def eval_loss(model: ResCNN, batches, loss: str = "logmag") -> float:
    """Mean ``loss`` over ``(x, noisy, clean)`` batches, in eval mode."""
    return eval_losses(model, batches)[loss]


def set_threads(n: int | None) -> None:
    if n:
        torch.set_num_threads(n)


def seed_all(seed: int) -> None:
    torch.manual_seed(seed)


__all__ = [
    "Arch", "CPU_WIDTHS", "LOSSES", "N_BINS", "PAPER_CONTEXT", "PAPER_WIDTHS", "ResCNN", "Runner", "eval_loss",
    "eval_losses", "identity_losses", "load_checkpoint", "loss_fn", "macs_per_frame", "make_optimizer",
    "model_from_checkpoint", "n_parameters", "pick_device", "save_checkpoint", "train_step",
]
