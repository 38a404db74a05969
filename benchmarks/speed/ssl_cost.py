"""What an SSL back-end costs: encoding EMO-DB with randomly initialised full-size encoders.

The weights are random (none can be downloaded on the machines this was written on), but the
compute of a forward pass does not depend on them: ``random:wavlm-base`` costs what
microsoft/wavlm-base-plus costs. The script encodes a deterministic subset of EMO-DB (every k-th
file, sorted by name) with ssl-probe's own code path (chunking, pooling of every layer) on one
torch thread, as one ``bench run`` worker does, and extrapolates to the whole corpus and to
EMO-DB's paper suite (the matched + mismatched suites share their features: clean + 6 SNRs x
{noisy, wiener, rescnn} = 19 conditions of the 6-class corpus, 489 utterances).

    nice -n 10 python benchmarks/speed/ssl_cost.py                       # wavlm-base, wavlm-large, whisper-base
    python benchmarks/speed/ssl_cost.py --models random:hubert-base --n 10
    python benchmarks/speed/ssl_cost.py --device cuda --n 100            # on a GPU, where one is lent

Prints JSON: per model the parameters, build + weight-digest time, encoded audio seconds, wall and
CPU seconds, real-time factors (wall or CPU seconds / audio seconds: below 1 is faster than real
time), the extrapolated hours for EMO-DB once and for the paper suite (one worker; two workers
halve the wall time on two free cores), and the load average around each measurement. On a shared
machine the wall figures are upper bounds; with one torch thread the CPU figures are what the same
work takes on a free core.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data" / "emodb"
#: conditions of EMO-DB's paper suite whose features are encoded (clean + 6 SNRs x noisy/wiener/rescnn)
PAPER_CONDITIONS = 1 + 6 * 3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=DATA, help="EMO-DB folder (with wav/)")
    ap.add_argument("--models", default="random:wavlm-base,random:wavlm-large,random:whisper-base")
    ap.add_argument("--n", type=int, default=16, help="utterances encoded per model (a subset, extrapolated)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (bench run workers use 1)")
    ap.add_argument("--batch-seconds", type=float, default=0.0, help="ssl-probe.batch_seconds")
    args = ap.parse_args()

    import soundfile as sf
    import torch

    from ser_bench.audio import load_audio
    from ser_bench_plugins.ssl_probe import encoder as E

    torch.set_num_threads(args.threads)
    files = sorted((args.root / "wav").glob("*.wav"))
    if not files:
        sys.exit(f"no EMO-DB wav files under {args.root / 'wav'}; pass --root")
    six = [f for f in files if f.stem[5] != "E"]  # the paper's 6 classes: all but disgust (E)
    dur_all = sum(sf.info(str(f)).duration for f in files)
    dur_six = sum(sf.info(str(f)).duration for f in six)
    step = max(1, len(six) // args.n)
    subset = six[::step][: args.n]
    audios = [load_audio(f) for f in subset]
    sub_s = sum(len(a) for a in audios) / 16000
    out = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                       "torch_threads": args.threads, "device": args.device, "torch": torch.__version__},
           "corpus": {"files": len(files), "hours_all": dur_all / 3600, "files_6class": len(six),
                      "hours_6class": dur_six / 3600},
           "subset": {"files": len(subset), "audio_s": sub_s, "note": "every k-th 6-class file; times extrapolated"},
           "models": {}}
    for spec in [m.strip() for m in args.models.split(",") if m.strip()]:
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        enc = E.load(spec, args.device)
        t1 = time.perf_counter()
        E.encode(enc, audios[:1], chunk_seconds=20.0, overlap_seconds=1.0)  # warm-up (allocator, kernels)
        t2 = time.perf_counter()
        c0 = time.process_time()
        E.encode(enc, audios, chunk_seconds=20.0, overlap_seconds=1.0, batch_seconds=args.batch_seconds)
        if args.device == "cuda":
            torch.cuda.synchronize()
        wall = time.perf_counter() - t2
        cpu = time.process_time() - c0
        rtf = wall / sub_s
        n_params = sum(p.numel() for p in enc.model.parameters())
        out["models"][spec] = {
            "params_m": round(n_params / 1e6, 1), "layers": enc.n_layers, "dim": enc.dim,
            "build_and_digest_s": round(t1 - t0, 2), "warmup_s": round(t2 - t1, 2),
            "encode_wall_s": round(wall, 2), "encode_cpu_s": round(cpu, 2), "rtf": round(rtf, 4),
            "rtf_cpu": round(cpu / sub_s, 4), "x_realtime": round(1 / rtf, 2),
            "emodb_all_h_cpu": round(cpu / sub_s * dur_all / 3600, 3),
            "paper_suite_h_cpu": round(cpu / sub_s * dur_six * PAPER_CONDITIONS / 3600, 2),
            "emodb_all_h": round(rtf * dur_all / 3600, 3),
            "paper_suite_h_one_worker": round(rtf * dur_six * PAPER_CONDITIONS / 3600, 2),
            "paper_suite_h_two_workers": round(rtf * dur_six * PAPER_CONDITIONS / 3600 / 2, 2),
            "loadavg_before": round(load0, 2), "loadavg_after": round(os.getloadavg()[0], 2),
        }
        del enc
        E._ENCODERS.clear()
        print(json.dumps({spec: out["models"][spec]}), file=sys.stderr, flush=True)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
