"""Where jobs run: in-process (debugging, custom registries) or a local process pool (default).

An executor maps a top-level function over picklable jobs and yields ``(job, result)`` as jobs
finish, in any order. Only the driver touches the database.
"""
from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any


class InlineExecutor:
    """Runs jobs one after another in this process."""

    name = "inline"
    workers = 1

    def map_unordered(self, fn: Callable[[Any], Any], jobs: Iterable[Any]) -> Iterator[tuple[Any, Any]]:
        for job in jobs:
            yield job, fn(job)

    def close(self) -> None:
        pass


def _init_worker(env: dict[str, str]) -> None:
    # one BLAS/torch thread per worker: the pool provides the parallelism
    os.environ.update(env)


class PoolExecutor:
    """A local process pool (spawn context). A job whose worker died is retried once."""

    name = "process"

    def __init__(self, workers: int | None = None, *, env: dict[str, str] | None = None) -> None:
        self.workers = max(1, workers or os.cpu_count() or 1)
        self._env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                     "BENCH_WORKER": "1", **(env or {})}
        self._pool: ProcessPoolExecutor | None = None

    def _ensure(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=mp.get_context("spawn"),
                initializer=_init_worker, initargs=(self._env,),
            )
        return self._pool

    def map_unordered(self, fn: Callable[[Any], Any], jobs: Iterable[Any]) -> Iterator[tuple[Any, Any]]:
        jobs = list(jobs)
        pending = list(range(len(jobs)))
        attempts = [0] * len(jobs)
        while pending:
            pool = self._ensure()
            futs = {}
            for i in pending:
                attempts[i] += 1
                futs[pool.submit(fn, jobs[i])] = i
            finished: set[int] = set()
            broken = False
            not_done = set(futs)
            while not_done and not broken:
                done, not_done = wait(not_done, return_when=FIRST_COMPLETED)
                for f in done:
                    try:
                        res = f.result()
                    except BrokenProcessPool:
                        broken = True
                        continue
                    finished.add(futs[f])
                    yield jobs[futs[f]], res
            pending = [i for i in pending if i not in finished]
            if not broken:
                return
            # a worker died (OOM, segfault, SIGKILL): restart the pool and retry unfinished jobs once
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
            if any(attempts[i] >= 2 for i in pending):
                raise RuntimeError("a worker process died twice while running the same job; rerun with -j 1 to debug")

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def make_executor(kind: str = "process", workers: int | None = None) -> InlineExecutor | PoolExecutor:
    if kind == "inline" or (kind == "process" and workers == 1):
        return InlineExecutor()
    if kind == "process":
        return PoolExecutor(workers)
    from .errors import ConfigError

    raise ConfigError(f"unknown executor {kind!r}; choose 'inline' or 'process'")
