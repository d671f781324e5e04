"""The uploader: a sidecar that copies a run's files into the run store (S3) while the trainer runs, and all
of them, verified, when it ends; then (detached runs) terminates its own instance through the EC2 API.

The instance's root volume dies with the instance; the store does not. So, beside the trainer and the spot
watcher (trainer.sidecars composes the line), while the trainer's pid lives it uploads:

- job.yaml once, at its start;
- out/checkpoint.npz whenever it changed (looked at every 0.5 s): after a spot notice the new checkpoint has
  two minutes to get out, and an epoch's checkpoint is what `--resume` starts from;
- out/interruption.json when it appears or changes (as promptly);
- job.log, out/train.log, out/metrics.jsonl when they grew, at most once per --interval per file.

Training never waits on the store: this is another process, and a failed upload is retried later (a
backoff bounded by --interval), with one line in the job's log (stdout) when uploads start failing,
`store: upload failed (<why>); retrying every Ns`, and one when they work again.

The job's line starts it with SIGTERM and SIGINT ignored (trainer.sidecars): a stop of the whole job makes
the trainer write a checkpoint, which must still get out. When the pid is gone it waits for the trainer's
exit code (--exit-code-file, written by the shell line), uploads every file of out/ plus job.log and
job.yaml (single-part PutObjects with Content-MD5: the ETag is the MD5), lists the run prefix
(ListObjectsV2), checks each object's size and ETag, re-uploads what differs until all match or
--final-timeout runs out. Then sync.json (trainer.contract.STORE_MANIFEST), written last: the run is whole.

Credentials and endpoints are boto3's own: on EC2 the instance profile's role credentials from IMDS
(AWS_EC2_METADATA_SERVICE_ENDPOINT moves IMDS: tests), endpoints from AWS_ENDPOINT_URL(_S3/_EC2). No keys.

    python -m trainer.store_sync --pid PID --workdir DIR --bucket B --prefix RUNPREFIX --region R
        [--out DIR/out] [--interval 10] [--terminate-when-done] [--exit-code-file F] [--final-timeout 600]

Exit 0: the final sync is verified; 1: it is not (then the instance is never terminated: max_lifetime
ends it); 2: bad usage. Never a traceback. The only trainer module that imports boto3 (only this process).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

try:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
except ImportError as exc:  # a venv bootstrap did not give boto3: one line in the job's log, no traceback
    if __name__ != "__main__":
        raise
    print(f"store: cannot upload ({exc}): bootstrap's python step installs boto3", file=sys.stderr)
    sys.exit(1)

from trainer.contract import (
    CHECKPOINT_FILE,
    INTERRUPTION_FILE,
    METRICS_JSONL,
    STORE_MANIFEST,
    STORE_OUT,
    STORE_RECOVERED_MARKER,
    STORE_RETRY_MARKER,
    TRAIN_LOG,
    run_status,
)
from trainer.imds import DEFAULT_IMDS_URL, IMDS_URL_ENV, instance_id
from trainer.spot_watch import process_alive, process_start
from trainer.strict_json import dumps

JOB_FILE, JOB_LOG = "job.yaml", "job.log"
#: botocore's own override of where IMDS is; used for the instance id when EC2DBN_IMDS_URL is not set.
BOTO_IMDS_ENV = "AWS_EC2_METADATA_SERVICE_ENDPOINT"
PROMPT_CHECK_S = 0.5  # how often the checkpoint and interruption.json are looked at
EXIT_CODE_WAIT_S = 60.0  # the shell writes the exit code right after reaping the trainer
FINAL_TIMEOUT_S, FIRST_BACKOFF_S = 600.0, 0.5
#: Timeouts and retries per request: short, since a failed upload is retried by our loop anyway.
CLIENT_CONFIG = Config(connect_timeout=5, read_timeout=60, retries={"max_attempts": 2, "mode": "standard"})

Signature = tuple[int, int, int]  # (size, mtime_ns, inode) of a local file when it was read


class StoreFailure(Exception):
    """One request to the store failed; the message is short and names no credential."""


def short_why(exc: BaseException) -> str:
    """A few words for a failed request: the AWS error code, or the kind of network failure."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return str(error.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode"))
    if isinstance(exc, BotoCoreError):
        name = type(exc).__name__
        return f"{name}: no instance profile credentials" if "Credential" in name else name
    return f"{type(exc).__name__}: {exc}"


@dataclass
class Stored:
    """What the store holds of one local file, as far as this uploader knows."""

    signature: Signature
    size: int
    md5: str
    etag: str  # what S3 answered: the MD5 itself, except under SSE-KMS
    at: float = 0.0  # time.monotonic() of the upload


