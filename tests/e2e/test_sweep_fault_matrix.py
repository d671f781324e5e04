"""Issue 28's fault matrix: a sweep heals like a train. An instance lost in any phase is replaced (up to
the stack's max_recoveries), and a point never hears "every instance of this hardware is gone" while a
replacement may come.

Each row loses instances at one moment of a small real sweep (moto as EC2, the fake cloud-init's loopback
sshd per instance as the machines) and checks: the sweep's exit code; every point finished, with weights
bitwise equal to the same point of one `ec2dbn sweep --local` (run once for the module, in the fake
instance's environment); the replacements sweep.json counts; and nothing ec2dbn-tagged left (instances,
spot requests — closed with their instance, as EC2 does: tests/support/ec2_strict.py — security groups,
key pairs, launch templates, fleets). The moments, and where the test gets hold of them:
- before running: CreateFleet's answer (a botocore hook on ec2dbn's clients) — EC2 ends it at once;
- before SSH: the fake cloud never boots it (its line never comes to $EC2DBN_SSH_ENDPOINTS), and EC2
  ends it while ec2dbn waits for that line;
- during bootstrap: as the fleet starts bootstrapping it;
- during ship, a point's run, pull: as a point's pipeline starts that phase (ec2dbn.run.pipeline.PHASE_HOOKS),
  with or without a spot notice first (the fake IMDS announces it; the instance's watcher stops the
  held trainer after a checkpoint; EC2 takes the instance a little later).
The sweep runs in this process so the hooks apply; nothing waits on this machine's speed (a trainer that
must still run when its instance is lost is held at a known point, tests/support/hold.py).
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from ec2dbn.cli import main
from ec2dbn.run import pipeline
from ec2dbn.stack import ready
from tests.e2e.helpers import run_cli, write_stack
from tests.support.fake_cloud import EC2_DESCRIBE_LAG_S, FakeCloudInit
from tests.support.hold import HELD, TrainerHold
from tests.support.moto_server import MotoServer, add_hook, tagged_resources
from tests.support.sshd import default_env

pytestmark = pytest.mark.slow

#: Tiny points: 784-16-10 on 300 real digits, 2 epochs; the learning rate makes each point's numbers.
JOB = {
    "data": {"name": "mnist-5k", "test_size": 0.25, "seed": 7, "limit": 300},
    "model": {"layers": [784, 16, 10], "learn_rates": 0.3, "learn_rate_decays": 0.9, "epochs": 2},
    "backend": "numpy",
    "sweep": {"grid": {"model.learn_rates": [0.1, 0.3, 1.0]}},
}
THREADS = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


MOMENTS = {
    "before-running": "before running",
    "before-ssh": "before SSH",
    "bootstrap": "during bootstrap",
    "ship": "during ship",
    "follow": "during a point's run",
    "pull": "during pull",
}


@dataclass(frozen=True)
class Fault:
    """One row: where the loss happens, on what fleet, and what the sweep must answer."""

    where: str  # before-running | before-ssh | bootstrap | ship | follow | pull
    instances: int = 1  # the fleet's size (--instances)
    points: int = 2
    notice: bool = False  # a spot interruption notice first; EC2 takes the instance after
    both: bool = False  # every instance of the fleet lost at that moment, not only the point's
    then: str | None = None  # the replacement lost in turn, at this moment
    max_recoveries: int = 2
    code: int = 0
    replacements: int = 1

    @property
    def label(self) -> str:
        what = "every instance" if self.both else "an instance"
        text = f"{what} lost {MOMENTS[self.where]}"
        text += f", fleet of {self.instances}" + (", after a spot notice" if self.notice else "")
        if self.then:
            text += f"; its replacement lost at {self.then}"
        return text + f" (max_recoveries {self.max_recoveries})"


ROWS = [
    Fault("before-running"),
    Fault("before-ssh"),
    Fault("bootstrap"),
    Fault("bootstrap", instances=2, points=3),
    Fault("ship", instances=2, points=3),
    Fault("follow"),
    Fault("follow", notice=True),
    Fault("follow", instances=2, points=3, notice=True),
    Fault("pull", instances=2, points=3),
    Fault("follow", then="bootstrap", replacements=2),
    Fault("follow", instances=2, points=3, both=True, replacements=2),
    # The budget spent: the waiting point gives up (resumable), the sweep says so with exit 1.
    Fault("follow", then="bootstrap", max_recoveries=1, code=1, replacements=1),
]


@dataclass
class Line:
    fault: str
    code: int
    points: str
    replacements: int
    leftovers: str


TABLE: list[Line] = []


@pytest.fixture(scope="module", autouse=True)
def print_table(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if not TABLE:
        return
    width = max(len(r.fault) for r in TABLE)
    lines = [f"{'fault':<{width}} | exit | replacements | points | leftovers", "-" * (width + 60)]
    lines += [
        f"{r.fault:<{width}} | {r.code:<4} | {r.replacements:<12} | {r.points} | {r.leftovers}" for r in TABLE
    ]
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        print(f"\n\nsweep fault matrix, issue 28 ({len(TABLE)} rows)\n" + "\n".join(lines), flush=True)


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every point of JOB's grid run by `ec2dbn sweep --local`, once, with the fake instance's
    environment (no BLAS settings of this machine but the thread counts the instances get too)."""
    folder = tmp_path_factory.mktemp("local-sweep")
    job = folder / "sweep-job.yaml"
    job.write_text(yaml.safe_dump(JOB))
    home = folder / "home"
    home.mkdir()
    env = {**default_env(), **THREADS, "HOME": str(home), "PYTHONFAULTHANDLER": "1"}
    args = ["sweep", str(job), "--local", "--parallel", "2", "--results", str(folder / "results")]
    code, _, err = run_cli(args, env, timeout_s=270)
    assert code == 0, err[-3000:]
    (sweep_dir,) = (folder / "results").iterdir()
    return sweep_dir


