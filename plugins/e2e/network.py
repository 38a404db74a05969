"""The end-to-end raw-audio CNN-LSTM of Trigeorgis et al. (2016), in torch.

Front end (one feature vector per 40 ms frame of 640 samples at 16 kHz)::

    raw audio -> conv1 (n_filters, width k1) -> ReLU -> max-pool 2 in time -> dropout
              -> conv2 (n_filters, width k2) -> ReLU -> max-pool `channel_pool` across channels
              -> dropout -> per frame: (n_filters / channel_pool) x 320 values, flattened

Presets for (k1, k2) and where the convolutions run:

* ``"end2you"`` (default): k1 = 20, k2 = 40 samples, as in the End2You implementation by the
  same group (``Emo16``; its TensorFlow version pools 10 across the channels after conv2). Each
  40 ms frame is convolved on its own, zero-padded at the frame edges, as End2You does.
* ``"paper2016"``: k1 = 80 (5 ms), k2 = 4000 (250 ms after pooling), the sizes printed in the
  2016 paper. A 4000-wide kernel is wider than a frame, so these convolutions run over the whole
  chunk and are then cut into frames; conv2 runs as an FFT convolution (direct: minutes per step
  on a CPU; FFT: seconds). Results equal a direct convolution to float precision.

Back end: ``lstm_layers`` uni-directional LSTMs of ``hidden_size`` units, then a fully connected
layer with tanh: one arousal value per frame (:class:`E2ERegressor`). :class:`E2EClassifier` mean-
pools the LSTM outputs over the frames of each utterance and maps them to class logits (softmax
and cross-entropy in the loss; beyond the paper).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

SAMPLES_PER_FRAME = 640  # 40 ms at 16 kHz
PRESETS: dict[str, dict] = {
    "end2you": {"kernels": (20, 40), "framewise": True},
    "paper2016": {"kernels": (80, 4000), "framewise": False},
}
#: Kernels wider than this use the FFT convolution when ``conv="auto"``.
FFT_THRESHOLD = 256


def same_pad(x: torch.Tensor, k: int) -> torch.Tensor:
    """TensorFlow-style "same" padding for a width-``k`` kernel: (k-1)//2 left, the rest right."""
    left = (k - 1) // 2
    return F.pad(x, (left, k - 1 - left))


def _fast_len(n: int) -> int:
    """The smallest length >= n of the form 2^a 3^b 5^c (quick for FFTs)."""
    best = 1 << max(n - 1, 0).bit_length()
    f5 = 1
    while f5 < best:
        f35 = f5
        while f35 < best:
            q = f35
            while q < n:
                q *= 2
            best = min(best, q)
            f35 *= 3
        f5 *= 5
    return best


class SameConv1d(nn.Conv1d):
    """A stride-1 Conv1d with "same" output length, computed directly or by FFT.

    The FFT path (:func:`fft_correlate_same`) computes what :func:`torch.nn.functional.conv1d`
    computes (a cross-correlation) for long kernels, in O(N log K) instead of O(N K).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, fft: bool = False) -> None:
        super().__init__(in_channels, out_channels, kernel_size, padding=0)
        self.fft = fft

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel_size[0]
        if not self.fft:
            return super().forward(same_pad(x, k))
        return fft_correlate_same(x, self.weight, self.bias)


def fft_correlate_same(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``conv1d(same_pad(x, K), w, bias)`` by overlap-save FFT convolution.

    Blocks of FFT size M ~ 3K (``K`` the kernel width) keep the transforms of the weights small
    (they cost Cout x Cin transforms, and the gradient as much again); each block yields
    M - K + 1 outputs. The complex products run as real batched matmuls (complex bmm's
    backward is slow on CPU).
    """
    b, cin, n = x.shape
    cout, _, k = w.shape
    m = min(_fast_len(3 * k), _fast_len(n + k - 1))
    s = m - k + 1
    nblk = math.ceil(n / s)
    left = (k - 1) // 2
    xp = F.pad(x, (left, nblk * s + k - 1 - n - left))
    xf = torch.fft.rfft(xp.unfold(-1, m, s), n=m)  # (b, cin, nblk, nf)
    wf = torch.fft.rfft(w, n=m)  # (cout, cin, nf)
    nf = wf.shape[-1]
    # correlation = product with the conjugate weight spectrum; per frequency (b*nblk, cin) @ (cin, cout)
    xr, xi = (t.permute(3, 0, 2, 1).reshape(nf, b * nblk, cin) for t in (xf.real, xf.imag))
    wr, wi = wf.real.permute(2, 1, 0), -wf.imag.permute(2, 1, 0)
    yr = torch.bmm(xr, wr) - torch.bmm(xi, wi)
    yi = torch.bmm(xr, wi) + torch.bmm(xi, wr)
    yf = torch.complex(yr, yi).reshape(nf, b, nblk, cout).permute(1, 3, 2, 0)
    y = torch.fft.irfft(yf, n=m)[..., :s].reshape(b, cout, nblk * s)[..., :n]
    return y if bias is None else y + bias[None, :, None]