class Store:
    """PutObject / ListObjectsV2 under one run prefix; every failure becomes a StoreFailure."""

    def __init__(self, bucket: str, prefix: str, region: str) -> None:
        self.bucket, self.prefix, self.region = bucket, prefix, region
        self._clients: dict[str, Any] = {}

    def _client(self, service: str) -> Any:
        """A client made on first use, and made again after NoCredentialsError: a client keeps the
        credentials it found when made, and an instance profile's may come a moment after boot."""
        if service not in self._clients:
            session = boto3.session.Session()
            self._clients[service] = session.client(service, region_name=self.region, config=CLIENT_CONFIG)
        return self._clients[service]

    def _fail(self, service: str, exc: BotoCoreError | ClientError) -> StoreFailure:
        if isinstance(exc, NoCredentialsError):
            self._clients.pop(service, None)
        return StoreFailure(short_why(exc))

    def put(self, name: str, data: bytes) -> tuple[str, str]:
        """Upload `data` as prefix+name with its Content-MD5 (S3 refuses a body that does not match it);
        returns (MD5, ETag). The ETag is the MD5 for a single-part upload, except with SSE-KMS (a bucket
        the user named may use it), where S3's own Content-MD5 check is what vouches for the bytes."""
        md5 = hashlib.md5(data, usedforsecurity=False)
        try:
            reply = self._client("s3").put_object(
                Bucket=self.bucket,
                Key=self.prefix + name,
                Body=data,
                ContentMD5=base64.b64encode(md5.digest()).decode("ascii"),
            )
        except (BotoCoreError, ClientError) as exc:
            raise self._fail("s3", exc) from None
        etag = str(reply.get("ETag", "")).strip('"')
        if etag != md5.hexdigest() and not str(reply.get("ServerSideEncryption", "")).startswith("aws:kms"):
            raise StoreFailure(f"{name}: the store's ETag {etag} is not the file's MD5")
        return md5.hexdigest(), etag

    def listing(self) -> dict[str, tuple[int, str]]:
        """{name relative to the prefix: (size, ETag without quotes)} of every object under the prefix."""
        found: dict[str, tuple[int, str]] = {}
        try:
            paginator = self._client("s3").get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
                for obj in page.get("Contents", []):
                    found[obj["Key"][len(self.prefix) :]] = (int(obj["Size"]), str(obj["ETag"]).strip('"'))
        except (BotoCoreError, ClientError) as exc:
            raise self._fail("s3", exc) from None
        return found

    def terminate(self, instance_id: str) -> None:
        """TerminateInstances on `instance_id` (the role may end only its own instance)."""
        try:
            self._client("ec2").terminate_instances(InstanceIds=[instance_id])
        except (BotoCoreError, ClientError) as exc:
            raise self._fail("ec2", exc) from None


def read_snapshot(path: Path) -> tuple[Signature, bytes] | None:
    """The file's signature and its bytes up to the size it had when opened (a log may grow meanwhile);
    None when it does not exist. A checkpoint is replaced atomically, so the open file stays whole."""
    try:
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            data = fh.read(st.st_size)
    except FileNotFoundError:
        return None
    return (len(data), st.st_mtime_ns, st.st_ino), data


def signature(path: Path) -> Signature | None:
    with contextlib.suppress(OSError):
        st = path.stat()
        return st.st_size, st.st_mtime_ns, st.st_ino
    return None


