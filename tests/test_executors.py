"""Executors: in-process, local process pool and Dask; dying workers; determinism across executors.

Job functions and plugins live at module level so that spawned workers can import them (pytest
puts tests/ on sys.path, and spawn hands sys.path to the children).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from ser_bench import hookimpl
from ser_bench.config import RunConfig
from ser_bench.db import Store
from ser_bench.errors import ConfigError
from ser_bench.executors import (
    DaskExecutor, InlineExecutor, PoolExecutor, WorkerLostError, make_executor, usable_cores,
)
from ser_bench.runner import run
from ser_bench.testing import CentroidSER

from executor_jobs import die_once, poison, settings, sleepy, square

try:
    import distributed  # noqa: F401

    HAVE_DASK = True
except ImportError:
    HAVE_DASK = False
needs_dask = pytest.mark.skipif(not HAVE_DASK, reason="dask.distributed not installed (pip install 'ser-bench[dask]')")


# ----------------------------------------------------------------------------- unit tests


def test_make_executor_choices_and_errors():
    assert isinstance(make_executor("inline"), InlineExecutor)
    assert isinstance(make_executor("process", 1), InlineExecutor)  # -j 1 = in-process
    ex = make_executor("process", 3)
    assert isinstance(ex, PoolExecutor) and ex.workers == 3
    assert make_executor("process").workers == usable_cores()
    with pytest.raises(ConfigError, match="unknown executor 'ray'; choose one of process, inline, dask"):
        make_executor("ray")
    with pytest.raises(ConfigError, match="needs --executor dask"):
        make_executor("process", 2, scheduler="tcp://127.0.0.1:8786")
    with pytest.raises(ConfigError, match="at least 1, not 0"):
        make_executor("process", 0)


def test_pool_streams_every_result_once_from_single_threaded_workers():
    ex = PoolExecutor(2)
    try:
        out = list(ex.map_unordered(settings, range(12)))
    finally:
        ex.close()
    assert sorted(job for job, _ in out) == list(range(12))
    assert all(r["x"] == job * job for job, r in out)
    assert all(r["omp"] == "1" and r["torch"] == 1 for _, r in out)  # one BLAS/torch thread per worker
    assert {r["pid"] for _, r in out} - {os.getpid()}  # ran in other processes


def test_pool_retries_the_job_of_a_dead_worker(tmp_path):
    ex = PoolExecutor(2)
    try:
        out = dict(ex.map_unordered(die_once, [(str(tmp_path / "m"), i) for i in range(6)]))
    finally:
        ex.close()
    assert (tmp_path / "m").exists()  # the worker did die
    assert ex.restarts == 1
    assert sorted(out.values()) == [0, 10, 20, 30, 40, 50]


def test_pool_a_job_that_always_kills_its_worker_is_lost_alone():
    ex = PoolExecutor(2)
    try:
        out = dict(ex.map_unordered(poison, range(6), lost=lambda job, msg: f"lost: {msg}"))
    finally:
        ex.close()
    assert out.pop(2).startswith("lost: the worker process died 2 times while running this job, the last time running it alone")
    assert out == {0: 0, 1: 1, 3: 3, 4: 4, 5: 5}  # bystanders of the crash were retried and succeeded
    ex = PoolExecutor(2)
    try:
        with pytest.raises(WorkerLostError, match="died 2 times while running this job, the last time running it alone"):
            list(ex.map_unordered(poison, range(4)))
    finally:
        ex.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead too
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_pool_workers_exit_when_the_driver_is_sigkilled(tmp_path):
    pids = tmp_path / "pids"
    driver = textwrap.dedent(f"""
        import os, sys, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from ser_bench.executors import PoolExecutor
        import executor_jobs as J
        if __name__ == "__main__":
            ex = PoolExecutor(2)
            for _ in ex.map_unordered(J.write_pid_and_sleep, [{str(pids)!r}] * 2):
                pass
    """)
    proc = subprocess.Popen([sys.executable, "-c", driver], start_new_session=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and (not pids.exists() or len(pids.read_text().split()) < 2):
            time.sleep(0.2)
        workers = [int(p) for p in pids.read_text().split()]
        assert len(workers) == 2 and all(_alive(p) for p in workers)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        deadline = time.time() + 15
        while time.time() < deadline and any(_alive(p) for p in workers):
            time.sleep(0.2)
        assert not any(_alive(p) for p in workers), "pool workers outlived their SIGKILLed driver"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# ----------------------------------------------------------------------------- dask


@needs_dask
def test_dask_unreachable_scheduler_is_a_clear_error():
    ex = DaskExecutor(scheduler="tcp://127.0.0.1:9", connect_timeout=1)
    with pytest.raises(ConfigError, match=r"cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'.*dask scheduler"):
        list(ex.map_unordered(square, [1]))
    ex.close()


@needs_dask
def test_dask_local_cluster_maps_and_a_killer_job_is_lost_alone():
    ex = DaskExecutor(2)
    try:
        assert sorted(ex.map_unordered(square, range(8))) == [(i, i * i) for i in range(8)]
        out = dict(ex.map_unordered(poison, range(4), lost=lambda job, msg: "lost"))
        assert out == {0: 0, 1: 1, 2: "lost", 3: 3}
        assert ex.workers == 2
    finally:
        ex.close()


# ----------------------------------------------------------------------------- the runner on each executor


class CrashSER(CentroidSER):
    """Kills its worker process when fitted without speaker s1 (the LOSO fold of s1)."""

    name = "crash"

    def fit(self, train, valid=None):
        if "s1" not in set(train.groups) and os.environ.get("BENCH_WORKER"):
            os._exit(11)
        if "s1" not in set(train.groups):
            raise RuntimeError("would crash the worker here")
        return super().fit(train, valid)


class RaiseSER(CentroidSER):
    name = "raiser"

    def fit(self, train, valid=None):
        if "s0" not in set(train.groups):
            raise ValueError("raiser: no s0 in training")
        return super().fit(train, valid)


class ExtraPlugins:
    __name__ = "test_executors.extra"

    @hookimpl
    def register_ser_models(self, register):
        register("crash", CrashSER)
        register("raiser", RaiseSER)


EXTRA = ["ser_bench.testing:testing_plugin", "test_executors:ExtraPlugins"]


def _config(**kw) -> RunConfig:
    base = dict(protocol="mismatched", datasets=["tones"], ser_models=["centroid"], enhancers=["none", "wiener"],
                noise_sources=["fake-noise"], snrs=[0.0, 10.0], options={"tones": {"per_class": 2}})
    base.update(kw)
    return RunConfig(**base)


def _numbers(store: Store) -> dict:
    df = store.results_frame()
    return {(k, m): v for k, m, v in zip(df.cell_key, df.metric, df.value)}


def test_same_seed_same_numbers_on_every_executor(tmp_path):
    """Inline, a 2-process pool (and Dask, if installed): identical numbers, each from a cold cache."""
    cfg = _config(seed=7)
    kinds = [("inline", None), ("process", 2)] + ([("dask", 2)] if HAVE_DASK else [])
    got = {}
    for kind, jobs in kinds:
        store = Store(str(tmp_path / f"{kind}.db"))
        s = run(cfg, store=store, executor=kind, jobs=jobs, extra_plugins=EXTRA, progress=False,
                cache_dir=str(tmp_path / f"cache-{kind}"))
        assert (s.n_cells, s.n_done, s.n_failed) == (15, 15, 0), kind
        got[kind] = _numbers(store)
    ref = got.pop("inline")
    assert len(ref) == 30  # 15 cells x (uar, accuracy)
    for kind, nums in got.items():
        assert nums == ref, f"{kind} differs from inline"
    # another seed changes the mixtures and so the keys (nothing reused by mistake)
    other = Store(str(tmp_path / "seed8.db"))
    run(_config(seed=8), store=other, executor="inline", extra_plugins=EXTRA, progress=False)
    assert set(_numbers(other)).isdisjoint(ref)


def test_a_cell_that_raises_or_kills_its_worker_fails_alone(tmp_path):
    """On a 2-process pool: `raiser` raises in one fold, `crash` kills its worker in another."""
    store = Store(str(tmp_path / "r.db"))
    cfg = _config(protocol="clean", ser_models=["centroid", "crash", "raiser"])
    s = run(cfg, store=store, executor="process", jobs=2, extra_plugins=EXTRA, progress=False)
    assert (s.n_cells, s.n_done, s.n_failed) == (9, 7, 2)
    cells = store.cells_frame().set_index(["ser_model", "fold"])
    failed = cells[cells.status == "failed"]
    assert sorted(failed.index) == [("crash", "spk:s1"), ("raiser", "spk:s0")]
    crash, raiser = failed.loc[("crash", "spk:s1")], failed.loc[("raiser", "spk:s0")]
    assert "worker process died 2 times" in crash.error and "-j 1" in crash.error
    assert raiser.error == "ValueError: raiser: no s0 in training"
    assert 'raise ValueError("raiser: no s0 in training")' in raiser.traceback  # the plugin's own traceback
    assert store.runs_frame().status.tolist() == ["failed"]
    assert store.count("results") == 7 * 2  # the other cells' results are all there


def test_numbers_do_not_depend_on_the_cache_being_warm(tmp_path):
    cfg = _config(protocol="matched", snrs=[5.0])
    a, b = Store(str(tmp_path / "a.db")), Store(str(tmp_path / "b.db"))
    run(cfg, store=a, executor="inline", extra_plugins=EXTRA, progress=False, cache_dir=str(tmp_path / "c"))
    run(cfg, store=b, executor="inline", extra_plugins=EXTRA, progress=False, cache_dir=str(tmp_path / "c"))
    assert _numbers(a) == _numbers(b) and len(_numbers(a)) == 18
    feats = list((tmp_path / "c" / "features").rglob("*.npy"))
    assert len(feats) == 12 * 3  # 12 utterances x (clean, noisy, enhanced), computed once
    assert all(np.isfinite(np.load(f)).all() for f in feats)


# ----------------------------------------------------------------------------- a real Dask cluster

REPO = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    """The environment of every process started here: this checkout's code (and the test job
    functions of ``executor_jobs``) first on the path."""
    path = os.pathsep.join([str(REPO), str(REPO / "tests"), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {**os.environ, "PYTHONPATH": path}


class LocalhostCluster:
    """A ``dask scheduler`` and ``dask worker`` processes started separately on localhost, the way a
    cluster user starts them (each in its own process group and working directory)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: dict[str, subprocess.Popen] = {}
        self.address = ""

    def start(self, name: str, *args: str) -> subprocess.Popen:
        cwd = self.root / name
        cwd.mkdir(parents=True, exist_ok=True)
        with open(self.root / f"{name}.log", "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "dask", *args], stdout=log, stderr=subprocess.STDOUT,
                                    cwd=cwd, env=_env(), start_new_session=True)
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")

    def up(self, n_workers: int = 2, timeout: float = 120.0) -> None:
        info = self.root / "scheduler.json"
        sched = self.start("scheduler", "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                           "--dashboard-address", "127.0.0.1:0", "--scheduler-file", str(info))
        deadline = time.time() + timeout
        while not self.address:
            if sched.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"the dask scheduler did not start:\n{self.log('scheduler')}")
            try:
                self.address = json.loads(info.read_text())["address"]
            except (OSError, ValueError, KeyError):
                time.sleep(0.2)
        for i in range(n_workers):
            self.start(f"worker{i}", "worker", self.address, "--nthreads", "1", "--no-dashboard", "--name", f"w{i}")
        from distributed import Client

        with Client(self.address, timeout="60s") as client:
            client.wait_for_workers(n_workers, timeout=max(1.0, deadline - time.time()))

    def busy_worker(self, started, until, timeout: float = 400.0) -> str | None:  # noqa: ANN001
        """Wait until ``started()`` and a worker is computing a job; return its name (None if
        ``until()`` comes true or time runs out first)."""
        from distributed import Client

        deadline = time.time() + timeout
        with Client(self.address, timeout="60s") as client:
            while time.time() < deadline and not until():
                busy = [addr for addr, keys in client.processing().items() if keys]
                if busy and started():
                    name = client.scheduler_info(n_workers=-1)["workers"][busy[0]]["name"]
                    return f"worker{name[1:]}"
                time.sleep(0.1)
        return None

    def kill(self, name: str) -> None:
        """SIGKILL a process and everything it started (a worker: its nanny and the worker process)."""
        proc = self.procs[name]
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(30)

    def down(self) -> None:
        for proc in self.procs.values():  # workers and scheduler: polite first...
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.time() + 20
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                pass
        for proc in self.procs.values():  # ... then by force, the whole process group
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(30)


