"""The detached job's shell line: the trainer with its sidecars beside it (the spot watcher, the uploader).

ec2dbn composes this line on the laptop and the instance runs it in the run's workdir, under the detached
wrapper (ec2dbn.ssh.detached), whose log is the workdir's job.log. Standard library only: ec2dbn imports it
without the trainer's NumPy, and nothing here imports boto3 (only the uploader process does).

Without a store the line is exactly the spot watcher's (see trainer.spot_watch):

    trap '_sig=1' TERM INT; "$PY" -u -m trainer run job.yaml --out out & _t=$!;
    "$PY" -u -m trainer.spot_watch --pid "$_t" --out out --interval 2 & _w=$!;
    while :; do _sig=; wait "$_t"; _rc=$?; [ -n "$_sig" ] || break; done;
    kill "$_w" 2>/dev/null; wait "$_w" 2>/dev/null; exit "$_rc"

With a store (a StoreTarget) the uploader (trainer.store_sync) runs beside both, and after the trainer
exits the line hands it the trainer's exit code through a file and waits for its final sync:

    trap '_sig=1' TERM INT; rm -f .trainer-exit-code; "$PY" -u -m trainer run job.yaml --out out & _t=$!;
    "$PY" -u -m trainer.spot_watch --pid "$_t" --out out --interval 2 & _w=$!;
    ( trap '' TERM INT; exec "$PY" -u -m trainer.store_sync --pid "$_t" --workdir . --out out --bucket B
        --prefix runs/R/ --region us-east-1 --interval 10 --exit-code-file .trainer-exit-code
        [--final-timeout S] [--terminate-when-done] ) & _s=$!;
    while :; do _sig=; wait "$_t"; _rc=$?; [ -n "$_sig" ] || break; done;
    kill "$_w" 2>/dev/null; wait "$_w" 2>/dev/null;
    echo "$_rc" > .trainer-exit-code.tmp && mv .trainer-exit-code.tmp .trainer-exit-code;
    while :; do _sig=; wait "$_s"; [ -n "$_sig" ] || break; done; exit "$_rc"

Why: the uploader watches the trainer's pid, not the shell, so it starts the final sync as soon as the
trainer is gone; the exit code reaches it through a file written atomically (it waits for that file),
since only this shell learns the code. The uploader ignores the SIGTERM/SIGINT that `stop_job` sends to
the whole process group (it must still save the checkpoint that the stop makes): it is started with both
ignored (an ignored signal stays ignored across exec, so there is no moment at which it could die of one,
not even while Python starts), and its final sync is bounded (final_timeout). The shell waits for it the
same way it waits for the trainer: a trapped signal returns `wait` early, so it waits again. The line
exits with the trainer's code (trainer.contract) either way; with terminate_when_done and a verified
sync the instance terminates itself through the EC2 API before the line ends.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

#: The file (in the workdir) through which the shell line gives the uploader the trainer's exit code.
EXIT_CODE_FILE = ".trainer-exit-code"


@dataclass(frozen=True)
class StoreTarget:
    """Where the uploader puts this run: s3://bucket/prefix, prefix being the RUN prefix
    (`<store prefix>runs/<run-id>/`, ec2dbn.aws.store.run_prefix). interval: seconds between two uploads
    of a growing log (the checkpoint goes at once); terminate_when_done: the instance terminates itself
    after a verified final sync (detached runs); final_timeout: seconds the final sync keeps retrying
    (the line, and a detached instance, wait that long at most for an unreachable store)."""

    bucket: str
    prefix: str
    region: str
    terminate_when_done: bool = False
    interval: float = 10.0
    final_timeout: float = 600.0


def shell_command(
    python: str,
    trainer_args: str,
    out: str,
    *,
    interval: float = 2.0,
    store: StoreTarget | None = None,
) -> str:
    """One bash line that runs the trainer with the spot watcher and, given `store`, the uploader beside it.

    python: shell text for the interpreter, inserted as is (e.g. `"$PY"` or `python3`).
    trainer_args: shell text, the arguments of `trainer run` (e.g. `job.yaml --out out --backend numpy`),
      inserted as is: simple words only, no `;`, `&` or pipes (the trainer's pid must be `$!`).
    out: the trainer's --out folder as a plain path (quoted here; a leading `~/` stays the home folder);
      with a store it is relative to the workdir (the line's cwd), normally `out`.
    interval: seconds between IMDS polls (> 0).

    The line exits with the trainer's exit code; SIGTERM/SIGINT to its process group stop the trainer
    (checkpoint, exit 3) and the watcher, and the line still exits 3 (after the uploader's final sync).
    Raises ValueError on an empty part, a non-positive interval or a store without bucket/region.
    """
    if not interval > 0:
        raise ValueError(f"interval must be > 0 seconds, got {interval!r}")
    if not python.strip() or not trainer_args.strip() or not out:
        raise ValueError("python, trainer_args and out must not be empty")
    watch = f'{python} -u -m trainer.spot_watch --pid "$_t" --out {quote_path(out)} --interval {interval:g}'
    trainer = f"{python} -u -m trainer run {trainer_args} & _t=$!; {watch} & _w=$!; "
    wait_trainer = 'while :; do _sig=; wait "$_t"; _rc=$?; [ -n "$_sig" ] || break; done; '
    stop_watch = 'kill "$_w" 2>/dev/null; wait "$_w" 2>/dev/null; '
    if store is None:
        return f"trap '_sig=1' TERM INT; {trainer}{wait_trainer}{stop_watch}exit \"$_rc\""
    code_file = shlex.quote(EXIT_CODE_FILE)
    code_tmp = shlex.quote(EXIT_CODE_FILE + ".tmp")
    upload = uploader_command(python, out, store)
    return (
        f"trap '_sig=1' TERM INT; rm -f {code_file}; {trainer}( trap '' TERM INT; exec {upload} ) & _s=$!; "
        f"{wait_trainer}{stop_watch}"
        f'echo "$_rc" > {code_tmp} && mv {code_tmp} {code_file}; '
        'while :; do _sig=; wait "$_s"; [ -n "$_sig" ] || break; done; exit "$_rc"'
    )


def uploader_command(python: str, out: str, store: StoreTarget) -> str:
    """`python -m trainer.store_sync ...` for the trainer whose pid is `$_t`, in the workdir (the cwd)."""
    if not store.bucket or not store.region or not store.interval > 0 or not store.final_timeout >= 0:
        raise ValueError(f"a store needs a bucket, a region and intervals > 0, got {store!r}")
    if not store.prefix.endswith("/") or store.prefix.startswith("/"):
        raise ValueError(f"the run prefix must look like 'runs/<run-id>/', got {store.prefix!r}")
    words = [
        f'{python} -u -m trainer.store_sync --pid "$_t" --workdir . --out {quote_path(out)}',
        f"--bucket {shlex.quote(store.bucket)} --prefix {shlex.quote(store.prefix)}",
        f"--region {shlex.quote(store.region)} --interval {store.interval:g}",
        f"--exit-code-file {shlex.quote(EXIT_CODE_FILE)}",
    ]
    if store.final_timeout != StoreTarget.final_timeout:
        words.append(f"--final-timeout {store.final_timeout:g}")
    if store.terminate_when_done:
        words.append("--terminate-when-done")
    return " ".join(words)


def quote_path(path: str) -> str:
    """A path as shell text: quoted, but a leading `~/` (or `~`) stays the home folder."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)
