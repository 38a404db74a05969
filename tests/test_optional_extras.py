"""README's test command installs only the [dev,quality] extras: tests that need another extra
must skip with a reason naming it, not fail. Checked by running them where the extra's modules
cannot be imported (and no ffmpeg is on PATH), as on a fresh machine."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: extra -> (modules it installs, test files that use them)
EXTRAS = {
    "enterface": (["imageio_ffmpeg"], ["tests/test_datasets_enterface.py"]),
    "codec": (["imageio_ffmpeg"], ["tests/test_corruptions_codec.py"]),
    "postgres": (["psycopg"], ["tests/test_registry_db.py"]),
    "dask": (["dask", "distributed"], ["tests/test_executors.py"]),  # ~1.5 min of process pools: slow
    # README's test command installs it; a developer's venv may not have it
    "ssl": (["transformers"], ["tests/test_ssl_probe.py"]),
}

BLOCK = """
import sys
class _Missing:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, _Missing())
import pytest
sys.exit(pytest.main({args!r}))
"""


@pytest.mark.parametrize("extra", [pytest.param(x, marks=pytest.mark.slow) if x == "dask" else x for x in sorted(EXTRAS)])
def test_tests_needing_an_extra_skip_without_it(extra, tmp_path):
    modules, files = EXTRAS[extra]
    args = ["-q", "-p", "no:cacheprovider", "-m", "not slow", "-rs", *[str(ROOT / f) for f in files]]
    env = dict(os.environ, PATH=str(tmp_path), PYTHONPATH=str(ROOT))  # no ffmpeg (or anything) on PATH
    env["BENCH_TEST_PG_URL"] = "postgresql+psycopg://u@127.0.0.1:9/bench"  # as if a server were there
    p = subprocess.run([sys.executable, "-c", BLOCK.format(blocked=set(modules), args=args)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
    skips = [line for line in p.stdout.splitlines() if line.startswith("SKIPPED")]
    assert skips and any(f"ser-bench[{extra}]" in line for line in skips), p.stdout[-3000:]
