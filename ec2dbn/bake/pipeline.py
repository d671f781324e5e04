"""`ec2dbn bake`: the stack's instance after its bootstrap, imaged, so a run on it starts training seconds
after SSH answers.

A bake is one `Pipeline` with other phases after connect; the pipeline's own `run` (signals as Ctrl-C,
one `finally`) guarantees that the builder is torn down whatever happens, and `_end` here first removes
an image that is not complete (deregistered, its snapshots deleted), so a failed or interrupted bake
leaves nothing:

    validate → plan → provision → connect → bootstrap → cache → prepare → image → teardown

- plan: the base image is resolved and the bake hash computed (ec2dbn.spec.bake_inputs); an available bake
  with that hash is reused, and nothing is launched.
- bootstrap: the stack's steps, with every bundled job's Python requirements.
- cache: the data sets to cache (default: the bundled jobs') fetched into the trainer's cache.
- prepare: bootstrap/_image_prepare.sh (no host key, authorized key or cloud-init state of the builder
  stays on the disk).
- image: CreateImage (tagged), wait until available, tag its snapshots.

The builder is a stack of its own (`<stack>-bake`): its key pair, security group and lease never touch
the stack a run may be using.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import cast

from ec2dbn import aws
from ec2dbn.aws.tags import BAKE_TAG, BASE_IMAGE_TAG
from ec2dbn.errors import ConfigError, Ec2dbnError
from ec2dbn.events import Reporter
from ec2dbn.package_data import trainer_dir
from ec2dbn.results_layout import BOOTSTRAP_LOG
from ec2dbn.run.capacity import StackCapacity
from ec2dbn.run.pipeline import Pipeline
from ec2dbn.run.validate import Validated, load_job_file
from ec2dbn.spec.bake_inputs import PREPARE_SCRIPT, bake_hash, bake_requirements, bundled_data_sets
from ec2dbn.spec.catalog import snapshot_price
from ec2dbn.spec.stack import Stack
from ec2dbn.ssh.bootstrap import BootstrapResult, run_script
from ec2dbn.ssh.shell import shell_exports
from ec2dbn.stack.ready import make_ready

#: The phases of a bake, in order (run.json records each one's seconds).
BAKE_PHASES = (
    "validate",
    "plan",
    "provision",
    "connect",
    "bootstrap",
    "cache",
    "prepare",
    "image",
    "teardown",
)


def builder_stack(stack: Stack) -> Stack:
    """The stack a bake launches: `stack` from its base image, under a name of its own."""
    return stack.model_copy(
        update={
            "name": f"{stack.name[:35]}-bake",
            "image": stack.source_image,
            "bake": "off",
            "base_image": None,
        }
    )


def monthly_usd(size_gb: int) -> float:
    """What keeping `size_gb` GiB of snapshots costs per month (an upper bound: EBS bills what is stored)."""
    return size_gb * snapshot_price().usd_per_gb_month


def validated(stack: Stack, stack_ref: str | None, results_root: Path) -> Validated:
    """A bake's request as the pipeline takes it: the builder stack and the default job (which only sizes
    the memory check and names the record)."""
    from ec2dbn.package_data import package_dir

    job = load_job_file(package_dir() / "data" / "default-job.yaml")
    return Validated(
        Path(f"bake-{stack.name}.yaml"), job, builder_stack(stack), stack_ref, results_root=results_root
    )


@dataclass(frozen=True)
class BakeOutcome:
    """What `bake` ended with: the bake (new or reused) and whether it already existed."""

    bake: aws.BakeRecord
    reused: bool

    @property
    def monthly_usd(self) -> float:
        return monthly_usd(self.bake.size_gb)


class Bake(Pipeline):
    """One bake. `run()` returns the exit code like a run's; `outcome` is set when it succeeded."""

    def __init__(
        self, v: Validated, reporter: Reporter, *, stack: Stack, data_sets: tuple[str, ...] | None = None
    ) -> None:
        super().__init__(v, reporter)
        self.target = stack
        self.data_sets = bundled_data_sets() if data_sets is None else data_sets
        self.outcome: BakeOutcome | None = None
        self._hash = ""
        self._image_name: str | None = None
        self._image_id: str | None = None

    def _phases(self) -> int:
        region = self.stack.region
        capacity = cast(StackCapacity, self.capacity)  # a bake always has a builder stack of its own
        with self.phase("plan"):
            capacity.plan(self.v, self.reporter, self.record.run_id)  # the lease, and what would launch
            planned = capacity.planned
            if planned is None or planned.plan is None:
                raise ConfigError(
                    f"a builder of an earlier bake is still running on stack {self.stack.name}: "
                    f"`ec2dbn teardown {self.stack.name} --yes` first"
                )
            base = planned.plan.image
            self._hash = bake_hash(base.image_id, self.stack.bootstrap)
            existing = [b for b in aws.find_bakes(region, self._hash) if b.state == "available"]
            if existing:
                self.reporter.step(
                    f"bake {self._hash} of {base.image_id} exists ({existing[0].image_id}): the inputs are "
                    "unchanged, reusing it"
                )
                self.outcome = BakeOutcome(existing[0], reused=True)
                self._discard = True  # nothing ran: no record to keep
                return 0
            steps = ", ".join(self.stack.bootstrap)
            self.reporter.step(f"baking {self._hash}: {base.image_id} ({base.name}) with {steps}")
        self._provisioning = True  # from here on something may exist in AWS: `_end` cleans up
        with self.phase("provision"):
            up = capacity.acquire(self.reporter, (), self._launched)
        self._launched(up.state)
        log = self.results_dir / BOOTSTRAP_LOG
        remote_dir = up.state.remote_dir
        ready = make_ready(
            up.state,
            self.stack.bootstrap,
            log,
            reporter=self.reporter,
            requirements=bake_requirements(),
            still_there=lambda: self._instance_fate() != "lost",
            phase=self.phase,
            on_connected=lambda r: setattr(self, "_remote", r),
        )
        remote, result = ready.remote, ready.bootstrap or BootstrapResult()
        with self.phase("cache"):
            remote.put_tree({"bake/trainer": trainer_dir()}, remote_dir)
            exports = shell_exports({"EC2DBN_CACHE_DATA": " ".join(self.data_sets)})
            run_script(remote, "_cache_data.sh", remote_dir, self.reporter, log, exports, into=result)
        with self.phase("prepare"):
            exports = shell_exports({"EC2DBN_BAKE_HASH": self._hash})
            run_script(remote, PREPARE_SCRIPT, remote_dir, self.reporter, log, exports, into=result)
        with self.phase("image"):
            tags = {BAKE_TAG: self._hash, BASE_IMAGE_TAG: base.image_id}
            self._image_name = f"ec2dbn-{self.target.name}-{self._hash}-{self.record.run_id[-4:]}"
            self._image_id = aws.start_image(
                region, up.state.instance_id or "?", self._image_name, self.target.name, tags
            )
            self.reporter.step(f"creating image {self._image_id} from {up.state.instance_id}")
            made = aws.wait_available(region, self._image_id, reporter=self.reporter)
        self.outcome = BakeOutcome(made, reused=False)
        self.record.finish(0, "finished")
        return 0

    def _end(self) -> None:
        """Remove an image that is not complete (and its snapshots), then the pipeline's own ending: the
        builder torn down, the record written. Runs on every way out of `run`."""
        try:
            if self.outcome is None and self._image_name is not None:
                self._discard_image()
        finally:
            super()._end()

    def _discard_image(self) -> None:
        region = self.stack.region
        try:
            ids = [self._image_id] if self._image_id else aws.bakes_by_name(region, self._image_name or "")
            removed = aws.remove_bakes(region, ids, reporter=self.reporter)
        except (Ec2dbnError, KeyboardInterrupt) as exc:
            self.reporter.warn(
                f"could not remove the unfinished image {self._image_id or self._image_name} ({exc}): "
                "run `ec2dbn teardown --images --yes`"
            )
            return
        for problem in removed.errors:
            self.reporter.warn(f"{problem}: run `ec2dbn teardown --images --yes`")


