"""Cost in corpus size: `bench run` on corpora of 1x, 4x and 16x the utterances, each from a cold
cache and a fresh database, on a local process pool and on a Dask cluster of two separately
started workers (`dask scheduler` + two `dask worker` processes) sharing the cache folder.

The corpus (``scaled-corpus``, benchmarks/speed/scale_plugin.py) cycles over EMO-DB's files
(../shared/data/emodb, 489 files without disgust, 2.0 s on average; the embedded synthetic corpus
without it), each copy with its own gain: 1x = 1,130 utterances = 0.63 h, 16x = 18,080 utterances
= 10.0 h of audio. The protocol is chosen
to be affordable at 16x on a shared 2-core machine: mismatched, enhancer none, one SNR (0 dB,
synthetic noise), so 2 conditions (clean, noisy); a linear-time SER model (log band energies +
nearest centroid: the harness is measured, not an SVM's superlinear fit); 2 speaker-grouped
folds; the default cache policy (``keep_audio = "none"``).

    python benchmarks/speed/scale.py                          # JSON on stdout (process pool and Dask)
    python benchmarks/speed/scale.py --sizes 1 4 --no-dask    # a quick variant
    python benchmarks/speed/scale.py --unit 200 --sizes 1 2 --no-dask --out s.json

Targets (issue 25): wall time linear within +-20 % (16x against the line through 1x and 4x, and
per-utterance CPU), peak RSS within +20 % of the 1x run (driver and busiest worker), cache bytes
per audio hour and condition <= 50 MB.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DATA = ROOT.parent / "shared" / "data"
BUDGET_MB_PER_HOUR_CONDITION = 50.0


def one(a: argparse.Namespace) -> dict:
    """One cold run (this process is the driver; prints JSON)."""
    sys.path.insert(0, str(HERE))
    from ser_bench.cache_admin import usage
    from ser_bench.config import RunConfig
    from ser_bench.db import Store
    from ser_bench.runner import run

    work = Path(a.work)
    cache, db = work / "cache", work / "r.db"
    opts = {"scaled-corpus": {"n": a.n, "root": a.root}}
    cfg = RunConfig(protocol="mismatched", datasets=["scaled-corpus"], ser_models=["logspec-centroid"],
                    enhancers=a.enhancers, noise_sources=["synthetic-noise"], snrs=a.snrs, cv="group-kfold",
                    cv_folds=2, options=opts, keep_audio=a.keep_audio)
    t0, c0 = time.perf_counter(), _cpu()
    s = run(cfg, store=Store(str(db)), executor="dask" if a.scheduler else "process", jobs=2,
            scheduler=a.scheduler, extra_plugins=["scale_plugin:PLUGIN"], cache_dir=str(cache), progress=False)
    wall, cpu = time.perf_counter() - t0, _cpu() - c0
    from ser_bench.plugins import registry_for

    utts = registry_for(["scale_plugin:PLUGIN"]).create("dataset", "scaled-corpus", opts["scaled-corpus"]).utterances()
    hours = sum(len(u.load()) for u in utts) / 16000 / 3600
    u = usage(cache)
    n_conditions = 1 + len(a.snrs) * len(a.enhancers)  # clean + (noisy / enhanced) x SNRs
    return {"n_utterances": a.n, "audio_hours": round(hours, 3), "cells": s.n_cells, "failed": s.n_failed,
            "wall_s": round(wall, 2), "driver_cpu_s": round(cpu, 2), "driver_peak_rss_mb": s.peak_rss_mb,
            "workers_peak_rss_mb": s.workers_peak_rss_mb, "cache_bytes": u["bytes"],
            "cache_by_kind": {k: v["bytes"] for k, v in u["by_kind"].items()}, "conditions": n_conditions,
            "cache_mb_per_hour_condition": round(u["bytes"] / 1e6 / hours / n_conditions, 3)}


def _cpu() -> float:
    r, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime


def _proc_cpu(pid: int) -> float:
    """CPU seconds of a running process (Linux /proc), 0 elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def measure(a: argparse.Namespace, size: int, scheduler: str | None, workers: list[int]) -> dict:
    work = Path(a.work) / f"{'dask' if scheduler else 'process'}-{size}x"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", "--n", str(a.unit * size), "--work", str(work),
           "--root", a.root, "--keep-audio", a.keep_audio, "--enhancers", *a.enhancers, "--snrs",
           *[str(s) for s in a.snrs]] + (["--scheduler", scheduler] if scheduler else [])
    w0 = sum(_proc_cpu(p) for p in workers)
    load = os.getloadavg()[0]
    p = subprocess.run(cmd, capture_output=True, text=True, env=_env())
    if p.returncode:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    out = json.loads(p.stdout.strip().splitlines()[-1])
    out["loadavg_before"] = round(load, 2)
    if workers:
        out["dask_workers_cpu_s"] = round(sum(_proc_cpu(p) for p in workers) - w0, 2)
    out["cpu_s"] = round(out["driver_cpu_s"] + out.get("dask_workers_cpu_s", 0.0), 2)
    print(f"{'dask' if scheduler else 'process'} {size}x: {out['wall_s']} s, {out['cpu_s']} CPU s", file=sys.stderr,
          flush=True)
    if not a.keep_work:
        shutil.rmtree(work / "cache", ignore_errors=True)
    return out


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


