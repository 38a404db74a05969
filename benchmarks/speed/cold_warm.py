"""Cold vs warm `bench run` (cache + resume): prints JSON with both timings and their ratio.

    python benchmarks/speed/cold_warm.py [PROTOCOL] [extra bench-run args...]

Runs in a fresh temporary folder (its own registry.db and cache), so nothing is reused cold.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time


def timed(cmd: list[str], cwd: str) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    protocol = sys.argv[1] if len(sys.argv) > 1 else "mismatched"
    extra = sys.argv[2:]
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, BENCH_DB=os.path.join(tmp, "registry.db"), BENCH_CACHE=os.path.join(tmp, "cache"))
        os.environ.update(env)
        cmd = [sys.executable, "-m", "ser_bench.cli", "run", protocol, "-q", *extra]
        cold = timed(cmd, tmp)
        warm = timed(cmd, tmp)
        from ser_bench.db import Store

        rows = Store(env["BENCH_DB"]).count("results")
        warm2 = timed(cmd, tmp)
        rows2 = Store(env["BENCH_DB"]).count("results")
    print(json.dumps({
        "protocol": protocol, "args": extra, "cores": os.cpu_count(),
        "cold_s": round(cold, 2), "warm_s": round(min(warm, warm2), 2),
        "speedup_warm_vs_cold": round(cold / min(warm, warm2), 1),
        "result_rows": rows, "rows_added_by_rerun": rows2 - rows,
        "load_1min": os.getloadavg()[0],
    }, indent=2))


if __name__ == "__main__":
    main()
