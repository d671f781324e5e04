"""How many BLAS threads a local trainer gets, and a hint when a busy machine makes that too many.

A threaded BLAS (OpenBLAS) spins a thread per core it is given; when other processes already keep some of
those cores busy, its threads wait for one another at every GEMM and an epoch can run several times slower
than with fewer threads (seen: 2 threads 5-7x slower than 1 on a loaded 2-core machine). The count itself is
not changed by the load: a run's numbers depend (in the last bits) on its thread count, and a run must not
compute differently, nor resume differently, because the machine was busy when it started. Instead the
user is told, with the count that would fit the free cores: the cores this process may use
(sched_getaffinity, not the machine's count) less the whole cores the 1-minute load average says others keep
busy, divided among the trainers run side by side. A user's own OPENBLAS_NUM_THREADS / OMP_NUM_THREADS /
MKL_NUM_THREADS always wins, and is never hinted at.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
#: A test seam: the load average to assume (tests set "0" so that what they see does not depend on how
#: busy the machine running them is).
LOAD_ENV = "EC2DBN_TEST_LOAD"


def cores() -> int:
    """The cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def load_average() -> float | None:
    """The 1-minute load average (runnable processes), None where the system has none."""
    with contextlib.suppress(ValueError):
        if os.environ.get(LOAD_ENV):
            return float(os.environ[LOAD_ENV])
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


@dataclass(frozen=True)
class ThreadPlan:
    """threads: BLAS threads per trainer (>= 1): the cores divided among the trainers, or the user's;
    user_set: the user's environment chose them; fits: the count the free cores would take (<= threads);
    hint: one line for the user when fits < threads ("" if not)."""

    threads: int
    fits: int
    user_set: bool = False
    hint: str = ""


def plan_threads(parallel: int, *, cores: int, load: float | None, env: Mapping[str, str]) -> ThreadPlan:
    """BLAS threads for each of `parallel` trainers started now on `cores` cores under `load`.

    Others' busy cores are the load rounded to whole cores (a load of 0.3 is noise, 0.8 is a core taken),
    at most cores - 1: the trainers always get one. ec2dbn itself is idle while it decides.
    """
    for name in BLAS_THREAD_VARIABLES:
        value = env.get(name, "").strip()
        if value.isdigit() and int(value) >= 1:
            return ThreadPlan(int(value), int(value), user_set=True)
    parallel = max(1, parallel)
    threads = max(1, cores // parallel)
    busy = 0 if load is None or not math.isfinite(load) else min(cores - 1, max(0, math.floor(load + 0.3)))
    fits = max(1, (cores - busy) // parallel)
    if fits >= threads:
        return ThreadPlan(threads, threads)
    return ThreadPlan(
        threads,
        fits,
        hint=f"this machine is busy (load average {load:.1f} on {cores} cores): {threads} BLAS threads per "
        f"trainer may oversubscribe it and run several times slower; OPENBLAS_NUM_THREADS={fits} fits the "
        "free cores (a run's last digits depend on its thread count)",
    )


def plan_here(parallel: int) -> ThreadPlan:
    """plan_threads for this machine as it is now and this process's environment."""
    return plan_threads(parallel, cores=cores(), load=load_average(), env=os.environ)