class FrontEnd(nn.Module):
    """Raw audio (B, N) with N a multiple of 640 -> features (B, N / 640, n_feat)."""

    def __init__(
        self,
        *,
        kernels: tuple[int, int],
        framewise: bool,
        n_filters: int = 40,
        channel_pool: int = 10,
        dropout: float = 0.5,
        fft: tuple[bool, bool] = (False, False),
    ) -> None:
        super().__init__()
        if n_filters % channel_pool:
            raise ValueError(f"n_filters ({n_filters}) must be a multiple of channel_pool ({channel_pool})")
        self.framewise = framewise
        self.channel_pool = channel_pool
        self.conv1 = SameConv1d(1, n_filters, kernels[0], fft=fft[0])
        self.conv2 = SameConv1d(n_filters, n_filters, kernels[1], fft=fft[1])
        self.drop = nn.Dropout(dropout)
        self.n_features = (n_filters // channel_pool) * (SAMPLES_PER_FRAME // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n = x.shape
        t = n // SAMPLES_PER_FRAME
        h = x.reshape(b * t, 1, SAMPLES_PER_FRAME) if self.framewise else x.reshape(b, 1, n)
        h = self.drop(F.max_pool1d(F.relu(self.conv1(h)), 2))
        h = F.relu(self.conv2(h))
        rows, c, length = h.shape
        # max-pool across channels: groups of `channel_pool` consecutive filters
        h = h.reshape(rows, c // self.channel_pool, self.channel_pool, length).amax(dim=2)
        h = self.drop(h)
        c2 = c // self.channel_pool
        if self.framewise:  # (b*t, c2, 320) -> (b, t, c2*320)
            return h.reshape(b, t, c2 * length)
        half = SAMPLES_PER_FRAME // 2  # (b, c2, t*320) -> (b, t, c2*320)
        return h.reshape(b, c2, t, half).permute(0, 2, 1, 3).reshape(b, t, c2 * half)


def build_front_end(
    preset: str, *, n_filters: int, channel_pool: int, dropout: float, conv: str = "auto"
) -> FrontEnd:
    """A :class:`FrontEnd` for a preset; ``conv`` is "auto", "direct" or "fft"."""
    p = PRESETS[preset]
    k1, k2 = p["kernels"]
    fft = tuple((conv == "fft") or (conv == "auto" and k > FFT_THRESHOLD) for k in (k1, k2))
    return FrontEnd(
        kernels=(k1, k2), framewise=p["framewise"], n_filters=n_filters, channel_pool=channel_pool,
        dropout=dropout, fft=fft,  # type: ignore[arg-type]
    )


class E2ERegressor(nn.Module):
    """Front end -> LSTMs -> linear -> tanh: (B, N) audio -> (B, N / 640) values in (-1, 1)."""

    def __init__(self, front: FrontEnd, hidden_size: int = 256, lstm_layers: int = 2) -> None:
        super().__init__()
        self.front = front
        self.lstm = nn.LSTM(front.n_features, hidden_size, num_layers=lstm_layers, batch_first=True)
        self.out = nn.Linear(hidden_size, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(self.front(x))
        return torch.tanh(self.out(h)).squeeze(-1)


class E2EClassifier(nn.Module):
    """Front end -> LSTMs -> mean over valid frames -> linear: (B, N) audio -> (B, classes) logits."""

    def __init__(self, front: FrontEnd, n_classes: int, hidden_size: int = 256, lstm_layers: int = 2) -> None:
        super().__init__()
        self.front = front
        self.lstm = nn.LSTM(front.n_features, hidden_size, num_layers=lstm_layers, batch_first=True)
        self.out = nn.Linear(hidden_size, n_classes)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``mask`` (B, T) marks the frames holding audio (padding sits at the end)."""
        h, _ = self.lstm(self.front(x))
        m = mask.to(h.dtype).unsqueeze(-1)
        pooled = (h * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)
        return self.out(pooled)


def ccc_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """1 - ρc over all (masked) entries of the batch, with population moments."""
    if mask is not None:
        pred, target = pred[mask], target[mask]
    pred, target = pred.reshape(-1), target.reshape(-1)
    mp, mt = pred.mean(), target.mean()
    cov = ((pred - mp) * (target - mt)).mean()
    denom = pred.var(unbiased=False) + target.var(unbiased=False) + (mp - mt) ** 2
    return 1.0 - 2.0 * cov / denom.clamp_min(1e-8)
