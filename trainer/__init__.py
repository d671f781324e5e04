"""trainer: a fast NumPy/CuPy Deep Belief Network (nolearn's DBN, gdbn's math) and its job runner.

    from trainer import DBN                       # the estimator: fit / predict / predict_proba / score
    python -m trainer run JOB.yaml --out DIR      # a job: data + model + backend, results in DIR

Needs only numpy and pyyaml (CuPy when a GPU is used). `DBN` is imported lazily so that
`import trainer.config` (what ec2dbn does to validate jobs) stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from trainer.config import DataConfig, Job, ModelConfig, load_job, parse_job
from trainer.errors import BackendError, DataError, JobError, TrainerError

if TYPE_CHECKING:
    from trainer.dbn import DBN

__all__ = [
    "DBN",
    "BackendError",
    "DataConfig",
    "DataError",
    "Job",
    "JobError",
    "ModelConfig",
    "TrainerError",
    "load_job",
    "parse_job",
]


def __getattr__(name: str) -> Any:
    if name == "DBN":
        from trainer.dbn import DBN

        return DBN
    raise AttributeError(f"module 'trainer' has no attribute {name!r}")
