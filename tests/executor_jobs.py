"""Job functions for tests/test_executors.py, in a module that imports almost nothing, so that
spawned pool workers (which import it to unpickle the jobs) start fast."""
from __future__ import annotations

import os
import time
from pathlib import Path


def square(x: int) -> int:
    return x * x


def die_once(job: tuple[str, int]) -> int:
    """Kills its worker the first time job 3 runs (marker file absent), then succeeds."""
    marker, x = job
    if x == 3 and not os.path.exists(marker):
        Path(marker).write_text("died")
        os._exit(9)
    return x * 10


def poison(x: int) -> int:
    """Job 2 always kills its worker (a crash in native code, the OOM killer...)."""
    if x == 2:
        os._exit(9)
    time.sleep(0.05)
    return x


def settings(x: int) -> dict:
    """The thread settings a worker runs with (torch imported here, after the pool's initializer)."""
    import torch

    return {"x": x * x, "omp": os.environ.get("OMP_NUM_THREADS"), "torch": torch.get_num_threads(), "pid": os.getpid()}


def write_pid_and_sleep(path: str) -> None:
    with open(path, "a") as fh:
        fh.write(f"{os.getpid()}\n")
    time.sleep(120)


def sleepy(x: int) -> int:
    """A long job (a worker can be killed while it runs)."""
    time.sleep(60)
    return x
