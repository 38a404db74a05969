"""Where jobs run: in-process (debugging), a local process pool (default) or a Dask cluster.

An executor maps a top-level function over picklable jobs and yields ``(job, result)`` as jobs
finish, in any order. Only the driver touches the database; workers share the artefact cache
(a folder every worker can reach) and keep their plugins loaded between jobs.

A worker that dies (killed, out of memory, a crash in native code) has its jobs retried. A job
whose worker died ``max_attempts`` times is *lost*: the ``lost(job, message)`` callback given to
:meth:`map_unordered` turns it into an ordinary (failed) result, so one poisonous job fails
alone instead of the run; without a callback, :class:`WorkerLostError` is raised.

Executors:

* ``inline``: jobs run one after another in the driver (``-j 1``, pdb-friendly).
* ``process``: a local pool of ``-j N`` spawned processes (default N: the usable CPU cores),
  one BLAS/torch thread each, at most ``2 N`` jobs in flight. Workers exit when the driver
  dies, even by SIGKILL.
* ``dask``: a ``dask.distributed`` cluster: ``--scheduler tcp://HOST:PORT`` connects to a
  running one (its workers need ser-bench and the plugins installed, the cache folder and the
  data on paths they reach, and preferably ``--nthreads 1``; relative path options are made
  absolute for them, since they run in their own working directory); without an address, a
  LocalCluster of ``-j N`` single-threaded worker processes. A worker that dies has its tasks
  rerun on the others; a cluster left without workers for ``BENCH_DASK_WORKER_TIMEOUT``
  seconds (default 300), or a lost scheduler, stops the run with an error saying what to do
  (the cells stored so far are kept). Needs ``pip install 'ser-bench[dask]'``.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Protocol

from .errors import ConfigError

EXECUTORS = ("process", "inline", "dask")
#: How often a job may lose its worker before it counts as lost.
MAX_ATTEMPTS = 2
#: Seconds a Dask run waits for a worker when the scheduler has none (env BENCH_DASK_WORKER_TIMEOUT).
WORKER_TIMEOUT = 300.0
#: Seconds between checks of a Dask cluster's health while jobs are pending.
POLL_S = 2.0
#: Environment of pool workers: one BLAS/OpenMP/torch thread each (the pool is the parallelism).
WORKER_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
              "NUMEXPR_NUM_THREADS": "1", "BENCH_WORKER": "1"}

Lost = Callable[[Any, str], Any]
log = logging.getLogger("ser_bench.executors")


class WorkerLostError(RuntimeError):
    """A job's worker process died ``MAX_ATTEMPTS`` times and no ``lost`` callback was given."""


class Executor(Protocol):
    name: str
    workers: int

    def map_unordered(self, fn: Callable[[Any], Any], jobs: Iterable[Any], *,
                      lost: Lost | None = None) -> Iterator[tuple[Any, Any]]: ...

    def close(self) -> None: ...