# ------------------------------------------------------------------------------------ keeping, removing

_AGE_RE = re.compile(r"(\d+)([dhm])")
_AGE_UNITS = {"d": 86400, "h": 3600, "m": 60}


def parse_age(text: str) -> timedelta:
    """'30d' / '12h' / '90m' as a timedelta; ConfigError (exit 2) for anything else."""
    m = _AGE_RE.fullmatch(text.strip())
    if m is None:
        raise ConfigError(f"--older-than {text!r} is not an age: use e.g. 30d, 12h or 90m")
    return timedelta(seconds=int(m.group(1)) * _AGE_UNITS[m.group(2)])


def kept(region: str) -> list[aws.BakeRecord]:
    """The region's bakes (every state), newest first: what `status` lists and `teardown --all` keeps."""
    return aws.find_bakes(region)


def older_than(records: list[aws.BakeRecord], age: timedelta | None) -> list[aws.BakeRecord]:
    """The records created more than `age` ago (all of them for None; one of unknown age counts as old)."""
    if age is None:
        return list(records)
    cutoff = datetime.now(timezone.utc) - age
    return [r for r in records if r.created_at is None or r.created_at < cutoff]


def remove(region: str, records: list[aws.BakeRecord], reporter: Reporter) -> aws.Removal:
    """Deregister the bakes and delete their snapshots (and any bake snapshot left without its image)."""
    return aws.remove_bakes(region, [r.image_id for r in records], reporter=reporter)
