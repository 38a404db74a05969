"""Where the EMO-DB paper suite spends its time: a reduced run profiled in one process.

Runs the paper's EMO-DB experiments (clean, noisy and enhanced with rescnn at the given SNRs,
svm-egemaps + svm-compare, matched then mismatched, LOSO) in-process under cProfile, from a
fresh cache and database, and prints JSON: wall time and the time inside each stage
(openSMILE, enhancement, mixing, audio reading, cache I/O, SVM fit / predict, database, plugin
and library imports), plus the top functions by own time.

    python benchmarks/speed/profile_paper.py --snrs 0 [--root ../shared/data/emodb] [--out prof.json]

Times are CPU-bound single-process times: on a loaded machine they stretch, the shares do not much.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from paper_suite import speaker_subset  # noqa: E402  (a sibling script: benchmarks/speed/ is on sys.path)

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
CLASSES = ["anger", "boredom", "fear", "joy", "sadness", "neutral"]

#: stage -> (file suffix, function name) whose cumulative time counts for it (they do not nest)
STAGES = {
    "opensmile": [("opensmile_svm.py", "smile_functionals")],
    "enhancement": [("interfaces.py", "enhance")],
    "mixing": [("mixing.py", "mix")],
    "audio_read": [("interfaces.py", "load")],
    "cache_read": [("cache.py", "load"), ("cache.py", "load_object")],
    "cache_write": [("cache.py", "store"), ("cache.py", "store_object")],
    "svm_fit": [("opensmile_svm.py", "fit")],
    "svm_predict": [("opensmile_svm.py", "predict")],
    "database": [("store.py", "record_cell"), ("store.py", "existing"), ("store.py", "start_run"),
                 ("store.py", "finish_run"), ("store.py", "__init__"), ("store.py", "delete_cells"),
                 ("store.py", "record_utterance_notes")],
    "audit": [("audit.py", "audit_all")],
}


def suite_config(protocol: str, snrs: list[float], root: str, noise: str):
    from ser_bench.config import RunConfig

    return RunConfig(protocol=protocol, datasets=["emodb"], ser_models=["svm-egemaps", "svm-compare"],
                     enhancers=["none", "rescnn"], noise_sources=["folder"], snrs=snrs, cv="loso",
                     options={"emodb": {"root": root, "classes": CLASSES}, "folder": {"root": noise}})


def stage_times(stats: pstats.Stats) -> dict[str, float]:
    out = {}
    for stage, targets in STAGES.items():
        tot = 0.0
        for (file, _line, func), (_cc, _nc, _tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
            if any(file.endswith(suffix) and func == name for suffix, name in targets):
                tot += ct
        out[stage] = round(tot, 2)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--snrs", type=float, nargs="+", default=[0.0])
    ap.add_argument("--root", default=str(DATA / "emodb"))
    ap.add_argument("--speakers", type=int, default=None,
                    help="only the first N speakers (a reduced variant: symbolic links in the work folder)")
    ap.add_argument("--noise", default=str(DATA / "noise"))
    ap.add_argument("--work", default=None, help="folder for the fresh cache and db (default: a temporary one)")
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    if not Path(a.root, "wav").is_dir():
        sys.exit(f"EMO-DB not found under {a.root}; pass --root")
    work = Path(a.work or tempfile.mkdtemp(prefix="bench-prof-"))
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    if a.speakers:
        a.root = str(speaker_subset(Path(a.root), a.speakers, work / "emodb"))
    load0 = os.getloadavg()
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    from ser_bench.db import Store
    from ser_bench.executors import InlineExecutor
    from ser_bench.runner import run

    t_import = time.perf_counter() - t0
    walls = {}
    try:
        store = Store(str(work / "r.db"))
        for protocol in ("matched", "mismatched"):
            t = time.perf_counter()
            s = run(suite_config(protocol, a.snrs, a.root, a.noise), store=store, executor=InlineExecutor(),
                    cache_dir=str(work / "cache"), progress=False)
            walls[protocol] = round(time.perf_counter() - t, 2)
            if s.n_failed:
                raise SystemExit(f"{protocol}: {s.n_failed} cells failed: {s.failures[:3]}")
    finally:
        prof.disable()
        wall = time.perf_counter() - t0
    stats = pstats.Stats(prof)
    stages = stage_times(stats)
    stages["imports_before_run"] = round(t_import, 2)
    stages["other"] = round(wall - sum(stages.values()), 2)
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(a.top)
    top = [line.strip() for line in buf.getvalue().splitlines() if line.strip()[:1].isdigit()][: a.top]
    report = {
        "job": f"EMO-DB 6 classes ({a.speakers or 10} speakers), LOSO, svm-egemaps + svm-compare, none + rescnn, "
               f"SNRs {a.snrs}, matched then mismatched, in one process (cProfile), fresh cache + db",
        "wall_s": round(wall, 2), "wall_by_protocol_s": walls, "stage_s": stages,
        "stage_share": {k: round(v / wall, 3) for k, v in stages.items()},
        "top_by_own_time": top, "loadavg_before": [round(x, 2) for x in load0],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()], "cores": os.cpu_count(),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if a.out:
        a.out.write_text(text)
    if not a.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