def verdict(runs: dict[int, dict]) -> dict:
    sizes = sorted(runs)
    lo, mid, hi = sizes[0], sizes[len(sizes) // 2], sizes[-1]
    out: dict = {}
    if len(sizes) >= 3:  # the largest against the line through the two smaller ones
        slope = (runs[mid]["wall_s"] - runs[lo]["wall_s"]) / (mid - lo)
        pred = runs[mid]["wall_s"] + slope * (hi - mid)
        out["wall_largest_over_linear_prediction"] = round(runs[hi]["wall_s"] / pred, 3)
        cslope = (runs[mid]["cpu_s"] - runs[lo]["cpu_s"]) / (mid - lo)
        out["cpu_largest_over_linear_prediction"] = round(runs[hi]["cpu_s"] / (runs[mid]["cpu_s"] + cslope * (hi - mid)), 3)
    out["cpu_per_utterance_ms"] = {f"{s}x": round(1000 * runs[s]["cpu_s"] / runs[s]["n_utterances"], 2) for s in sizes}
    out["wall_per_utterance_ms"] = {f"{s}x": round(1000 * runs[s]["wall_s"] / runs[s]["n_utterances"], 2) for s in sizes}
    out["driver_rss_over_1x"] = round(runs[hi]["driver_peak_rss_mb"] / runs[lo]["driver_peak_rss_mb"], 3)
    out["workers_rss_over_1x"] = round(runs[hi]["workers_peak_rss_mb"] / runs[lo]["workers_peak_rss_mb"], 3)
    out["max_cache_mb_per_hour_condition"] = max(r["cache_mb_per_hour_condition"] for r in runs.values())
    lin = [v for k, v in out.items() if k.endswith("linear_prediction")]
    out["targets_met"] = {
        # the target: within +-20 % of the line. Below the line by more (the largest run
        # cheaper per utterance than the line predicts, e.g. fixed start-up costs amortised, or
        # the smaller runs timed under more load) is reported, and is not a scaling failure:
        "linear_within_20pct": all(abs(v - 1) <= 0.2 for v in lin) if len(sizes) >= 3 else None,
        "no_worse_than_linear_plus_20pct": all(v <= 1.2 for v in lin) if len(sizes) >= 3 else None,
        "rss_within_20pct_of_1x": out["driver_rss_over_1x"] <= 1.2 and out["workers_rss_over_1x"] <= 1.2,
        "cache_le_50MB_per_hour_condition": out["max_cache_mb_per_hour_condition"] <= BUDGET_MB_PER_HOUR_CONDITION,
    }
    return out


def dask_cluster(work: Path) -> tuple[str, list[subprocess.Popen]]:
    """`dask scheduler` and two `dask worker` processes (no nanny: the worker is the process measured)."""
    sched_file = work / "scheduler.json"
    sched_file.unlink(missing_ok=True)
    # the dask-scheduler / dask-worker programs, run by this Python (where ser-bench is installed)
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--scheduler-file", str(sched_file), "--port", "0",
                                      "--dashboard-address", ":0"], env=_env(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)]
    for _ in range(1200):
        if sched_file.exists() and sched_file.stat().st_size:
            break
        time.sleep(0.1)
    addr = json.loads(sched_file.read_text())["address"]
    for i in range(2):
        procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", addr, "--nthreads", "1", "--no-nanny", "--name", f"w{i}",
                                              "--local-directory", str(work / f"w{i}"), "--dashboard-address", ":0"],
                                      env=_env(), cwd=str(work), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    from distributed import Client

    with Client(addr, timeout=60) as c:
        c.wait_for_workers(2, timeout=120)
    return addr, procs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--unit", type=int, default=1130, help="utterances of the 1x corpus (1,130 EMO-DB files: 0.63 h)")
    ap.add_argument("--root", default=str(DATA / "emodb") if (DATA / "emodb" / "wav").is_dir() else "")
    ap.add_argument("--enhancers", nargs="+", default=["none"])
    ap.add_argument("--snrs", type=float, nargs="+", default=[0.0])
    ap.add_argument("--keep-audio", default="none", choices=["none", "enhanced", "all"])
    ap.add_argument("--no-dask", action="store_true")
    ap.add_argument("--dask-sizes", type=int, nargs="+", default=None, help="sizes on Dask (default: --sizes)")
    ap.add_argument("--work", default=None)
    ap.add_argument("--keep-work", action="store_true")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--scheduler", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.one:
        print(json.dumps(one(a)))
        return 0
    a.work = a.work or tempfile.mkdtemp(prefix="bench-scale-")
    Path(a.work).mkdir(parents=True, exist_ok=True)
    report: dict = {"job": f"mismatched, scaled-corpus ({'EMO-DB' if a.root else 'synthetic'} x gains), "
                           f"logspec-centroid, enhancers {a.enhancers}, SNRs {a.snrs}, 2 folds, keep_audio "
                           f"{a.keep_audio}, 2 workers", "unit_utterances": a.unit, "cores": os.cpu_count()}
    report["process"] = {f"{s}x": measure(a, s, None, []) for s in a.sizes}
    report["process_verdict"] = verdict({s: report["process"][f"{s}x"] for s in a.sizes})
    if not a.no_dask:
        addr, procs = dask_cluster(Path(a.work))
        try:
            sizes = a.dask_sizes or a.sizes
            report["dask"] = {f"{s}x": measure(a, s, addr, [p.pid for p in procs[1:]]) for s in sizes}
            report["dask_verdict"] = verdict({s: report["dask"][f"{s}x"] for s in sizes})
        finally:
            for p in reversed(procs):
                p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
    report["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    text = json.dumps(report, indent=2)
    print(text)
    if a.out:
        a.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
