"""Two `bench run` processes on one SQLite database (and one cache) at once: both finish, nothing
is duplicated, and the result equals a single run's."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["mismatched", "--snr", "0", "-o", "synthetic.per_class=1", "-o", 'synthetic.speakers=["f1","m1","f2"]']


def _kill_resume():
    spec = importlib.util.spec_from_file_location("kill_resume", ROOT / "benchmarks" / "kill_resume.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _bench(args: list[str], db: Path, cache: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("BENCH_DB", "BENCH_CACHE")}
    cmd = [sys.executable, "-c", "from ser_bench.cli import cli; cli()", "run", *args, "-q", "-j", "1",
           "--db", str(db), "--cache", str(cache)]
    return subprocess.Popen(cmd, env=env, cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_two_bench_runs_on_one_database_at_once(tmp_path):
    kr = _kill_resume()
    db, cache = tmp_path / "shared.db", tmp_path / "cache"
    procs = [_bench(ARGS, db, cache), _bench(ARGS, db, cache)]
    t0 = time.time()
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert time.time() - t0 < 600
    # both report the same run; between them every cell was computed or found stored
    for out in outs:
        assert "run 1: 9 cells" in out, out
    assert not kr.db_problems(db)  # no duplicate, every done cell has all metrics, one finished run row
    rows = kr.dump_db(db)
    assert len(rows["runs"]) == 1 and len(rows["cells"]) == 9 and len(rows["results"]) == 18
    # ... and it is exactly what one process alone stores
    ref_db, ref_cache = tmp_path / "ref.db", tmp_path / "ref-cache"
    ref = _bench(ARGS, ref_db, ref_cache)
    out = ref.communicate(timeout=600)[0]
    assert ref.returncode == 0, out
    cmp = kr.compare(ref_db, ref_cache, db, cache)
    cmp = kr.compare(ref_db, ref_cache, db, cache)
    assert cmp["db_equal"], cmp["db_diff"]
    assert cmp["cache_equal"] and not cmp["corrupt_cache_entries"]
