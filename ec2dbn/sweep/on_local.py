"""`ec2dbn sweep --local --parallel K`: the sweep's points on this machine, K trainer processes at a time.

Each slot is a worker: a point runs as `ec2dbn train --local` runs a job (ec2dbn.run.local.run_local, the
trainer as a child process), into results/<sweep-id>/<point>/. The machine's cores are divided between
the workers: each trainer gets OPENBLAS_NUM_THREADS = OMP_NUM_THREADS = MKL_NUM_THREADS = cores ÷ K (at
least 1; a busy machine gets a hint, ec2dbn.run.blas_threads), so K trainers do not fight over the same
cores. Nothing else of the environment is changed
(OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE, where set, pass through untouched). Nothing is billed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

import yaml

from ec2dbn.errors import Ec2dbnError
from ec2dbn.events import Reporter
from ec2dbn.results_layout import JOB_FILE, RUN_FILE
from ec2dbn.run.blas_threads import BLAS_THREAD_VARIABLES, cores, plan_here
from ec2dbn.run.local import run_local
from ec2dbn.run.results import RunRecord
from ec2dbn.sweep.points import ValidPoint
from ec2dbn.sweep.slots import Slot, SlotPool
from trainer.contract import CHECKPOINT_FILE


def threads_per_worker(parallel: int) -> int:
    """BLAS threads for each of `parallel` workers: the cores divided among them (ec2dbn.run.blas_threads),
    or the user's OPENBLAS_NUM_THREADS when set."""
    return plan_here(parallel).threads


class LocalRunner:
    """K worker slots on this machine; runs and stops points as local trainer processes."""

    mode = "local"

    def __init__(self, sweep_dir: Path, parallel: int) -> None:
        self.sweep_dir = sweep_dir
        self.parallel = parallel
        self.plan = plan_here(parallel)
        self.threads = self.plan.threads
        self.pool = SlotPool()
        self._procs: dict[str, subprocess.Popen[str]] = {}
        self._stopped: set[str] = set()
        self._lock = threading.Lock()

    def start_capacity(self, reporter: Reporter) -> None:
        self.pool.add(None, [Slot(f"worker {k + 1}") for k in range(self.parallel)])
        reporter.step(
            f"{self.parallel} local worker(s), {self.threads} BLAS thread(s) each ({cores()} core(s) here)"
        )
        if self.plan.hint:
            reporter.warn(self.plan.hint)

    def environment(self) -> dict[str, str]:
        return {**os.environ, **dict.fromkeys(BLAS_THREAD_VARIABLES, str(self.threads))}

    def run_point(self, vp: ValidPoint, slot: Slot, reporter: Reporter) -> tuple[RunRecord, str | None]:
        """Train the point here (resuming it from its checkpoint when it has one); blocks."""
        pid = vp.point.point_id
        results_dir = self.sweep_dir / pid
        results_dir.mkdir(parents=True, exist_ok=True)
        job_path = results_dir / JOB_FILE
        resume = (results_dir / CHECKPOINT_FILE).is_file() and (results_dir / RUN_FILE).is_file()
        if resume:
            record = RunRecord.load(results_dir)
            record.status, record.exit_code, record.finished_at = "running", None, None
        else:
            job_path.write_text(yaml.safe_dump(vp.job.to_dict(), sort_keys=False), encoding="utf-8")
            record = RunRecord(run_id=pid, job=str(job_path), mode="local")
        error = None
        try:
            run_local(
                job_path,
                results_dir,
                record,
                reporter,
                resume=resume,
                env=self.environment(),
                on_start=lambda proc: self._started(pid, proc),
                plot=False,  # drawn at the sweep's end, not while the worker is wanted
            )
        except Ec2dbnError as exc:
            error = str(exc)
        finally:
            with self._lock:
                self._procs.pop(pid, None)
            self.pool.give_back(slot)
        return record, error

    def _started(self, pid: str, proc: subprocess.Popen[str]) -> None:
        with self._lock:
            self._procs[pid] = proc
            stop = pid in self._stopped
        if stop:
            self.stop_point(pid)

    def stop_point(self, pid: str) -> None:
        """Ask the point's trainer to checkpoint and exit (SIGTERM), as Ctrl-C would."""
        with self._lock:
            self._stopped.add(pid)
            proc = self._procs.get(pid)
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)

    def estimate_usd(self, vp: ValidPoint, slot: Slot) -> float:
        return 0.0

    def actual_usd(self) -> float:
        return 0.0

    def end(self, reporter: Reporter) -> list[str]:
        return []

    def capacity_record(self) -> list[dict[str, Any]]:
        return [{"local": True, "workers": self.parallel, "blas_threads_per_worker": self.threads}]