class Losses:
    """Loses instances at the row's moment (and its replacement's), as EC2 would: powered off here,
    terminated in moto. After a spot notice, EC2 takes the instance at the next moment seen."""

    def __init__(self, fault: Fault, cloud: FakeCloudInit, results: Path, hold: TrainerHold | None) -> None:
        self.fault, self.cloud, self.results, self.hold = fault, cloud, results, hold
        self.lost: list[str] = []
        self.noticed: list[str] = []
        self.noticed_point: str | None = None
        self.stage = 0
        self._lock = threading.Lock()

    def at(self, moment: str, instance_id: str | None) -> None:
        noticed = self._at(moment, instance_id)
        if noticed is not None:  # announced once the trainer holds: it is training, its handlers set
            self._wait_held(noticed)
            self.cloud.imds[noticed].announce_spot_interruption(action="terminate")

    def _at(self, moment: str, instance_id: str | None) -> str | None:
        with self._lock:
            if moment == "before-running":  # a replacement: the notice's two minutes are up
                for iid in self.noticed:
                    self.cloud.reclaim(iid, describe_lag_s=EC2_DESCRIBE_LAG_S)
                self.noticed.clear()
            here = threading.current_thread().name
            if moment != "follow" and self.hold is not None and here == self.noticed_point:
                self.hold.release()  # the noticed trainer has stopped: nothing needs holding any more
            if instance_id is None or instance_id in self.lost:
                return None
            if self.stage == 0 and moment == self.fault.where:
                self.stage = 1
                if self.fault.notice:
                    self.noticed.append(instance_id)
                    self.noticed_point = threading.current_thread().name
                    self.lost.append(instance_id)
                    return instance_id
                for iid in self._running() if self.fault.both else [instance_id]:
                    self._lose(iid)
            elif self.stage == 1 and moment == self.fault.then:
                self.stage = 2
                self._lose(instance_id)
            return None

    def _wait_held(self, iid: str) -> None:
        """Until the trainer on `iid` logs its HELD line (on the fake instance's disk); a hang guard."""
        runs = self.cloud.workdir / iid / "home" / "ec2dbn"
        give_up = time.monotonic() + 150
        while time.monotonic() < give_up:
            for log in runs.rglob("*.log"):
                with contextlib.suppress(OSError):
                    if HELD in log.read_text(errors="replace"):
                        return
            time.sleep(0.1)
        raise AssertionError(f"the trainer on {iid} never reached its hold")

    def _lose(self, iid: str) -> None:
        if iid not in self.lost:
            self.lost.append(iid)
        self.cloud.reclaim(iid, describe_lag_s=EC2_DESCRIBE_LAG_S)

    def _running(self) -> list[str]:
        ec2 = self.cloud.moto.client("ec2", self.cloud.region)
        flt = [{"Name": "instance-state-name", "Values": ["pending", "running"]}]
        return [
            i["InstanceId"]
            for r in ec2.describe_instances(Filters=flt)["Reservations"]
            for i in r["Instances"]
        ]

    def point_instance(self) -> str | None:
        """The instance of the point whose pipeline runs in this thread (its run.json says)."""
        name = threading.current_thread().name
        if not name.startswith("point-"):
            return None
        runs = list(self.results.glob(f"*/{name.removeprefix('point-')}/run.json"))
        return json.loads(runs[0].read_text()).get("instance_id") if runs else None


