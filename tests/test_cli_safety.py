"""The CLI never destroys what it did not create, and its errors are one line naming the fix."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from ser_bench.cli import cli
from ser_bench.db import Store

ROOT = Path(__file__).resolve().parents[1]


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def _stored_run(store: Store) -> int:
    rid = store.start_run(config_json="{}", config_hash="h", protocol="clean", name=None, code_version="t",
                          plugins={}, env={}, seed=0, snr_definition="s", n_cells=1)
    store.record_cell(rid, "k", dict(dataset="d", ser_model="m", enhancer="none", noise="-", protocol="clean",
                                     train_condition="clean", train_snr=None, test_condition="clean", test_snr=None,
                                     fold="f"), status="done", metrics={"uar": 0.5}, seed=7)
    store.finish_run(rid, "done", wall_s=1.5)
    return rid


# ----------------------------------------------------------------------------- bench report --out


def test_report_out_keeps_existing_files(tmp_path):
    _stored_run(Store())
    out = tmp_path / "sub"
    out.mkdir()
    (out / "x.txt").write_text("mine")
    (out / "index.html").write_text("old report")
    r = invoke("report", "--out", str(out))
    assert r.exit_code == 0, r.output
    assert (out / "x.txt").read_text() == "mine"
    assert "ser-bench leaderboard" in (out / "index.html").read_text()
    assert sorted(p.name for p in out.iterdir()) == ["index.html", "x.txt"]  # no temp file left behind


def test_report_out_dot_keeps_the_working_directory(tmp_path, monkeypatch):
    cwd = tmp_path / "checkout"
    (cwd / "harness").mkdir(parents=True)
    (cwd / "harness" / "code.py").write_text("x = 1\n")
    (cwd / "README.md").write_text("readme")
    monkeypatch.chdir(cwd)
    _stored_run(Store(str(cwd / "registry.db")))
    before = {p.relative_to(cwd) for p in cwd.rglob("*")}
    r = invoke("report", "--out", ".", "--db", str(cwd / "registry.db"))
    assert r.exit_code == 0, r.output
    after = {p.relative_to(cwd) for p in cwd.rglob("*")}
    assert before <= after and (cwd / "harness" / "code.py").read_text() == "x = 1\n"
    assert after - before == {Path("index.html")}
    assert Store(str(cwd / "registry.db")).count("results") == 1


# ----------------------------------------------------------------------------- --db postgresql+psycopg://


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _one_line_error(r) -> str:
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit), (r.exception, r.output)
    lines = r.output.strip().splitlines()
    assert len(lines) == 1, r.output
    return lines[0]


def test_postgres_without_the_driver_is_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # `import psycopg` now raises ModuleNotFoundError
    for args in (["runs", "list"], ["report"], ["run", "clean", "-q"]):
        line = _one_line_error(invoke(*args, "--db", "postgresql+psycopg://u@127.0.0.1/bench"))
        assert "psycopg is not installed" in line and "pip install 'ser-bench[postgres]'" in line


def test_postgres_unreachable_is_one_line_naming_server_and_url():
    pytest.importorskip("psycopg", reason="psycopg not installed (pip install 'ser-bench[postgres]')")
    port = _free_port()
    line = _one_line_error(invoke("runs", "list", "--db", f"postgresql+psycopg://u:secret@127.0.0.1:{port}/bench"))
    assert f"127.0.0.1:{port}" in line and "cannot connect" in line and "Connection refused" in line
    assert "check that the server is running" in line and "secret" not in line  # the password is never printed


# ----------------------------------------------------------------------------- --quality without the extra


@pytest.mark.parametrize("missing", ["pesq", "pystoi"])
def test_quality_without_the_extra_fails_before_any_work(monkeypatch, missing):
    monkeypatch.setitem(sys.modules, missing, None)  # as if `pip install 'ser-bench[quality]'` never ran
    r = invoke("run", "mismatched", "--quality", "--snr", "0", "-o", "synthetic.per_class=2", "-j", "1", "-q")
    line = _one_line_error(r)
    assert missing in line and "pip install 'ser-bench[quality]'" in line
    assert Store().count("runs") == 0 and not Path(os.environ["BENCH_CACHE"]).exists()  # nothing computed


# ----------------------------------------------------------------------------- bench runs show


def test_runs_show_prints_real_types():
    rid = _stored_run(Store())
    r = invoke("runs", "show", str(rid))
    assert r.exit_code == 0, r.output
    shown = json.loads(r.output[: r.output.index("\n}") + 2])
    assert shown["id"] == rid and shown["seed"] == 0 and shown["n_cells"] == 1 and shown["n_done"] == 1
    assert shown["wall_s"] == 1.5 and shown["error"] is None and shown["name"] is None
    assert shown["status"] == "done" and shown["config_json"] == {} and shown["plugins_json"] == {}
    assert isinstance(shown["created_at"], str) and shown["created_at"][:2] == "20"


# ----------------------------------------------------------------------------- SIGTERM / Ctrl-C


def _sigterm_once_under_way(args: list[str], tmp_path: Path) -> tuple[Path, int, str]:
    """Start ``bench ARGS`` in a subprocess, send SIGTERM once its first run is recorded, and
    return (database, exit status, stderr)."""
    import signal
    import time

    db = tmp_path / "r.db"
    env = dict(os.environ, PYTHONPATH=str(ROOT), BENCH_DB=str(db), BENCH_CACHE=str(tmp_path / "cache"))
    proc = subprocess.Popen([sys.executable, "-m", "ser_bench.cli", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:  # wait until the run is under way
            if db.exists() and Store(str(db)).count("runs") > 0:
                break
            time.sleep(0.2)
        time.sleep(0.5)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    return db, proc.returncode, err


@pytest.mark.parametrize("jobs", ["2"])  # the default executor: a process pool
def test_sigterm_mid_run_marks_the_run_interrupted(tmp_path, jobs):
    db, code, err = _sigterm_once_under_way(["run", "mismatched", "-o", "synthetic.per_class=2", "-j", jobs, "-q"],
                                            tmp_path)
    assert code == 130, err
    assert "interrupted" in err and "Traceback" not in err
    store = Store(str(db))
    run = store.runs_frame().iloc[0]
    assert run.status == "interrupted" and "SIGTERM" in run.error and run.finished_at is not None
    assert run.n_done < run.n_cells
    r = invoke("runs", "list", "--db", str(db))
    assert " interrupted " in r.output
    r = invoke("report", "--out", str(tmp_path / "rep"), "--db", str(db))
    html = (tmp_path / "rep" / "index.html").read_text()
    assert "was interrupted" in html and "<td class=\"label\">interrupted</td>" in html


def test_sigterm_mid_paper_marks_its_run_interrupted(tmp_path):
    """`bench paper` runs several experiments: a stop mid-way marks the one under way interrupted
    (not "running" forever) and exits 130 with one line, as `bench run` does."""
    import numpy as np
    import soundfile as sf

    from ser_bench_plugins.recola import write_synthetic_recola

    write_synthetic_recola(tmp_path / "recola", n_train=2, n_dev=1, n_test=1, seconds=8)
    (tmp_path / "noise").mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        sf.write(str(tmp_path / "noise" / f"n{i}.wav"), (0.1 * rng.standard_normal(16000)).astype(np.float32), 16000)
    db, code, err = _sigterm_once_under_way(
        ["paper", "--data-root", f"recola={tmp_path / 'recola'}", "--quick", "--enhancer", "wiener",
         "--noise-root", str(tmp_path / "noise"), "-j", "1", "-q", "--out", str(tmp_path / "rep")], tmp_path)
    assert code == 130, err
    assert "interrupted" in err and "Traceback" not in err
    runs = Store(str(db)).runs_frame()
    assert "running" not in set(runs.status) and "interrupted" in set(runs.status)


# ----------------------------------------------------------------------------- -q: one switch for every bar


def test_quiet_switch_silences_a_plugins_own_bar():
    pytest.importorskip("torch")
    from ser_bench.progress import switch
    from ser_bench_plugins.e2e.model import E2EArousalModel

    model = E2EArousalModel()  # progress=True: its own training bar
    before = dict(os.environ)
    with switch(False):  # what `bench run -q` (or a non-terminal stderr) sets for the whole run
        assert model._progress(3).disable
        assert os.environ["TQDM_DISABLE"] == "1"  # library bars in the run's worker processes
    assert dict(os.environ) == before
    with switch(True):
        assert not model._progress(3).disable
    assert E2EArousalModel(progress=False)._progress(3).disable


@pytest.mark.slow
def test_bench_run_quiet_prints_no_bar_of_the_end_to_end_model(tmp_path):
    pytest.importorskip("torch")
    env = dict(os.environ, PYTHONPATH=str(ROOT), BENCH_DB=str(tmp_path / "r.db"), BENCH_CACHE=str(tmp_path / "c"))
    env.pop("TQDM_DISABLE", None)
    cmd = [sys.executable, "-m", "ser_bench.cli", "run", "clean", "--ser-model", "e2e-cls", "-o", "e2e-cls.epochs=1",
           "-o", "e2e-cls.hidden_size=8", "-o", "e2e-cls.n_filters=10", "-o", "synthetic.per_class=1",
           "--cv", "group-kfold", "--cv-folds", "2", "-j", "1", "-q"]
    p = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    assert "2 computed" in p.stderr  # -q: messages on stderr, only the results table on stdout
    assert "e2e-cls fit" not in p.stderr and "%|" not in p.stderr, p.stderr[-2000:]


def test_sqlite_file_in_a_missing_folder_is_one_line(tmp_path):
    line = _one_line_error(invoke("runs", "list", "--db", str(tmp_path / "nowhere" / "r.db")))
    assert f"the folder {tmp_path / 'nowhere'} does not exist" in line
