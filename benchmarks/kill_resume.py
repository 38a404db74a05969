"""Kill-and-resume check: SIGKILL `bench run` at random points, run it again, compare with an
uninterrupted run.

For each trial, a fresh database and cache; `bench run ...` is started and SIGKILLed (the driver
only: its pool workers must exit by themselves), once or more, then run to completion. The final
database must hold exactly the rows of an uninterrupted reference run (timings, ids, timestamps
aside): no duplicate, no missing and no half-written cell (every done cell has all its metrics, no
failed cell), the run row finished; and the cache exactly the reference's entries, byte for byte,
every one loadable.

Two kinds of kill point: *time* kills after a random delay, stratified over the reference run's
duration (start-up, migrations, the audit, mixing/enhancing/featurizing); *cell* kills as soon
as a random number of cells is stored (while results are being written), since under a varying
machine load a time alone may never land there.

    python benchmarks/kill_resume.py                      # 5 trials: a time kill, a cell kill, resume
    python benchmarks/kill_resume.py --trials 8 --time-kills 2 --cell-kills 0 -j 2 -- mismatched --snr 0

Prints one JSON object (also written to --out if given); exit status 0 when every trial matched.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DEFAULT_ARGS = ["mismatched", "--snr", "0", "--snr", "10", "-o", "synthetic.per_class=3"]
#: Columns that legitimately differ between runs (timings, ids, timestamps, machine details, and
#: the code version: a commit may land between two runs of a working tree).
VOLATILE = {
    "runs": {"id", "created_at", "finished_at", "wall_s", "env_json", "code_version", "peak_rss_mb",
             "workers_peak_rss_mb"},
    "cells": {"id", "run_id", "created_at", "prep_s", "fit_s", "predict_s"},
    "utterance_notes": {"id", "run_id", "created_at"},
}


def bench_cmd(args: list[str], db: Path, cache: Path, jobs: int | None) -> list[str]:
    cmd = [sys.executable, "-c", "from ser_bench.cli import cli; cli()", "run", *args, "-q", "--db", str(db),
           "--cache", str(cache)]
    if jobs:
        cmd += ["-j", str(jobs)]
    return cmd


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    # zombies of the group count as gone
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parts = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(parts[2]) == pgid and parts[0] != "Z":
            return True
    return False


def stored_cells(db: Path) -> int:
    """Cells stored so far (0 before the database or its tables exist)."""
    if not db.exists():
        return 0
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            return int(con.execute("SELECT COUNT(*) FROM cells").fetchone()[0])
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def run_bench(cmd: list[str], env: dict[str, str], kill_after: float | None = None,
              timeout: float = 1800, kill_when=None) -> dict[str, Any]:  # noqa: ANN001
    """Run ``cmd`` in its own session; SIGKILL its driver after ``kill_after`` seconds, or as soon
    as ``kill_when()`` is true (polled every 50 ms).

    Returns {"rc", "wall_s", "killed", "orphans_s"}: ``orphans_s`` is how long processes of the
    run outlived the SIGKILLed driver (None if they were still there after 30 s and had to be
    killed; the check then fails).
    """
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    out: dict[str, Any] = {"killed": False, "orphans_s": 0.0}
    try:
        try:
            if kill_when is not None:
                while proc.poll() is None and not kill_when():
                    if time.perf_counter() - t0 > timeout:
                        raise subprocess.TimeoutExpired(cmd, timeout)
                    time.sleep(0.05)
                if proc.poll() is None:
                    raise subprocess.TimeoutExpired(cmd, 0)
                proc.wait()
            else:
                proc.wait(timeout=kill_after if kill_after is not None else timeout)
            self_killed = proc.returncode == -signal.SIGKILL  # the driver killed itself at a fault point
            if self_killed:
                raise subprocess.TimeoutExpired(cmd, 0)
        except subprocess.TimeoutExpired:
            if kill_after is None and kill_when is None and proc.returncode != -signal.SIGKILL:
                raise
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)  # the driver only, like the OOM killer or `kill -9 PID`
            proc.wait()
            out["killed"] = True
            t_kill = time.perf_counter()
            while _group_alive(proc.pid) and time.perf_counter() - t_kill < 30:
                time.sleep(0.1)
            out["orphans_s"] = round(time.perf_counter() - t_kill, 2) if not _group_alive(proc.pid) else None
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # only processes this run started
        except ProcessLookupError:
            pass
    out["rc"] = proc.returncode
    out["wall_s"] = round(time.perf_counter() - t0, 2)
    out["output"] = (proc.stdout.read() if proc.stdout else "")[-2000:]
    return out


def dump_db(path: Path) -> dict[str, list]:
    """Every table as a sorted list of rows, without the volatile columns; runs referenced by hash."""
    con = sqlite3.connect(str(path))
    try:
        con.row_factory = sqlite3.Row
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        run_hash = {r["id"]: r["config_hash"] for r in con.execute("SELECT id, config_hash FROM runs")}
        cell_key = {r["id"]: r["cell_key"] for r in con.execute("SELECT id, cell_key FROM cells")}
        out: dict[str, list] = {}
        for t in tables:
            if t.startswith("sqlite_"):
                continue
            rows = []
            for r in con.execute(f'SELECT * FROM "{t}"'):  # noqa: S608 - table names from sqlite_master
                d = dict(r)
                if t == "schema_migrations":
                    d.pop("applied_at", None)
                if t == "results":
                    d = {"cell_key": cell_key.get(d["cell_id"]), "metric": d["metric"], "value": d["value"]}
                for c in VOLATILE.get(t, ()):
                    if c == "run_id" and "run_id" in d:
                        d["run"] = run_hash.get(d["run_id"])
                    d.pop(c, None)
                rows.append(json.dumps(d, sort_keys=True, default=str))
            out[t] = sorted(rows)
        return out
    finally:
        con.close()


def db_problems(path: Path) -> list[str]:
    """Integrity checks that hold for any finished database."""
    con = sqlite3.connect(str(path))
    try:
        probs = []
        dup = con.execute("SELECT cell_key, COUNT(*) FROM cells GROUP BY cell_key HAVING COUNT(*) > 1").fetchall()
        if dup:
            probs.append(f"{len(dup)} duplicated cell keys")
        metric_sets = con.execute(
            "SELECT c.id, c.status, COUNT(r.id) FROM cells c LEFT JOIN results r ON r.cell_id = c.id GROUP BY c.id"
        ).fetchall()
        counts = {n for _, st, n in metric_sets if st == "done"}
        if len(counts) > 1 or 0 in counts:
            probs.append(f"done cells with differing numbers of metrics: {sorted(counts)}")
        if any(st != "done" for _, st, _ in metric_sets):
            probs.append("failed cells: " + ", ".join(sorted({st for _, st, _ in metric_sets if st != "done"})))
        orphans = con.execute("SELECT COUNT(*) FROM results WHERE cell_id NOT IN (SELECT id FROM cells)").fetchone()[0]
        if orphans:
            probs.append(f"{orphans} results without a cell")
        runs = con.execute("SELECT status, n_cells, n_done FROM runs").fetchall()
        n_done = con.execute("SELECT COUNT(*) FROM cells WHERE status = 'done'").fetchone()[0]
        if len(runs) != 1 or runs[0][0] != "done" or not runs[0][1] == runs[0][2] == n_done:
            probs.append(f"runs table (status, n_cells, n_done): {runs}; done cells stored: {n_done}")
        return probs
    finally:
        con.close()


def cache_state(root: Path) -> tuple[dict[str, bytes], list[str], int]:
    """(entry -> bytes, unloadable entries, leftover temporary files)."""
    import numpy as np

    entries, bad = {}, []
    tmp = 0
    for p in sorted(root.rglob("*")):
        if not p.is_file():
            continue
        if p.suffix != ".npy":
            tmp += 1
            continue
        rel = str(p.relative_to(root))
        try:
            np.load(p, allow_pickle=False)
        except Exception:  # noqa: BLE001 - any failure to load is a corrupt entry
            bad.append(rel)
        entries[rel] = p.read_bytes()
    return entries, bad, tmp


def compare(ref_db: Path, ref_cache: Path, db: Path, cache: Path) -> dict[str, Any]:
    a, b = dump_db(ref_db), dump_db(db)
    diff = {}
    for t in sorted(set(a) | set(b)):
        ra, rb = a.get(t, []), b.get(t, [])
        if ra != rb:
            sa, sb = set(ra), set(rb)
            diff[t] = {"missing": len(sa - sb), "extra": len(sb - sa), "rows": [len(ra), len(rb)],
                       "example": sorted(sa ^ sb)[:4]}
    ce_ref, _, _ = cache_state(ref_cache)
    ce, bad, tmp = cache_state(cache)
    cache_diff = sorted(k for k in set(ce_ref) | set(ce) if ce_ref.get(k) != ce.get(k))
    return {
        "db_equal": not diff, "db_diff": diff, "db_problems": db_problems(db),
        "cache_equal": not cache_diff and not bad, "cache_entries": len(ce), "cache_diff": cache_diff[:5],
        "corrupt_cache_entries": bad, "leftover_tmp_files": tmp,
        "rows": {t: len(v) for t, v in b.items()},
    }


def kill_resume(bench_args: list[str] | None = None, *, trials: int = 5, time_kills: int = 1, cell_kills: int = 1,
                jobs: int | None = None, seed: int = 0, workdir: Path | None = None, keep: bool = False,
                log=lambda s: print(s, file=sys.stderr)) -> dict[str, Any]:  # noqa: ANN001
    """Run the reference, then ``trials`` trials: ``time_kills`` SIGKILLs at random times, then
    ``cell_kills`` SIGKILLs each when a random further number of cells is stored, then a final run."""
    bench_args = list(bench_args or DEFAULT_ARGS)
    rng = random.Random(seed)
    work = Path(workdir or tempfile.mkdtemp(prefix="kill-resume-"))
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.pop("BENCH_DB", None)
    env.pop("BENCH_CACHE", None)
    env.setdefault("PYTHONPATH", str(Path(__file__).resolve().parents[1]))
    report: dict[str, Any] = {"bench_args": bench_args, "jobs": jobs, "seed": seed, "trials_n": trials,
                              "time_kills": time_kills, "cell_kills": cell_kills,
                              "loadavg_start": [round(x, 2) for x in os.getloadavg()]}
    try:
        ref_db, ref_cache = work / "ref.db", work / "ref-cache"
        ref = run_bench(bench_cmd(bench_args, ref_db, ref_cache, jobs), env)
        if ref["rc"] != 0:
            raise RuntimeError(f"the reference run failed (rc {ref['rc']}):\n{ref['output']}")
        t_ref = ref["wall_s"]
        report["reference_s"] = t_ref
        report["reference_problems"] = db_problems(ref_db)
        n_cells = stored_cells(ref_db)
        report["reference_cells"] = n_cells
        log(f"reference: {t_ref:.1f} s, rows {compare(ref_db, ref_cache, ref_db, ref_cache)['rows']}")
        n_points = trials * time_kills
        # stratified over the first 70 % of the reference run, so a time kill leaves cells for the cell kills
        points = [0.7 * t_ref * (i + rng.random()) / n_points for i in range(n_points)]
        rng.shuffle(points)
        results = []
        for k in range(trials):
            db, cache = work / f"t{k}.db", work / f"t{k}-cache"
            trial: dict[str, Any] = {"kills": []}
            plan = [("time", t) for t in sorted(points[k * time_kills : (k + 1) * time_kills])]
            plan += [("cells", None)] * cell_kills
            for how, t_kill in plan:
                cmd = bench_cmd(bench_args, db, cache, jobs)
                if how == "time":
                    r = run_bench(cmd, env, kill_after=t_kill)
                    state: dict[str, Any] = {"at_s": round(t_kill, 2)}
                else:  # as soon as `target` cells are stored: a random point while results are written
                    have = stored_cells(db)
                    if have >= n_cells - 1:  # (an earlier run got this far: nothing left to hit)
                        trial["kills"].append({"at_cells": None, "killed": False, "orphans_s": 0.0,
                                               "cells_stored": have, "note": "all cells already stored"})
                        continue
                    target = rng.randint(have + 1, n_cells - 1)
                    # exact: the driver SIGKILLs itself right after committing its (target - have)-th cell
                    r = run_bench(cmd, {**env, "BENCH_FAULT_KILL_AFTER_CELLS": str(target - have)})
                    state = {"at_cells": target}
                state.update(killed=r["killed"], orphans_s=r["orphans_s"], cells_stored=stored_cells(db),
                             cache_files=sum(1 for _ in cache.rglob("*.npy")) if cache.exists() else 0)
                trial["kills"].append(state)
            final = run_bench(bench_cmd(bench_args, db, cache, jobs), env)
            trial["resume_rc"], trial["resume_s"] = final["rc"], final["wall_s"]
            if final["rc"] != 0:
                trial["resume_output"] = final["output"]
            trial.update(compare(ref_db, ref_cache, db, cache))
            trial["ok"] = bool(final["rc"] == 0 and trial["db_equal"] and not trial["db_problems"]
                               and trial["cache_equal"] and all(s["orphans_s"] is not None for s in trial["kills"]))
            log(f"trial {k}: kills {trial['kills']} -> resume {trial['resume_s']} s, ok={trial['ok']}"
                + ("" if trial["ok"] else f" {trial['db_diff']} {trial['db_problems']} {trial['cache_diff']}"))
            results.append(trial)
            if not keep:
                db.unlink(missing_ok=True)
                for suffix in ("-wal", "-shm"):
                    Path(str(db) + suffix).unlink(missing_ok=True)
                shutil.rmtree(cache, ignore_errors=True)
        report["trials"] = results
        report["all_ok"] = all(t["ok"] for t in results) and not report["reference_problems"]
        report["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        return report
    finally:
        if not keep and workdir is None:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=5, help="trials (each with its own fresh database and cache)")
    ap.add_argument("--time-kills", type=int, default=1, help="SIGKILLs at random times per trial")
    ap.add_argument("--cell-kills", type=int, default=1,
                    help="SIGKILLs per trial when a random number of cells is stored (after the time kills)")
    ap.add_argument("--jobs", "-j", type=int, default=None, help="bench run -j (default: bench's default)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random kill points")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the trial databases and caches")
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    ap.add_argument("bench_args", nargs="*", help=f"bench run arguments after `--` (default: {' '.join(DEFAULT_ARGS)})")
    a = ap.parse_args(argv)
    rep = kill_resume(a.bench_args or None, trials=a.trials, time_kills=a.time_kills, cell_kills=a.cell_kills,
                      jobs=a.jobs, seed=a.seed, workdir=a.workdir, keep=a.keep)
    text = json.dumps(rep, indent=2, default=str)
    print(text)
    if a.out:
        a.out.write_text(text)
    return 0 if rep["all_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