@pytest.fixture
def dask_cluster(tmp_path):
    cluster = LocalhostCluster(tmp_path / "cluster")
    try:
        cluster.up()
        yield cluster
    finally:
        cluster.down()
    for proc in cluster.procs.values():
        assert proc.poll() is not None


def _bench(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ser_bench.cli", *args], cwd=cwd, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


@needs_dask
@pytest.mark.slow
def test_bench_run_on_a_separately_started_cluster_survives_a_killed_worker(tmp_path, dask_cluster):
    """`bench run --executor dask --scheduler tcp://...` against a scheduler and two workers started
    as separate processes; one worker (nanny and all) is SIGKILLed while the run computes. The run
    completes and stores exactly the numbers of an in-process run."""
    args = ["run", "mismatched", "--snr", "0", "-o", "synthetic.per_class=2", "-q"]
    drv = tmp_path / "driver"
    drv.mkdir()
    proc = _bench(*args, "--executor", "dask", "--scheduler", dask_cluster.address, "--db", "dask.db",
                  "--cache", "cache", cwd=drv)  # relative paths: the workers run elsewhere
    try:
        feats = drv / "cache" / "features"  # preparation has begun: both workers hold jobs
        victim = dask_cluster.busy_worker(started=lambda: feats.exists() and any(feats.rglob("*.npy")),
                                          until=lambda: proc.poll() is not None)
        assert victim, f"the run ended before a worker could be killed:\n{proc.stdout.read()}"
        dask_cluster.kill(victim)  # mid-run, while it computes a job
        out, _ = proc.communicate(timeout=500)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, out
    assert "18 computed, 0 already stored, 0 failed" in out
    assert "Remove worker" in dask_cluster.log("scheduler")  # the scheduler saw it go
    ref = tmp_path / "inline"
    ref.mkdir()
    r = subprocess.run([sys.executable, "-m", "ser_bench.cli", *args, "--executor", "inline", "--db", "inline.db",
                        "--cache", "cache"], cwd=ref, env=_env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    dask_store, inline_store = Store(str(drv / "dask.db")), Store(str(ref / "inline.db"))
    assert len(_numbers(dask_store)) == 36 and _numbers(dask_store) == _numbers(inline_store)
    assert dask_store.runs_frame().config_hash.tolist() == inline_store.runs_frame().config_hash.tolist()


@needs_dask
def test_a_cluster_without_workers_or_scheduler_is_a_clear_error_not_a_hang(tmp_path, capfd):
    """Its only worker SIGKILLed mid-job: the run stops after ``worker_timeout`` with an error
    saying how to start workers, instead of waiting forever; connecting to a scheduler that has
    no worker is the same error; a scheduler killed mid-job is a one-line error too."""
    cluster = LocalhostCluster(tmp_path / "cluster")
    try:
        t0 = time.time()
        cluster.up(n_workers=1)
        t_up = time.time() - t0
        ex = DaskExecutor(scheduler=cluster.address, worker_timeout=3)
        try:
            killed: list[float] = []

            def kill_when_busy() -> None:
                if cluster.busy_worker(started=lambda: True, until=lambda: False, timeout=120) == "worker0":
                    cluster.kill("worker0")
                    killed.append(time.time())

            killer = threading.Thread(target=kill_when_busy)
            killer.start()
            with pytest.raises(ConfigError) as err:
                list(ex.map_unordered(sleepy, [1, 2]))
            killer.join()
            assert killed, "the worker never started the job"
            waited = time.time() - killed[0]
        finally:
            ex.close()
        assert str(err.value).startswith(f"the Dask scheduler at {cluster.address} lost every worker (waited 3 s); "
                                         f"start workers with `dask worker {cluster.address} --nthreads 1`")
        assert str(err.value).endswith("then rerun: stored cells are kept")
        assert 3 <= waited < 30, (waited, t_up)  # not the 60 s the job sleeps, nor forever
        ex = DaskExecutor(scheduler=cluster.address, worker_timeout=1)
        try:
            with pytest.raises(ConfigError, match=r"at tcp://127\.0\.0\.1:\d+ has no workers \(waited 1 s\); start "):
                list(ex.map_unordered(square, [1]))
        finally:
            ex.close()
        # the scheduler itself goes away mid-job: one line, no traceback from the client's reconnection
        cluster.start("worker1", "worker", cluster.address, "--nthreads", "1", "--no-dashboard", "--name", "w1")
        ex = DaskExecutor(scheduler=cluster.address, worker_timeout=60)
        killer = threading.Thread(target=lambda: cluster.busy_worker(started=lambda: True, until=lambda: False,
                                                                     timeout=120) and cluster.kill("scheduler"))
        killer.start()
        try:
            with pytest.raises(ConfigError) as err:
                list(ex.map_unordered(sleepy, [1]))
        finally:
            ex.close()
            killer.join()
        assert str(err.value) == (f"lost the connection to the Dask scheduler at {cluster.address} (its tasks were "
                                  "cancelled); rerun when it is back: stored cells are kept")
        assert "Traceback" not in capfd.readouterr().err
    finally:
        cluster.down()


@needs_dask
def test_relative_paths_reach_workers_started_elsewhere(tmp_path, monkeypatch):
    """A relative --data-root (and any relative path option) means the driver's folder, also on
    Dask workers that run in another working directory."""
    import soundfile as sf

    from ser_bench.testing import speech_like

    drv = tmp_path / "driver"
    for s in range(2):
        for ci, label in enumerate(("low", "high")):
            (drv / "corpus" / label / f"s{s}").mkdir(parents=True)
            for k in range(2):
                sf.write(drv / "corpus" / label / f"s{s}" / f"u{k}.wav",
                         speech_like(0.3, f0=120.0 * (1 + ci), seed=10 * s + k), 16000)
    monkeypatch.chdir(drv)
    cfg = RunConfig(protocol="clean", datasets=["folder-dataset"], ser_models=["centroid"], enhancers=["none"],
                    noise_sources=["fake-noise"], snrs=[0.0], options={"folder-dataset": {"root": "corpus"}})
    inline = Store(str(tmp_path / "inline.db"))
    run(cfg, store=inline, executor="inline", extra_plugins=["ser_bench.testing:testing_plugin"], progress=False,
        cache_dir="cache-inline")
    cluster = LocalhostCluster(tmp_path / "cluster")
    try:
        cluster.up(n_workers=1)
        store = Store(str(tmp_path / "dask.db"))
        s = run(cfg, store=store, executor="dask", scheduler=cluster.address, progress=False, cache_dir="cache",
                extra_plugins=["ser_bench.testing:testing_plugin"])
    finally:
        cluster.down()
    assert (s.n_cells, s.n_done, s.n_failed) == (2, 2, 0), store.cells_frame().error.tolist()
    assert store.cells_frame().n_test.sum() == 8
    assert _numbers(store) == _numbers(inline)
    assert json.loads(store.runs_frame().config_json.iloc[0])["options"]["folder-dataset"]["root"] == "corpus"


def test_remote_config_makes_every_relative_path_option_absolute(tmp_path, monkeypatch):
    """A Dask worker runs in its own working directory: dataset, noise, corruption and enhancer
    calibration roots given relative to the user's must reach it absolute; other options as they are."""
    import json
    import os

    from ser_bench.artefacts import remote_config
    from ser_bench.config import RunConfig
    from ser_bench.plugins import default_registry

    monkeypatch.chdir(tmp_path)
    cfg = RunConfig(protocol="mismatched", datasets=["emodb"], ser_models=["svm-egemaps"],
                    enhancers=["none", "guarded-wiener"], noise_sources=["folder"], snrs=[],
                    corruptions=["babble(snr=0)", "rir+noise(snr=5)"],
                    options={"emodb": {"root": "data/emodb"}, "folder": {"root": "data/noise"},
                             "babble": {"root": "data/ls", "talkers": 4}, "rir": {"root": "rirs"},
                             "guarded-wiener": {"speech_root": "data/ls", "harm_weight": 2.0}})
    opts = json.loads(remote_config(cfg, default_registry()))["options"]
    for name, key, rel in (("emodb", "root", "data/emodb"), ("folder", "root", "data/noise"),
                           ("babble", "root", "data/ls"), ("rir", "root", "rirs"),
                           ("guarded-wiener", "speech_root", "data/ls")):
        assert opts[name][key] == os.path.join(str(tmp_path), rel), (name, opts[name][key])
    assert opts["babble"]["talkers"] == 4 and opts["guarded-wiener"]["harm_weight"] == 2.0
