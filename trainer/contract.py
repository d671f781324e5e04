"""What the orchestrator (ec2dbn) reads from the trainer, defined once: exit codes, file names, log markers.

The trainer runs on an instance and ec2dbn only sees what it leaves behind: an exit code, files in its
--out folder and lines in its log. Both sides import these names from here, so a renamed file or a new
exit code cannot drift apart. Standard library only (nothing at all): `trainer.spot_watch`, which must start
without NumPy, imports it too.
"""

from __future__ import annotations

# ------------------------------------------------------------------------------------------- exit codes
#: `python -m trainer run` finished: model.npz, report.txt and metrics.json are written.
EXIT_OK = 0
#: A crash (a bug, out of memory...): the traceback is in train.log and on stderr.
EXIT_CRASH = 1
#: A bad job, data set or command line: one line `error: ...` on stderr; nothing was trained.
EXIT_BAD = 2
#: Stopped by SIGTERM/SIGINT after writing checkpoint.npz at the exact minibatch reached (`--resume` goes on).
EXIT_STOPPED = 3
#: The loss (or the weights) stopped being finite: training stopped, checkpoint.npz keeps the last finite
#: state, train.log says which epoch and the likely cause. Resuming would diverge again: change the job.
EXIT_DIVERGED = 4

#: The run status (run.json, `ec2dbn report`) each exit code means; any other code is "failed".
RUN_STATUS = {
    EXIT_OK: "finished",
    EXIT_CRASH: "failed",
    EXIT_BAD: "failed",
    EXIT_STOPPED: "interrupted",
    EXIT_DIVERGED: "diverged",
}


def run_status(exit_code: int) -> str:
    """finished, failed, interrupted (a checkpoint was written) or diverged, for a trainer exit code."""
    return RUN_STATUS.get(exit_code, "failed")


# ---------------------------------------------------------------------------- files in the --out folder
TRAIN_LOG = "train.log"
METRICS_JSONL = "metrics.jsonl"  # one strict-JSON object per finished epoch, appended live
METRICS_JSON = "metrics.json"  # the run's summary, written at the end (also when it diverged)
REPORT_FILE = "report.txt"
MODEL_FILE = "model.npz"
CHECKPOINT_FILE = "checkpoint.npz"
INTERRUPTION_FILE = "interruption.json"  # written by trainer.spot_watch on a spot notice
BENCH_FILE = "bench.json"  # trainer.bench's output

#: What the orchestrator pulls back from a run's --out folder, in this order.
RESULT_FILES = (METRICS_JSON, METRICS_JSONL, REPORT_FILE, TRAIN_LOG, MODEL_FILE, CHECKPOINT_FILE)
#: What a new instance is given so that `--resume` continues a run: the checkpoint and the logs so far.
RESUME_FILES = (CHECKPOINT_FILE, METRICS_JSONL, TRAIN_LOG)

#: interruption.json's `kind`: a two-minute spot notice (the trainer was stopped), or only a rebalance hint.
SPOT_KIND = "spot-interruption"
REBALANCE_KIND = "rebalance-recommendation"

# ------------------------------------------------------------------------------- log lines (their start)
#: A finished fine-tuning epoch: `Epoch 3:  loss 0.2  err 0.05  (0:00:25)` (the 2014 seed's format).
EPOCH_MARKER = "Epoch "
#: A finished pretraining epoch: `Pretrain layer 1 epoch 2:  rec_err 31.02  (0:00:04)`.
PRETRAIN_MARKER = "Pretrain layer "
#: trainer.spot_watch saw the two-minute notice and is making the trainer checkpoint.
SPOT_NOTICE_MARKER = "Spot interruption notice"
#: One line naming the diverged epoch and the likely causes; the trainer then exits EXIT_DIVERGED.
DIVERGED_MARKER = "Training diverged"
#: Where an epoch stands, at most one line every PROGRESS_EVERY_S seconds (never per minibatch):
#: `Progress finetune epoch 3/10: batch 120/468  25.3 batch/s  0:00:14 left` (pretraining names its layer:
#: `Progress pretrain layer 1 epoch 2/10: ...`). Counted on the host: no device synchronisation.
PROGRESS_MARKER = "Progress "
#: The whole progress line, for the orchestrator's parser (groups: label, batch, batches, rate, left).
PROGRESS_PATTERN = (
    r"^Progress (?P<label>(?:pretrain layer \d+|finetune) epoch \d+/\d+): "
    r"batch (?P<batch>\d+)/(?P<batches>\d+)  (?P<rate>[0-9.]+) batch/s  (?P<left>\d+:\d\d:\d\d) left$"
)
#: Seconds between two progress lines by default (`python -m trainer run --progress-every`).
PROGRESS_EVERY_S = 5.0

# ------------------------------------------------------------------------------ the run store (S3 keys)
#: Where a run lives in the run store: `<store prefix>runs/<run-id>/` (ec2dbn.aws.store.run_prefix). Under it:
#: job.yaml and job.log (the detached job's whole output) as on the instance, the trainer's --out files under
#: out/, run.json (ec2dbn's record, written by ec2dbn only) and sync.json (written last by the uploader).
STORE_RUNS = "runs/"
STORE_OUT = "out/"
#: The uploader's final manifest, written after every other file of the run is in the store and verified:
#: {"exit_code": int, "status": run_status(exit_code), "finished_at": ISO-8601, "instance_id": str | null,
#:  "files": {key relative to the run prefix: {"size": int, "md5": hex}}}. Its presence means "complete".
STORE_MANIFEST = "sync.json"
#: What the uploader (trainer.store_sync) needs in the instance's venv besides NumPy and PyYAML, as
#: (module, pip requirement) pairs like trainer.data.DATA_REQUIREMENTS. The trainer itself never imports it.
STORE_REQUIREMENTS = (("boto3", "boto3>=1.28"),)
#: Lines the uploader writes into the job's log (job.log) when uploads start failing and work again.
STORE_RETRY_MARKER = "store: upload failed"
STORE_RECOVERED_MARKER = "store: uploads work again"
