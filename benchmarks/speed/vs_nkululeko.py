"""The peer comparison: EMO-DB, 6 classes, eGeMAPS (or ComParE) + SVM, leave-one-speaker-out.

nkululeko on the same shared EMO-DB on 2 cores: UAR 66.3 (ComParE 75.1), 72 s cold, 16.5 s warm
("warm" = features cached, models refitted). We run the same job as `bench run clean`:

- cold: fresh cache and database (features extracted, 10 LOSO folds fitted);
- warm: the cache kept, a fresh database (features read from the cache, every fold refitted).

    python benchmarks/speed/vs_nkululeko.py [--root ../shared/data/emodb] [--ser-model svm-egemaps] [-j N]

Prints JSON: timings, UAR (mean over folds and pooled over all test utterances), and the
speed ratios against nkululeko's figures.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NKULULEKO = {"svm-egemaps": {"uar": 66.3}, "svm-compare": {"uar": 75.1}, "cold_s": 72.0, "warm_s": 16.5}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default=str(Path(__file__).resolve().parents[3] / "shared" / "data" / "emodb"))
    ap.add_argument("--ser-model", default="svm-egemaps")
    ap.add_argument("-j", "--jobs", type=int, default=None)
    a = ap.parse_args()
    if not Path(a.root, "wav").is_dir():
        sys.exit(f"EMO-DB not found under {a.root} (expected {a.root}/wav/*.wav); pass --root")
    with tempfile.TemporaryDirectory() as tmp:
        cache = os.path.join(tmp, "cache")
        figures = {}
        for phase in ("cold", "warm"):
            db = os.path.join(tmp, f"{phase}.db")
            cmd = [sys.executable, "-m", "harness.cli", "run", "clean", "--dataset", "emodb", "--data-root",
                   f"emodb={a.root}", "--ser-model", a.ser_model, "--db", db, "--cache", cache, "-q"]
            if a.jobs:
                cmd += ["-j", str(a.jobs)]
            t = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            figures[f"{phase}_s"] = round(time.perf_counter() - t, 2)
            figures[f"{phase}_db"] = db
        from harness.db import Store
        from harness.metrics import uar

        store = Store(figures.pop("warm_db"))
        figures.pop("cold_db")
        df = store.results_frame()
        cells = store.cells_frame()
        pooled_t, pooled_p = [], []
        for pj in cells.predictions_json:
            for _, t, p in json.loads(pj):
                pooled_t.append(t)
                pooled_p.append(p)
        out = {
            "job": f"emodb 6-class, {a.ser_model}, LOSO (10 folds), cores={os.cpu_count()}",
            **figures,
            "uar_mean_over_folds": round(100 * df[df.metric == "uar"].value.mean(), 1),
            "uar_pooled": round(100 * uar(pooled_t, pooled_p), 1),
            "nkululeko": {"uar": NKULULEKO.get(a.ser_model, {}).get("uar"), "cold_s": 72.0, "warm_s": 16.5},
            "speedup_vs_nkululeko_cold": round(NKULULEKO["cold_s"] / figures["cold_s"], 2),
            "speedup_vs_nkululeko_warm": round(NKULULEKO["warm_s"] / figures["warm_s"], 2),
            "load_1min": os.getloadavg()[0],
        }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