class Uploader:
    """The sidecar's state: what was uploaded, whether uploads are failing, and the two phases (`follow`
    while the trainer runs, `final_sync` after)."""

    def __init__(self, store: Store, workdir: Path, out_dir: Path, interval: float = 10.0) -> None:
        self.store, self.workdir, self.out_dir, self.interval = store, workdir, out_dir, interval
        self.say, self.clock = _say, time.monotonic
        self.stored: dict[str, Stored] = {}
        self.failing = False
        self._backoff = FIRST_BACKOFF_S
        self._retry_at = 0.0

    # ------------------------------------------------------------------------------------- one upload

    def upload(self, name: str, path: Path) -> bool:
        """Upload `path` as `name` (relative to the run prefix) unless the store has this version already,
        or uploads are failing and the next retry is not due. True when the store has it now."""
        now = self.clock()
        if self.failing and now < self._retry_at:
            return False
        snap = read_snapshot(path)
        if snap is None:
            return False
        sig, data = snap
        known = self.stored.get(name)
        if known is not None and known.signature == sig:
            return True
        try:
            md5, etag = self.store.put(name, data)
        except StoreFailure as exc:
            self._failed(str(exc))
            return False
        self.stored[name] = Stored(sig, len(data), md5, etag, now)
        self._worked()
        return True

    def _failed(self, why: str) -> None:
        if not self.failing:
            self.say(f"{STORE_RETRY_MARKER} ({why}); retrying every {self.interval:g}s")
            self.failing = True
            self._backoff = FIRST_BACKOFF_S
        self._retry_at = self.clock() + self._backoff
        self._backoff = min(self._backoff * 2, self.interval)

    def _worked(self) -> None:
        if self.failing:
            self.say(STORE_RECOVERED_MARKER)
        self.failing = False

    # ------------------------------------------------------------------------------ while it trains

    def prompt_files(self) -> list[tuple[str, Path]]:
        """Uploaded as soon as they change: what a resume needs, and the record of a spot notice."""
        return [(STORE_OUT + n, self.out_dir / n) for n in (CHECKPOINT_FILE, INTERRUPTION_FILE)]

    def growing_files(self) -> list[tuple[str, Path]]:
        """Uploaded when grown, at most once per interval each: the logs a user follows."""
        logs = [(STORE_OUT + n, self.out_dir / n) for n in (TRAIN_LOG, METRICS_JSONL)]
        return [(JOB_LOG, self.workdir / JOB_LOG), *logs]

    def tick(self) -> None:
        """One look at the files while the trainer runs."""
        for name, path in self.prompt_files():
            known = self.stored.get(name)
            sig = signature(path)
            if sig is not None and (known is None or known.signature != sig):
                self.upload(name, path)
        now = self.clock()
        for name, path in self.growing_files():
            known = self.stored.get(name)
            sig = signature(path)
            if sig is None or (known is not None and known.signature == sig):
                continue
            if known is None or now - known.at >= self.interval:
                self.upload(name, path)

    def follow(self, alive: Callable[[], bool]) -> None:
        """Upload job.yaml, then keep the store current while `alive()` (the trainer's pid lives)."""
        self.upload(JOB_FILE, self.workdir / JOB_FILE)
        while alive():
            self.tick()
            time.sleep(PROMPT_CHECK_S)

    # ------------------------------------------------------------------------------ after it ended

    def final_files(self) -> dict[str, Path]:
        """Every file of out/ (not the hidden temporary files of atomic writes), job.log and job.yaml."""
        files = {JOB_FILE: self.workdir / JOB_FILE, JOB_LOG: self.workdir / JOB_LOG}
        with contextlib.suppress(FileNotFoundError):
            for entry in sorted(self.out_dir.iterdir()):
                if entry.is_file() and not entry.name.startswith("."):
                    files[STORE_OUT + entry.name] = entry
        return {name: path for name, path in files.items() if path.is_file()}

    def final_sync(self, exit_code: int | None, instance_id: str | None, timeout_s: float) -> bool:
        """Upload and verify every final file, then write the manifest; True when all of it is in the store.

        Retries (uploads, the listing, the manifest) until `timeout_s` seconds have passed."""
        give_up = self.clock() + timeout_s
        files: dict[str, Path] = {}

        def round_verified() -> bool:
            files.clear()
            files.update(self.final_files())
            for name, path in files.items():
                self.upload(name, path)
            differ = self._verify(files)
            for name in differ or []:
                self.stored.pop(name, None)  # the store's copy is not what we sent: send it again
            return differ == []

        if not self._until(give_up, round_verified):
            return False
        total = sum(self.stored[n].size for n in files)
        where = f"s3://{self.store.bucket}/{self.store.prefix}"
        self.say(f"store: final sync verified ({len(files)} files, {total} bytes) in {where}")
        self.upload(JOB_LOG, self.workdir / JOB_LOG)  # with that line in it, best effort
        manifest = {
            "exit_code": exit_code,
            "status": run_status(exit_code) if exit_code is not None else "unknown",
            "finished_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "instance_id": instance_id,
            "files": {n: {"size": self.stored[n].size, "md5": self.stored[n].md5} for n in sorted(files)},
        }
        body = (dumps(manifest, indent=2) + "\n").encode("utf-8")
        return self._until(give_up, lambda: self._put(STORE_MANIFEST, body))

    def _put(self, name: str, data: bytes) -> bool:
        try:
            self.store.put(name, data)
        except StoreFailure as exc:
            self._failed(str(exc))
            return False
        self._worked()
        return True

    def _until(self, give_up: float, attempt: Callable[[], bool]) -> bool:
        """Call `attempt` until it returns True (then True) or `give_up` (monotonic) has passed (False)."""
        while not attempt():
            if self.clock() >= give_up:
                return False
            time.sleep(max(self._retry_at - self.clock(), FIRST_BACKOFF_S))
        return True

    def _verify(self, files: dict[str, Path]) -> list[str] | None:
        """The names whose store copy differs from the local file ([] all match); None: no listing.
        A file gone meanwhile leaves `files` (there is nothing of it to keep)."""
        if self.failing and self.clock() < self._retry_at:
            return None
        try:
            listing = self.store.listing()
        except StoreFailure as exc:
            self._failed(str(exc))
            return None
        differ = []
        for name, path in list(files.items()):
            snap = read_snapshot(path)
            if snap is None:
                del files[name]
                continue
            # Verified: the local file is what was sent (its MD5, which S3 checked on arrival) and the
            # store's object is what S3 then kept (its size and ETag).
            sent, local_md5 = self.stored.get(name), hashlib.md5(snap[1], usedforsecurity=False).hexdigest()
            if sent is None or sent.md5 != local_md5 or listing.get(name) != (sent.size, sent.etag):
                differ.append(name)
        return differ