def install(losses: Losses, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tell `losses` of every moment: CreateFleet answers, SSH address waits, bootstraps, point phases."""

    def fleet_answer(parsed: dict[str, Any], **_: Any) -> None:
        for answer in parsed.get("Instances") or []:
            for iid in answer.get("InstanceIds") or []:
                losses.at("before-running", iid)

    add_hook("after-call.ec2.CreateFleet", fleet_answer)

    def wrap(real: Callable[..., Any], moment: str, which: Callable[..., str | None]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            losses.at(moment, which(*args, **kwargs))
            return real(*args, **kwargs)

        return wrapper

    def address_wait(st: Any, *_: Any, **__: Any) -> str | None:
        losses.cloud.wait_seen(st.instance_id)  # the fake's poller decides asynchronously which never boots
        return st.instance_id if st.instance_id in losses.cloud.unbooted else None

    def bootstrap_of(*args: Any, **_: Any) -> str:
        return Path(args[4]).name.removesuffix("-bootstrap.log")  # FleetGroup._log(iid)

    monkeypatch.setattr(ready, "remote_for", wrap(ready.remote_for, "before-ssh", address_wait))
    monkeypatch.setattr(ready, "run_bootstrap", wrap(ready.run_bootstrap, "bootstrap", bootstrap_of))
    monkeypatch.setattr(pipeline, "PHASE_HOOKS", [lambda phase: losses.at(phase, losses.point_instance())])


def same_weights(a_dir: Path, b_dir: Path) -> None:
    with np.load(a_dir / "model.npz") as a, np.load(b_dir / "model.npz") as b:
        keys = [k for k in a.files if a[k].dtype.kind == "f"]
        assert keys
        for key in keys:
            np.testing.assert_array_equal(a[key], b[key])


@pytest.mark.parametrize("fault", ROWS, ids=lambda f: f.label)
def test_a_sweep_heals_an_instance_lost_at_any_moment(
    fault: Fault,
    fake_fleet: FakeCloudInit,
    aws: MotoServer,
    local_sweep: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake_fleet.env.update(THREADS)
    fake_fleet.with_imds = fault.notice
    if fault.where == "before-ssh":
        fake_fleet.never_boot = 1
    rates = JOB["sweep"]["grid"]["model.learn_rates"][: fault.points]
    job = tmp_path / "sweep-job.yaml"
    job.write_text(yaml.safe_dump({**JOB, "sweep": {"grid": {"model.learn_rates": rates}}}))
    stack = write_stack(tmp_path, remote_dir="~/ec2dbn", max_recoveries=fault.max_recoveries)
    results = tmp_path / "results"
    with contextlib.ExitStack() as stack_of_holds:
        hold = None
        if fault.notice:  # the trainer waits at epoch 2 until the notice stops it
            hold = stack_of_holds.enter_context(TrainerHold(tmp_path / "hold", epoch=2))
            fake_fleet.env.update(hold.env)
        losses = Losses(fault, fake_fleet, results, hold)
        install(losses, monkeypatch)
        args = [str(job), "--stack", str(stack), "--instances", str(fault.instances)]
        code = main(["sweep", *args, "--results", str(results)])
    err = capsys.readouterr().err
    (sweep_dir,) = results.iterdir()
    record = json.loads((sweep_dir / "sweep.json").read_text())
    states = {p["point_id"]: p["status"] for p in record["points"]}
    (group,) = record["groups"]
    left = tagged_resources(aws)
    leftovers = "; ".join(f"{k}: {', '.join(v)}" for k, v in left.items() if v) or "none"
    TABLE.append(
        Line(
            fault.label,
            code,
            ", ".join(f"{k} {v}" for k, v in states.items()),
            group["replacements"],
            leftovers,
        )
    )

    assert losses.stage == (2 if fault.then else 1), f"the fault never happened: {err[-3000:]}"
    assert code == fault.code, err[-4000:]
    assert not re.search(r"^Traceback", err, re.MULTILINE), err[-4000:]
    assert group["replacements"] == fault.replacements, err[-3000:]
    gone = {i["instance_id"]: i["status"] for i in group["instances"] if i["instance_id"] in losses.lost}
    assert sorted(gone) == sorted(losses.lost) and set(gone.values()) <= {"lost", "failed"}
    if fault.code == 0:
        assert set(states.values()) == {"finished"}, err[-3000:]
        assert "every instance of this hardware is gone" not in err
    else:
        assert "interrupted" in states.values() and set(states.values()) <= {
            "finished",
            "interrupted",
            "skipped",
        }
        assert f"max_recoveries ({fault.max_recoveries}) spent" in err
    for point in record["points"]:
        if point["status"] == "finished":
            same_weights(sweep_dir / point["point_id"], local_sweep / point["point_id"])
    if fault.notice:  # the point stopped after a checkpoint and resumed from it on another instance
        point = str(losses.noticed_point).removeprefix("point-")
        (recovery,) = json.loads((sweep_dir / point / "run.json").read_text())["recoveries"]
        assert "spot interruption" in recovery["reason"] and recovery["checkpoint"] is True
    if fault.notice:  # the point stopped after a checkpoint and resumed from it on another instance
        point = str(losses.noticed_point).removeprefix("point-")
        (recovery,) = json.loads((sweep_dir / point / "run.json").read_text())["recoveries"]
        assert "spot interruption" in recovery["reason"] and recovery["checkpoint"] is True
    if fault.where == "before-ssh":
        (reason,) = [i["reason"] for i in group["instances"] if i["instance_id"] == losses.lost[0]]
        assert "is gone (EC2 says so" in reason  # not the whole EC2DBN_SSH_TIMEOUT
    assert leftovers == "none", leftovers
