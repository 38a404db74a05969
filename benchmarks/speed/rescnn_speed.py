"""rescnn speed: real-time factor of the per-frame (paper-exact) and dense paths, both widths,
and training frames per second. Prints one JSON object.

    python benchmarks/speed/rescnn_speed.py [--seconds 2] [--threads N] [--device cpu]

RTF = compute time / audio duration (below 1 is faster than real time). The per-frame path is
the paper-exact model (35-frame windows, "same" padding, one window per 10 ms frame, batches of
64); the dense path runs the "valid" model once over the whole spectrogram. Untrained weights:
speed does not depend on them. STFT and resynthesis are included (they are ~1 % of the time).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from ser_bench_plugins.rescnn import features as fe  # noqa: E402
from ser_bench_plugins.rescnn import model as M  # noqa: E402


def rtf(net: M.ResCNN, audio: np.ndarray, device: str, repeats: int = 1) -> float:
    """Seconds of compute per second of audio for the full enhance path (STFT -> mask -> iSTFT)."""
    from ser_bench.dsp import from_log_magnitude, log_magnitude

    runner = M.Runner(net, device=device)
    norm = {"mu": np.zeros(201, np.float32), "sigma": np.ones(201, np.float32)}

    def once():
        spec, L = fe.logmag(audio)
        x = fe.pad_frames(fe.normalise(L, norm), net.target_offset, net.window - 1 - net.target_offset)
        m = runner.masks(x, len(L))
        return from_log_magnitude(log_magnitude(spec) + m, spec, len(audio))

    once() if len(audio) > 16000 else None  # warm-up (allocator, kernels)
    t = time.perf_counter()
    for _ in range(repeats):
        once()
    return (time.perf_counter() - t) / repeats / (len(audio) / 16000)


def train_fps(net: M.ResCNN, steps: int = 3) -> float:
    """Training frames per second: dense crops of 200 frames x 4, or 64 windows (per-frame)."""
    opt = M.make_optimizer(net, "sgd", 0.01)
    if net.arch.time_padding == "valid":
        B, T = 4, 200
        x, y = torch.randn(B, T + net.window - 1, 201), torch.randn(B, T, 201)
        frames = B * T
    else:
        x, y = torch.randn(64, net.window, 201), torch.randn(64, 201)
        frames = 64
    M.train_step(net, opt, x, y, y)
    t = time.perf_counter()
    for _ in range(steps):
        M.train_step(net, opt, x, y, y)
    return frames * steps / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="audio length for the RTF measurements")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--skip-paper-per-frame", action="store_true", help="skip the slowest measurement")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    audio = (0.1 * np.random.default_rng(0).standard_normal(int(args.seconds * 16000))).astype(np.float32)
    out: dict = {"audio_s": args.seconds, "threads": torch.get_num_threads(), "device": args.device,
                 "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "torch": torch.__version__,
                 "widths": {}}
    for label, widths in [("cpu", M.CPU_WIDTHS), ("paper", M.PAPER_WIDTHS)]:
        per_frame = M.ResCNN(M.Arch(widths=widths, time_padding="same"))
        dense = M.ResCNN(M.Arch(widths=widths, time_padding="valid"))
        r: dict = {"widths": list(widths), "gmac_per_window_per_frame": M.macs_per_frame(per_frame) / 1e9,
                   "gmac_per_frame_dense": M.macs_per_frame(dense) / 1e9,
                   "params_per_frame_model": M.n_parameters(per_frame), "params_dense_model": M.n_parameters(dense)}
        r["rtf_dense"] = rtf(dense, audio, args.device)
        if not (label == "paper" and args.skip_paper_per_frame):
            r["rtf_per_frame"] = rtf(per_frame, audio, args.device)
            r["per_frame_over_dense"] = r["rtf_per_frame"] / r["rtf_dense"]
        r["train_frames_per_s_dense"] = train_fps(dense)
        r["train_frames_per_s_per_frame"] = train_fps(per_frame, steps=1 if label == "paper" else 3)
        out["widths"][label] = r
        print(json.dumps({label: r}), file=sys.stderr)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
