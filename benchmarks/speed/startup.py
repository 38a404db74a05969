"""Start-up time of `bench` commands, each in fresh processes: prints JSON (target: under 1 s each).

    python benchmarks/speed/startup.py [REPEATS]

Each command runs REPEATS times (default 5) as a new Python process, exactly as the `bench`
console script starts it; the first run and the median wall time are reported, with the ratio
of the median to the 1 s target, the median CPU time (user + system; close to the wall time on
an idle machine, and much less disturbed by other load than the wall time), the heavy modules each command imported (there should be none), a
bare `python -c pass` for scale, and the load average (the machine may be shared).
"""
from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "bench --help": ["--help"],
    "bench plugins": ["plugins"],
    "bench plugins wiener": ["plugins", "wiener"],
    "bench docs": ["docs"],
}
HEAVY = ("torch", "scipy", "opensmile", "pandas", "sklearn", "sqlalchemy", "audformat")
TARGET_S = 1.0
# What the `bench` console script does, plus a report of the heavy modules left in sys.modules.
ENTRY = (
    "import sys, json, atexit\n"
    "atexit.register(lambda: print('HEAVY=' + json.dumps(sorted({m.split('.')[0] for m in sys.modules} & set(%r))),"
    " file=sys.stderr))\n"
    "from ser_bench.cli import cli\n"
    "sys.exit(cli(sys.argv[1:], prog_name='bench'))\n" % (HEAVY,)
)


def _child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run(args: list[str]) -> tuple[float, float, list[str]]:
    """Wall time, CPU time (user + system: what an idle machine's wall time would be, roughly) and heavy modules."""
    cpu, t = _child_cpu(), time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", ENTRY, *args], capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t, _child_cpu() - cpu
    if proc.returncode:  # e.g. a command an older version lacks: reported, not timed
        raise RuntimeError(proc.stderr.strip().splitlines()[-2 if len(proc.stderr.splitlines()) > 1 else -1])
    heavy = next((json.loads(line[6:]) for line in proc.stderr.splitlines() if line.startswith("HEAVY=")), [])
    return wall, cpu, heavy


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    load_before = os.getloadavg()[0]
    t = time.perf_counter()
    for _ in range(repeats):
        subprocess.run([sys.executable, "-c", "pass"], check=True)
    python_s = (time.perf_counter() - t) / repeats
    out = {}
    for label, args in COMMANDS.items():
        times, cpus, heavy = [], [], []
        for _ in range(repeats):
            try:
                wall, cpu, heavy = run(args)
            except RuntimeError as exc:
                out[label] = {"error": str(exc)}
                break
            times.append(wall)
            cpus.append(cpu)
        if not times:
            continue
        med = statistics.median(times)
        out[label] = {"first_s": round(times[0], 3), "median_s": round(med, 3), "min_s": round(min(times), 3),
                      "median_cpu_s": round(statistics.median(cpus), 3), "ratio_to_target": round(med / TARGET_S, 2),
                      "heavy_modules_imported": heavy}
    print(json.dumps({
        "target_s": TARGET_S, "repeats": repeats, "python_startup_s": round(python_s, 3), "commands": out,
        "all_under_target": all(v.get("median_s", 1e9) < TARGET_S for v in out.values()),
        "all_cpu_under_target": all(v.get("median_cpu_s", 1e9) < TARGET_S for v in out.values()),
        "load_1min_before": round(load_before, 2), "load_1min_after": round(os.getloadavg()[0], 2),
        "cores": os.cpu_count(), "python": sys.version.split()[0],
    }, indent=2))


if __name__ == "__main__":
    main()
