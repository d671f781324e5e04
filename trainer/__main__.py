"""The trainer's command line.

    python -m trainer run JOB.yaml --out DIR [--backend auto|numpy|cupy] [--resume]
    python -m trainer predict DIR/model.npz DATA

Exit codes (trainer.contract): 0 finished, 1 crashed (traceback on stderr and in train.log), 2 bad
job/data/usage (one line `error: ...` on stderr), 3 stopped by SIGTERM/SIGINT after writing a checkpoint,
4 diverged (an epoch's loss went NaN/inf: a line naming the epoch and the likely causes; the checkpoint keeps
the last finite state).
"""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

from trainer.contract import EXIT_CRASH, PROGRESS_EVERY_S
from trainer.errors import TrainerError

EXAMPLES = """examples:
  python -m trainer run examples/seed-mnist5k.yaml --out results/mnist5k
  python -m trainer run examples/seed-fashion.yaml --out results/fashion --resume
  python -m trainer predict results/mnist5k/model.npz test.npz
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainer",
        description="Train a Deep Belief Network (nolearn's DBN) on NumPy or CuPy, or predict with one.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{run,predict}")
    run = sub.add_parser(
        "run",
        help="train the job in JOB.yaml",
        description="Train the job in JOB.yaml; results (train.log, metrics.jsonl, metrics.json, report.txt, "
        "model.npz, checkpoint.npz) go to --out. SIGTERM/SIGINT write a checkpoint and exit 3; a loss that "
        "turns NaN/inf stops training with exit 4 (diverged).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("job", type=Path, help="the job YAML (data, model, backend; stack/run are ignored)")
    run.add_argument("--out", type=Path, help="output folder (default: results/<job file name>)")
    run.add_argument(
        "--backend", choices=("auto", "numpy", "cupy"), help="override the job's backend (default: the job's)"
    )
    run.add_argument(
        "--resume", action="store_true", help="continue from --out's checkpoint.npz if there is one"
    )
    run.add_argument(
        "--progress-every",
        type=float,
        default=PROGRESS_EVERY_S,
        metavar="SECONDS",
        help=f"at most one progress line (minibatches, rate, time left) per SECONDS; 0: none "
        f"(default {PROGRESS_EVERY_S:g})",
    )
    predict = sub.add_parser(
        "predict",
        help="predict labels with a trained model",
        description="Print one predicted label per line; with labels in DATA, print the accuracy on stderr.",
    )
    predict.add_argument("model", type=Path, help="a model.npz written by `run`")
    predict.add_argument("data", type=Path, help="an .npz with X (and optionally y), or an IDX folder")
    predict.add_argument("--backend", choices=("auto", "numpy", "cupy"), default="auto")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            from trainer.run import run_job

            out = args.out or Path("results") / args.job.stem
            return run_job(
                args.job, out, backend=args.backend, resume=args.resume, progress_every=args.progress_every
            )
        from trainer.run import predict_file

        return predict_file(args.model, args.data, backend=args.backend)
    except TrainerError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted before training started", file=sys.stderr, flush=True)
        return 130
    except Exception:
        traceback.print_exc()
        return EXIT_CRASH


if __name__ == "__main__":
    sys.exit(main())
