"""Files ser-bench writes for the user get the mode a normally created file gets (0666 minus the
umask), even those written atomically through a temporary file: the report, cache entries, bench
enhance outputs. A web server or a colleague on a shared machine can read them."""
from __future__ import annotations

import contextlib
import os
import stat
import sys
import threading

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from ser_bench.cache import Cache
from ser_bench.cli import cli
from ser_bench.db import Store
from ser_bench.files import as_created, atomic_write, created_mode, umask
from ser_bench.report.build import build_report

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")


@contextlib.contextmanager
def the_umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002])
def test_umask_is_read_without_changing_it(mask):
    with the_umask(mask):
        assert umask() == mask and created_mode() == 0o666 & ~mask
        assert umask() == mask  # still in place after reading it


def test_report_is_0644_under_umask_022(tmp_path):
    with the_umask(0o022):
        path = build_report(Store(f"sqlite:///{tmp_path / 'r.db'}"), tmp_path / "reports")
    assert path.name == "index.html" and mode(path) == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["index.html"]  # no temporary file left behind


@pytest.mark.parametrize("mask", [0o027, 0o002])
def test_report_follows_any_umask(tmp_path, mask):
    with the_umask(mask):
        path = build_report(Store(f"sqlite:///{tmp_path / 'r.db'}"), tmp_path / "reports")
        plain = tmp_path / "plain.txt"
        plain.write_text("x")  # a normally created file, for comparison
    assert mode(path) == mode(plain) == 0o666 & ~mask


def test_the_results_database_gets_the_normal_mode(tmp_path):
    with the_umask(0o002):  # a group-shared setup: SQLite alone would make it 0644
        store = Store(str(tmp_path / "r.db"))
        store.start_run(config_json="{}", config_hash="h", protocol="clean", name=None, code_version="t", plugins={},
                        env={}, seed=0, snr_definition="s", n_cells=0)
    assert mode(tmp_path / "r.db") == 0o664 and store.count("runs") == 1
    assert {mode(p) for p in tmp_path.glob("r.db-*")} <= {0o664}  # the WAL files alike


def test_cache_entries_get_the_normal_mode(tmp_path):
    with the_umask(0o022):
        cache = Cache(tmp_path / "cache")
        cache.store("features", "ab" * 16, np.arange(4.0))
        cache.store_object("fit", "cd" * 16, {"w": 1})
    files = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert len(files) == 2 and {mode(p) for p in files} == {0o644}
    assert not [p for p in files if p.suffix == ".tmp"]


def test_bench_enhance_outputs_get_the_normal_mode(tmp_path):
    src = tmp_path / "in.wav"
    t = np.arange(8000) / 16000
    sf.write(str(src), (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), 16000)
    with the_umask(0o027):
        res = CliRunner().invoke(cli, ["enhance", "--enhancer", "wiener", str(src), "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert mode(tmp_path / "out" / "in.wav") == 0o640


def test_atomic_write_is_whole_or_nothing(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with the_umask(0o022), pytest.raises(RuntimeError), atomic_write(target, "w", encoding="utf-8") as fh:
        fh.write("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]
    with the_umask(0o077):
        with atomic_write(target, "wb") as fh:
            fh.write(b"new")
    assert target.read_bytes() == b"new" and mode(target) == 0o600  # a private umask stays private


def test_as_created_on_a_path_and_from_threads(tmp_path):
    p = tmp_path / "x"
    p.write_text("x")
    os.chmod(p, 0o600)
    with the_umask(0o022):
        seen = []
        threads = [threading.Thread(target=lambda: seen.append(umask())) for _ in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        as_created(p)
        assert seen == [0o022] * 8 and umask() == 0o022
    assert mode(p) == 0o644
