"""Will the job's network fit where it would train? Asked while validating, before anything is launched.

`trainer.memory.estimate_memory` says what the training allocates (weights, velocities, minibatch buffers,
the data set in float32) from the job alone; here that floor is compared with the memory of the device the
trainer would use:

- on EC2, for every candidate type of the stack (a launch may land on any of them): one GPU's memory
  (`gpu_memory_gib` from the catalog, or from EC2's description at plan for a type the catalog lacks;
  the trainer uses one GPU, so more GPUs do not add room) when the type has GPUs and the backend is not
  numpy, else the instance's RAM (`memory_gib`);
- with `--local`, this machine's physical RAM (os.sysconf).

A job that does not fit is a ConfigError (exit 2) with the figures, not a paid instance that dies on its
first allocation. `backend: cupy` on a type without a GPU is refused here too, for the same reason.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from ec2dbn.errors import ConfigError
from ec2dbn.spec import catalog
from ec2dbn.spec.stack import Stack
from trainer.config import Job
from trainer.memory import GIB, MemoryEstimate, estimate_memory, size


def local_memory_bytes() -> int | None:
    """This machine's physical RAM in bytes, or None where the OS does not say (then nothing is checked)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):
        return None


def device_memory(entry: catalog.InstanceType, backend: str) -> tuple[int, str]:
    """(bytes, what they are in words) of the memory the trainer trains in on an instance of `entry`."""
    if entry.is_gpu and backend != "numpy":
        return int(entry.gpu_memory_gib * GIB), f"{entry.name}'s {entry.gpu_model} has"
    return int(entry.memory_gib * GIB), f"{entry.name} has (RAM; it trains on the CPU)"


def _refusal(job: Job, estimate: MemoryEstimate, where: str, capacity: int, advice: str) -> ConfigError:
    return ConfigError(
        f"model.layers {list(job.model.layers)} needs at least {estimate.describe()} to train, but {where} "
        f"{size(capacity)}; {advice}"
    )


def check_fits(
    job: Job,
    stack: Stack | None,
    described: Mapping[str, catalog.InstanceType] | None = None,
) -> None:
    """ConfigError unless `job` (on its own backend: --backend is applied to it when it is validated) fits
    every candidate type of `stack`,
    or this machine's RAM when `stack` is None (`--local`).

    A candidate the catalog does not list is checked with what EC2 describes (`described`, by type name,
    from the plan phase); while validating, before AWS is asked, it is skipped."""
    backend = job.backend
    estimate = estimate_memory(job)
    smaller = "use narrower layers or a smaller minibatch_size"
    if stack is None:
        capacity = local_memory_bytes()
        if capacity is not None and estimate.total > capacity:
            raise _refusal(job, estimate, "this machine has", capacity, f"{smaller}, or train on EC2")
        return
    for name in stack.candidates:
        entry = (described or {}).get(name) or catalog.listed(name)
        if entry is None:
            continue  # not in the catalog: checked at plan, with what EC2 describes
        if backend == "cupy" and not entry.is_gpu:
            raise ConfigError(
                f"backend: cupy needs a GPU, but {name} (a candidate of stack {stack.name}) has none; "
                "use backend: auto or a GPU stack"
            )
        capacity, where = device_memory(entry, backend)
        if estimate.total > capacity:
            bigger = "a type with a larger GPU" if entry.is_gpu and backend != "numpy" else "a larger type"
            raise _refusal(job, estimate, where, capacity, f"{smaller}, or {bigger} (`ec2dbn catalog --gpu`)")
