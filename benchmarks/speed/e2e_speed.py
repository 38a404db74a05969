"""Training and inference throughput of the end-to-end CNN-LSTM (seconds of audio per second).

Times full-size networks (40 filters, 2 x 256 LSTM units by default) on random audio, which is
what matters for speed: a training step is forward + CCC loss + backward + Adam on a batch of
``--batch`` chunks of ``--chunk`` seconds; inference is a forward pass in inference mode. The
first step of each kind is a warm-up and is not counted. Wall and process CPU times are both
reported: on a shared machine the wall time also counts waiting for a core. Prints one JSON
object.

    python benchmarks/speed/e2e_speed.py                        # both presets, 1 thread, CPU
    python benchmarks/speed/e2e_speed.py --preset end2you --threads 2 --steps 3
    python benchmarks/speed/e2e_speed.py --preset paper2016 --conv direct --steps 1   # slow!

With ``--preset paper2016`` the 4000-wide convolution runs by FFT (``--conv auto``); ``--conv
direct`` times the direct convolution instead (minutes per training step on a CPU).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from ser_bench_plugins.e2e.network import E2ERegressor, build_front_end, ccc_loss  # noqa: E402

SR = 16_000


def time_preset(preset: str, args: argparse.Namespace) -> dict:
    torch.manual_seed(0)
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    front = build_front_end(preset, n_filters=args.filters, channel_pool=10, dropout=0.5, conv=args.conv)
    net = E2ERegressor(front, hidden_size=args.hidden, lstm_layers=2).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    n = int(round(args.chunk / 0.04)) * 640
    x = 0.05 * torch.randn(args.batch, n, device=device)
    y = torch.tanh(torch.randn(args.batch, n // 640, device=device))
    audio_s = args.batch * n / SR

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    # wall time, and process CPU time (on a shared machine wall time includes waiting for a core)
    train_times, train_cpu = [], []
    net.train()
    for i in range(args.steps + 1):
        sync()
        t0, c0 = time.perf_counter(), time.process_time()
        loss = ccc_loss(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sync()
        if i:  # the first step warms up
            train_times.append(time.perf_counter() - t0)
            train_cpu.append(time.process_time() - c0)
    infer_times, infer_cpu = [], []
    net.eval()
    with torch.inference_mode():
        for i in range(args.steps + 1):
            sync()
            t0, c0 = time.perf_counter(), time.process_time()
            net(x)
            sync()
            if i:
                infer_times.append(time.perf_counter() - t0)
                infer_cpu.append(time.process_time() - c0)
    train_step = sum(train_times) / len(train_times)
    infer_step = sum(infer_times) / len(infer_times)
    train_step_cpu = sum(train_cpu) / len(train_cpu)
    infer_step_cpu = sum(infer_cpu) / len(infer_cpu)
    return {
        "preset": preset,
        "kernels": [front.conv1.kernel_size[0], front.conv2.kernel_size[0]],
        "fft": [front.conv1.fft, front.conv2.fft],
        "framewise": front.framewise,
        "parameters": sum(p.numel() for p in net.parameters()),
        "batch_audio_s": audio_s,
        "train_step_s": round(train_step, 3),
        "train_audio_s_per_s": round(audio_s / train_step, 2),
        "train_step_cpu_s": round(train_step_cpu, 3),
        "infer_batch_s": round(infer_step, 3),
        "infer_audio_s_per_s": round(audio_s / infer_step, 2),
        "infer_batch_cpu_s": round(infer_step_cpu, 3),
        "steps_timed": args.steps,
        "epoch_minutes_recola_train": round(9 * 300 / (audio_s / train_step) / 60, 2),
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=["end2you", "paper2016", "both"], default="both")
    ap.add_argument("--conv", choices=["auto", "direct", "fft"], default="auto")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: the CPU is shared)")
    ap.add_argument("--steps", type=int, default=2, help="timed steps after one warm-up step")
    ap.add_argument("--batch", type=int, default=25)
    ap.add_argument("--chunk", type=float, default=6.0, help="seconds per chunk")
    ap.add_argument("--filters", type=int, default=40)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="cpu")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    presets = ["end2you", "paper2016"] if args.preset == "both" else [args.preset]
    result = {
        "benchmark": "e2e_speed",
        "device": args.device,
        "threads": args.threads,
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "results": [time_preset(p, args) for p in presets],
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