def usable_cores() -> int:
    """CPU cores this process may run on (respects taskset / cgroup affinity)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _lost_message(attempts: int) -> str:
    return (f"the worker process died {attempts} times while running this job, the last time running it alone "
            "(killed, out of memory, or a crash in native code); rerun with -j 1 (in-process) to see where")


class InlineExecutor:
    """Runs jobs one after another in this process."""

    name = "inline"
    workers = 1

    def map_unordered(self, fn: Callable[[Any], Any], jobs: Iterable[Any], *,
                      lost: Lost | None = None) -> Iterator[tuple[Any, Any]]:
        for job in jobs:
            yield job, fn(job)

    def close(self) -> None:
        pass


def _watch_parent() -> None:
    """In a pool worker: exit as soon as the driver is gone (even SIGKILLed), not linger forever."""
    parent = mp.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()  # returns when the driver's end of the sentinel pipe closes
        os._exit(70)

    threading.Thread(target=watch, name="bench-parent-watch", daemon=True).start()


def _fast_exit() -> None:
    """A pool worker's last act: flush its output and leave without tearing the interpreter
    down. Its results went back synchronously (the result queue has no feeder thread), so
    nothing is lost; freeing every imported module (openSMILE, scikit-learn, torch) cost ~0.6 s
    of CPU per worker and ~0.6 s of wall time at the end of every run (cold EMO-DB eGeMAPS,
    ``-j 2``: 13.4 -> 12.8 s wall, 21.5 -> 20.2 s CPU, under load)."""
    import sys

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # pragma: no cover - a closed stream
            pass
    os._exit(0)


def _init_worker(env: dict[str, str]) -> None:
    import atexit

    os.environ.update(env)
    _watch_parent()
    atexit.register(_fast_exit)  # registered last, so it runs first
    one_thread()  # libraries imported already (normally none yet; then the env above applies)


def one_thread() -> Callable[[], None]:
    """Limit this process's numeric libraries (torch, OpenMP, BLAS) to one thread, as in every pool
    worker; returns the undo. For in-process runs (``-j 1``, inline): the work is many small
    independent jobs (enhancing one utterance, one SVM fit), where a library's own threads gain
    little and, on a busy machine, spin-wait: rescnn took 7x the CPU time per utterance with 2
    torch threads under load. Plugins that want threads set them (e.g. ``e2e-arousal.num_threads``)."""
    import sys

    undo: list[Callable[[], None]] = []
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != 1:
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        undo.append(lambda: torch.set_num_threads(before))
    try:
        from threadpoolctl import threadpool_limits

        limits = threadpool_limits(limits=1)
        undo.append(limits.restore_original_limits)
    except ImportError:  # pragma: no cover - a scikit-learn dependency
        pass

    def restore() -> None:
        for u in reversed(undo):
            u()

    return restore


class PoolExecutor:
    """A local process pool (spawn context) that survives dying workers.

    At most ``2 * workers`` jobs are in flight. When a worker dies, every job that was in flight
    becomes a *suspect* and is rerun alone (nothing else in flight), which pins the death on the
    job that causes it: bystanders then succeed, and a job that kills its worker
    ``max_attempts`` times is lost (see the module docstring).
    """

    name = "process"

    def __init__(self, workers: int | None = None, *, env: dict[str, str] | None = None,
                 max_attempts: int = MAX_ATTEMPTS) -> None:
        self.workers = max(1, workers or usable_cores())
        self.max_attempts = max(1, max_attempts)
        self._env = {**WORKER_ENV, **(env or {})}
        self._pool: ProcessPoolExecutor | None = None
        self.restarts = 0

    def _ensure(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=mp.get_context("spawn"),
                initializer=_init_worker, initargs=(self._env,),
            )
        return self._pool

    def _restart(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = None
        self.restarts += 1

    def map_unordered(self, fn: Callable[[Any], Any], jobs: Iterable[Any], *,
                      lost: Lost | None = None) -> Iterator[tuple[Any, Any]]:
        jobs = list(jobs)
        attempts = [0] * len(jobs)
        ready = deque(range(len(jobs)))
        suspects: deque[int] = deque()
        inflight: dict[Any, int] = {}
        window = 2 * self.workers
        while ready or suspects or inflight:
            pool = self._ensure()
            broken = False
            queue, limit = (suspects, 1) if suspects else (ready, window)  # a suspect runs alone
            while queue and len(inflight) < limit and not broken:
                i = queue.popleft()
                try:
                    fut = pool.submit(fn, jobs[i])
                except BrokenProcessPool:  # a worker died since the last wait
                    queue.appendleft(i)
                    broken = True
                    break
                attempts[i] += 1
                inflight[fut] = i
            died: list[int] = []
            if inflight and not broken:
                done, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
                for f in done:
                    i = inflight.pop(f)
                    try:
                        res = f.result()
                    except BrokenProcessPool:
                        died.append(i)
                        continue
                    yield jobs[i], res
            if not died and not broken:
                continue
            # the pool is broken: the other in-flight futures fail too (some may have finished first)
            wait(list(inflight))
            for f, i in list(inflight.items()):
                try:
                    res = f.result()
                except BrokenProcessPool:
                    died.append(i)
                    continue
                yield jobs[i], res
            inflight.clear()
            self._restart()
            for i in sorted(died):
                if attempts[i] >= self.max_attempts:
                    msg = _lost_message(attempts[i])
                    if lost is None:
                        raise WorkerLostError(msg)
                    yield jobs[i], lost(jobs[i], msg)
                else:
                    suspects.append(i)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


class DaskExecutor:
    """Jobs on a ``dask.distributed`` cluster: a running scheduler, or a LocalCluster.

    The cluster starts on the first :meth:`map_unordered` (so a run with nothing to compute
    starts none). The scheduler reruns the tasks of a worker that dies on the others; a task
    whose worker died more often than it allows (``distributed.scheduler.allowed-failures``;
    0 for a LocalCluster started here) is rerun alone after the others; if its worker dies
    again, it is lost. A scheduler without any worker for ``worker_timeout`` seconds (none
    started, or all of them lost) and a lost scheduler are errors saying what to do, not a
    run that waits forever or ends in a traceback; the cells stored so far are kept.
    """

    name = "dask"

    def __init__(self, workers: int | None = None, *, scheduler: str | None = None,
                 connect_timeout: float = 30.0, worker_timeout: float | None = None) -> None:
        try:
            import distributed  # noqa: F401
        except ImportError:
            raise ConfigError(
                "--executor dask needs dask.distributed, which is not installed: "
                "pip install 'ser-bench[dask]' (or choose --executor process)"
            ) from None
        self.scheduler = scheduler
        self.connect_timeout = connect_timeout
        self.worker_timeout = float(worker_timeout if worker_timeout is not None
                                    else os.environ.get("BENCH_DASK_WORKER_TIMEOUT", WORKER_TIMEOUT))
        self._n = max(1, workers or usable_cores())
        self.workers = self._n
        self._client = None
        self._cluster = None
        self._lost = False

    def _ensure(self):  # noqa: ANN202
        if self._client is not None:
            return self._client
        import dask
        from distributed import Client, LocalCluster

        if self.scheduler:
            try:
                self._client = Client(self.scheduler, timeout=f"{self.connect_timeout}s")
            except (OSError, TimeoutError) as exc:
                raise ConfigError(
                    f"cannot reach the Dask scheduler at {self.scheduler!r} ({exc}); start one with "
                    "`dask scheduler` (and workers with `dask worker ADDRESS --nthreads 1`), or leave out "
                    "--scheduler to use a local cluster"
                ) from None
            try:
                self._client.wait_for_workers(1, timeout=self.worker_timeout)
            except TimeoutError:
                self.close()
                raise ConfigError(self._no_workers("has no workers")) from None
            self.workers = max(1, len(self._client.scheduler_info().get("workers", {})) or self._n)
        else:
            # a worker death fails its tasks at once (map_unordered retries them alone); no
            # statistical profiler sampling every 10 ms in each worker (measurable CPU on 2 cores)
            with dask.config.set({"distributed.scheduler.allowed-failures": 0,
                                  "distributed.worker.profile.enabled": False}):
                self._cluster = LocalCluster(
                    n_workers=self._n, threads_per_worker=1, processes=True, dashboard_address=None,
                    silence_logs=logging.ERROR, env=dict(WORKER_ENV),
                )
            self._client = Client(self._cluster)
        return self._client

    def _no_workers(self, what: str) -> str:
        where = self.scheduler or "the local cluster"
        start = f"`dask worker {self.scheduler} --nthreads 1`" if self.scheduler else "more memory or fewer -j"
        return (f"the Dask scheduler at {where} {what} (waited {self.worker_timeout:g} s); start workers with "
                f"{start} where ser-bench and the cache folder are reachable, then rerun: stored cells are kept")

    def _finished(self, pending: set) -> Iterator[Any]:  # noqa: ANN401
        """Yield the futures of ``pending`` as they finish. Raises ConfigError when the cluster has
        had no worker for ``worker_timeout`` seconds or the scheduler is gone."""
        from distributed import as_completed

        ac = as_completed(list(pending))
        alone_since: float | None = None
        next_check = time.monotonic() + POLL_S
        while not ac.is_empty():
            if ac.has_ready():
                yield next(ac)
                alone_since = None
                continue
            time.sleep(0.05)  # as_completed itself polls (every 0.1 s)
            if time.monotonic() < next_check:
                continue
            next_check = time.monotonic() + POLL_S
            try:
                n_workers = len(self._client.nthreads())
            except (OSError, TimeoutError) as exc:  # CommClosedError is an OSError
                raise self._scheduler_lost(f"{type(exc).__name__}: {exc}") from None
            if n_workers:
                alone_since = None
            elif alone_since is None:
                alone_since = time.monotonic()
                log.warning("no Dask worker is left; waiting up to %g s for one to join", self.worker_timeout)
            elif time.monotonic() - alone_since >= self.worker_timeout:
                raise ConfigError(self._no_workers("lost every worker"))

    def _result(self, fut) -> Any:  # noqa: ANN001, ANN401
        """A finished future's result; the scheduler going away is a ConfigError, not a traceback."""
        from concurrent.futures import CancelledError

        try:
            return fut.result()
        except CancelledError:  # the scheduler dropped the task: it (or our connection) is gone
            raise self._scheduler_lost("its tasks were cancelled") from None

    def map_unordered(self, fn: Callable[[Any], Any], jobs: Iterable[Any], *,
                      lost: Lost | None = None) -> Iterator[tuple[Any, Any]]:
        from distributed import KilledWorker

        jobs = list(jobs)
        if not jobs:
            return
        client = self._ensure()
        futures = {client.submit(fn, job, pure=False): i for i, job in enumerate(jobs)}
        suspects: list[int] = []
        try:
            for fut in self._finished(set(futures)):
                i = futures.pop(fut)
                try:
                    res = self._result(fut)
                except KilledWorker:  # its worker died (maybe because of another task on it)
                    suspects.append(i)
                    continue
                finally:
                    fut.release()
                yield jobs[i], res
            for i in suspects:  # one at a time: a death now is the job's own
                fut = client.submit(fn, jobs[i], pure=False)
                futures[fut] = i
                try:
                    for _ in self._finished({fut}):
                        pass
                    res = self._result(fut)
                except KilledWorker:
                    msg = _lost_message(2)
                    if lost is None:
                        raise WorkerLostError(msg) from None
                    res = lost(jobs[i], msg)
                finally:
                    futures.pop(fut, None)
                    fut.release()
                yield jobs[i], res
        finally:
            if futures:
                try:
                    client.cancel(list(futures))
                except Exception:  # noqa: BLE001 - the scheduler may be gone; nothing left to cancel then
                    pass

    def _scheduler_lost(self, why: str) -> ConfigError:
        self._lost = True
        return ConfigError(f"lost the connection to the Dask scheduler at {self.scheduler or 'the local cluster'} "
                           f"({why}); rerun when it is back: stored cells are kept")

    def close(self) -> None:
        if self._client is not None:
            if self._lost:  # the client's reconnection attempts end in logged tracebacks: already said above
                quiet = [logging.getLogger(n) for n in ("distributed.client", "distributed.core", "distributed.comm")]
                levels = [lg.level for lg in quiet]
                for lg in quiet:
                    lg.setLevel(logging.CRITICAL)
                try:
                    self._client.close(timeout=5)
                except Exception:  # noqa: BLE001 - nothing to close cleanly without a scheduler
                    pass
                for lg, level in zip(quiet, levels):
                    lg.setLevel(level)
            else:
                self._client.close()
            self._client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None


def make_executor(kind: str = "process", workers: int | None = None, *,
                  scheduler: str | None = None) -> InlineExecutor | PoolExecutor | DaskExecutor:
    """``inline``, ``process`` (``workers == 1`` means inline) or ``dask`` (optional ``scheduler``)."""
    if workers is not None and workers < 1:
        raise ConfigError(f"-j/--jobs must be at least 1, not {workers}")
    if scheduler and kind != "dask":
        raise ConfigError(f"--scheduler {scheduler} needs --executor dask (the executor is {kind!r})")
    if kind == "inline" or (kind == "process" and workers == 1):
        return InlineExecutor()
    if kind == "process":
        return PoolExecutor(workers)
    if kind == "dask":
        return DaskExecutor(workers, scheduler=scheduler)
    raise ConfigError(f"unknown executor {kind!r}; choose one of {', '.join(EXECUTORS)}")
