"""The results folder's names, said once: what ec2dbn writes beside the trainer's own files
(trainer/contract.py names those), read back by `report`, `logs`, sweeps and resumes.

    results/<run-id>/          one run: run.json, job.yaml, bootstrap.log, the trainer's files
    results/<sweep-id>/        a sweep: sweep.json, job.yaml (its base job), summary.md, sweep.png,
                               instances/<instance-id>-bootstrap.log, one folder per point
    results/<bench-id>/        a bench: bench.json (the trainer's), summary.md, bench.png
    $EC2DBN_HOME/stacks/<name>/bootstrap.log   `launch`'s bootstrap
"""

from __future__ import annotations

from pathlib import Path

#: A run's record (stack, instance, market, AZ, price, phase timings, cost, recoveries): ec2dbn.run.results.
RUN_FILE = "run.json"
#: The job as validated and shipped (a run's), or a sweep's base job without its `sweep:` section.
JOB_FILE = "job.yaml"
#: The bootstrap's output, streamed while it runs.
BOOTSTRAP_LOG = "bootstrap.log"
#: A sweep's record (its points, fleets, budget): ec2dbn.sweep.record. A folder with one holds a sweep.
SWEEP_FILE = "sweep.json"
#: A sweep's or a bench's write-up (markdown).
SUMMARY_FILE = "summary.md"
SWEEP_PLOT = "sweep.png"
BENCH_PLOT = "bench.png"
#: Under a sweep's folder: each fleet instance's bootstrap log.
INSTANCES_DIR = "instances"


def instance_bootstrap_log(sweep_dir: Path, instance_id: str) -> Path:
    """Where a sweep's fleet instance keeps its bootstrap log (copied into each point run on it)."""
    return sweep_dir / INSTANCES_DIR / f"{instance_id}-{BOOTSTRAP_LOG}"