# ------------------------------------------------------------------------------------------ the instance


def read_exit_code(path: Path | None, wait_s: float = EXIT_CODE_WAIT_S) -> int | None:
    """The trainer's exit code from the shell line's file, waiting up to `wait_s` for it to appear."""
    if path is None:
        return None
    give_up = time.monotonic() + wait_s
    while True:
        with contextlib.suppress(OSError, ValueError):
            return int(path.read_text().strip())
        if time.monotonic() >= give_up:
            return None
        time.sleep(0.1)


def _say(line: str) -> None:
    with contextlib.suppress(OSError, ValueError):  # a closed stdout must not stop the uploads
        print(line, flush=True)


# ------------------------------------------------------------------------------------------------ the CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainer.store_sync",
        description="Upload a run's files into the run store (S3) while the trainer runs, verify them all "
        "when it ends, write sync.json; optionally terminate this instance afterwards.",
    )
    parser.add_argument("--pid", type=int, required=True, help="the trainer's process id")
    parser.add_argument("--workdir", type=Path, required=True, help="the run's folder (job.yaml, job.log)")
    parser.add_argument("--out", type=Path, help="the trainer's --out folder (default: WORKDIR/out)")
    for name in ("bucket", "prefix", "region"):  # the prefix is the run's: runs/RUN_ID/
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between log uploads")
    parser.add_argument("--exit-code-file", type=Path, help="where the shell line writes the trainer's code")
    parser.add_argument("--final-timeout", type=float, default=FINAL_TIMEOUT_S, help="seconds it retries")
    parser.add_argument("--terminate-when-done", action="store_true", help="then end this instance (EC2 API)")
    return parser


def run(args: argparse.Namespace) -> int:
    out_dir = args.out if args.out is not None else args.workdir / "out"
    if not out_dir.is_absolute():
        out_dir = args.workdir / out_dir
    uploader = Uploader(Store(args.bucket, args.prefix, args.region), args.workdir, out_dir, args.interval)
    start = process_start(args.pid)
    _say(f"store: uploading this run to s3://{args.bucket}/{args.prefix} (logs every {args.interval:g}s)")
    uploader.follow(lambda: process_alive(args.pid, start))
    exit_code = read_exit_code(args.exit_code_file)
    iid = instance_id(os.environ.get(IMDS_URL_ENV) or os.environ.get(BOTO_IMDS_ENV) or DEFAULT_IMDS_URL)
    if not uploader.final_sync(exit_code, iid, args.final_timeout):
        stays = " (the instance stays up: max_lifetime still ends it)" if args.terminate_when_done else ""
        _say(f"store: final sync NOT verified after {args.final_timeout:g}s: the store may lack files{stays}")
        return 1
    if args.terminate_when_done:
        if iid is None:
            _say("store: not on EC2 (no instance id from the metadata service): nothing to terminate")
            return 0
        _say(f"store: the job is over and its files are in the store: terminating {iid} through the EC2 API")
        try:
            uploader.store.terminate(iid)
        except StoreFailure as exc:
            _say(f"store: could not terminate {iid} ({exc}): it stays up until max_lifetime ends it")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.pid <= 0 or not args.interval > 0 or not args.final_timeout >= 0:
        print("error: --pid must be a pid, --interval and --final-timeout seconds > 0", file=sys.stderr)
        return 2
    if not args.prefix.endswith("/") or args.prefix.startswith("/"):
        print(f"error: --prefix must look like runs/RUN_ID/, got {args.prefix!r}", file=sys.stderr)
        return 2
    try:
        return run(args)
    except KeyboardInterrupt:  # run by hand (the job's line starts it with SIGINT and SIGTERM ignored)
        print("store: interrupted: the final sync did not run", file=sys.stderr)
        return 1
    except Exception as exc:  # never a traceback in the job's log
        with contextlib.suppress(OSError, ValueError):
            print(f"store: stopped by an unexpected error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
