"""openSMILE functionals: one reset instance per process (ser-bench) vs a fresh instance per signal
(``opensmile.Smile.process_signal``), on the same EMO-DB files, measured in one run.

Prints JSON: CPU seconds of each way per feature set, the ratio, and whether every value is
bit-identical.

    python benchmarks/speed/opensmile_reuse.py [--root ../shared/data/emodb] [--files 200]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=str(Path(__file__).resolve().parents[3] / "shared" / "data" / "emodb"))
    ap.add_argument("--files", type=int, default=200)
    a = ap.parse_args(argv)
    import numpy as np
    import opensmile
    import soundfile as sf

    from ser_bench_plugins.opensmile_svm import smile_functionals

    files = sorted(Path(a.root, "wav").glob("*.wav"))[: a.files]
    if not files:
        sys.exit(f"no EMO-DB files under {a.root}/wav; pass --root")
    sigs = [sf.read(f, dtype="float32")[0] for f in files]
    out: dict = {"files": len(sigs), "seconds_of_audio": round(sum(len(s) for s in sigs) / 16000, 1),
                 "load_average": [round(x, 2) for x in os.getloadavg()], "by_feature_set": {}}
    for fs in ("eGeMAPSv02", "ComParE_2016"):
        smile = opensmile.Smile(feature_set=getattr(opensmile.FeatureSet, fs),
                                feature_level=opensmile.FeatureLevel.Functionals)
        smile_functionals(sigs[0], fs)  # both ways warm (libraries loaded, first instance built)
        smile.process_signal(sigs[0], 16000)
        t = time.process_time()
        ref = [smile.process_signal(s, 16000).to_numpy()[0] for s in sigs]
        fresh = time.process_time() - t
        t = time.process_time()
        ours = [smile_functionals(s, fs) for s in sigs]
        reuse = time.process_time() - t
        same = all(np.array_equal(np.nan_to_num(r.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0), o)
                   for r, o in zip(ref, ours))
        out["by_feature_set"][fs] = {"process_signal_cpu_s": round(fresh, 2), "ser_bench_cpu_s": round(reuse, 2),
                                     "speedup": round(fresh / reuse, 2), "bit_identical": same}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
