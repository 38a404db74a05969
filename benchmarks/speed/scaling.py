"""Scaling of `bench run` with workers: the same feature-bound protocol on a process pool of 1 and
2 workers and on a Dask LocalCluster of 2 workers, each from a cold cache and a fresh database.

The protocol (default: mismatched, SNRs 0 and 10 dB, no enhancer, ComParE 2016 functionals +
SVM on the embedded synthetic corpus with 10 utterances per speaker and class = 240 utterances
x 3 conditions = 720 openSMILE extractions) spends most of its time featurizing, which parallelises
across utterance chunks. Runs are interleaved (p1, p2, dask2, p1, p2, ...) so that a change in
the machine's background load hits every executor alike; speed-ups are ratios of medians. The
load average and this process's children's CPU time are recorded with every run: on a shared
machine, a speed-up below 2 often just means the second core was busy with someone else's work.

    python benchmarks/speed/scaling.py                   # JSON on stdout
    python benchmarks/speed/scaling.py --repeats 3 --per-class 6 --no-dask --out scaling.json
    python benchmarks/speed/scaling.py --emodb ../shared/data/emodb --repeats 1 --no-dask   # real EMO-DB
    python benchmarks/speed/scaling.py --emodb ../shared/data/emodb --speakers 3 --snr 0 --repeats 1 --no-dask

``--emodb ROOT`` times the same protocol on EMO-DB (6 classes, LOSO) with the noise folders of
../shared/data (``--noise``); ``--speakers N`` keeps the first N speakers (a shorter variant).

Target (issue 5): >= 1.8x with 2 workers on 2 idle cores.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ser_bench.config import RunConfig  # noqa: E402
from ser_bench.db import Store  # noqa: E402
from ser_bench.executors import DaskExecutor, InlineExecutor, PoolExecutor, usable_cores  # noqa: E402
from ser_bench.runner import run  # noqa: E402


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def measure(config: RunConfig, kind: str, workers: int, work: Path) -> dict:
    """One cold run: fresh cache and database under ``work``."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    ex = {"inline": lambda: InlineExecutor(), "process": lambda: PoolExecutor(workers),
          "dask": lambda: DaskExecutor(workers)}[kind]()
    load = os.getloadavg()[0]
    cpu0, self0 = _children_cpu(), _self_cpu()
    t0 = time.perf_counter()
    s = run(config, store=Store(str(work / "r.db")), executor=ex, cache_dir=str(work / "cache"), progress=False)
    wall = time.perf_counter() - t0
    cpu = _children_cpu() - cpu0 + _self_cpu() - self0
    if s.n_failed or s.n_done != s.n_cells:
        raise RuntimeError(f"{kind}/{workers}: {s.n_failed} cells failed: {s.failures[:3]}")
    shutil.rmtree(work, ignore_errors=True)
    return {"executor": kind, "workers": workers, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
            "cpu_per_wall": round(cpu / wall, 2), "loadavg_1min_before": round(load, 2), "cells": s.n_cells}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="svm-compare", help="SER model (feature-bound: svm-compare, svm-egemaps)")
    ap.add_argument("--per-class", type=int, default=10, help="synthetic utterances per speaker and class")
    ap.add_argument("--snr", type=float, action="append", help="SNR(s) in dB (default 0 and 10)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--no-dask", action="store_true", help="skip the Dask LocalCluster")
    ap.add_argument("--inline", action="store_true", help="also time the in-process executor")
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    ap.add_argument("--emodb", default=None, metavar="ROOT", help="time EMO-DB at ROOT instead of the synthetic corpus")
    ap.add_argument("--speakers", type=int, default=None, help="with --emodb: only the first N speakers")
    ap.add_argument("--noise", default=str(Path(__file__).resolve().parents[3] / "shared" / "data" / "noise"),
                    help="with --emodb: the noise folder root")
    a = ap.parse_args(argv)
    try:
        import torch

        torch.set_num_threads(1)  # the driver's own share (fitting) stays single-threaded too
    except ImportError:
        pass
    tmp = Path(tempfile.mkdtemp(prefix="bench-scaling-"))
    if a.emodb:
        root = Path(a.emodb)
        if a.speakers:
            files = sorted((root / "wav").glob("*.wav"))
            keep = sorted({f.name[:2] for f in files})[: a.speakers]
            root = tmp / "emodb"
            (root / "wav").mkdir(parents=True)
            for f in files:
                if f.name[:2] in keep:
                    (root / "wav" / f.name).symlink_to(f.resolve())
        config = RunConfig(protocol="mismatched", datasets=["emodb"], ser_models=[a.model], enhancers=["none"],
                           noise_sources=["folder"], snrs=a.snr or [0.0, 10.0], cv="loso",
                           options={"emodb": {"root": str(root)}, "folder": {"root": a.noise}})
    else:
        config = RunConfig(protocol="mismatched", datasets=["synthetic"], ser_models=[a.model], enhancers=["none"],
                           noise_sources=["synthetic-noise"], snrs=a.snr or [0.0, 10.0],
                           options={"synthetic": {"per_class": a.per_class}})
    plan = [("process", 1), ("process", 2)]
    if not a.no_dask:
        try:
            import distributed  # noqa: F401

            plan.append(("dask", 2))
        except ImportError:
            print("dask.distributed not installed: skipping the Dask runs (pip install 'ser-bench[dask]')",
                  file=sys.stderr)
    if a.inline:
        plan.insert(0, ("inline", 1))
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip() if shutil.which("uptime") else ""
    report: dict = {"config": json.loads(config.to_json()), "usable_cores": usable_cores(), "uptime_before": uptime,
                    "runs": []}
    try:
        for r in range(a.repeats):
            for kind, n in plan:
                res = measure(config, kind, n, tmp / f"{kind}{n}")
                res["repeat"] = r
                report["runs"].append(res)
                print(json.dumps(res), file=sys.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def median(kind: str, n: int) -> float | None:
        xs = [x["wall_s"] for x in report["runs"] if x["executor"] == kind and x["workers"] == n]
        return statistics.median(xs) if xs else None

    p1, p2, d2 = median("process", 1), median("process", 2), median("dask", 2)
    report["median_wall_s"] = {"process1": p1, "process2": p2, "dask2": d2, "inline": median("inline", 1)}
    report["speedup_process_2_vs_1"] = round(p1 / p2, 2) if p1 and p2 else None
    report["speedup_dask_2_vs_process_1"] = round(p1 / d2, 2) if p1 and d2 else None
    report["uptime_after"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip() if uptime else ""
    text = json.dumps(report, indent=2)
    print(text)
    if a.out:
        a.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
