"""What `ec2dbn train` adds to the training time: the whole flow against moto + a loopback sshd.

The peer, measured in the same run, is `ec2dbn train --local` of the same 1-epoch job: the difference is
the flow's own cost (plan, provision, connect, bootstrap, ship, detached run, log following, pull,
teardown). The remote run is done twice on the same "instance disk", so the second has a warm bootstrap
(its marker files make base/python quick), which is the case issue 4's target (≤ 5 s) is about.

    python -m benchmarks.bench_flow            # from the repository root; needs openssh-server
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ec2dbn.cli import main  # noqa: E402
from ec2dbn.run.pipeline import PHASES  # noqa: E402
from tests.e2e.helpers import write_job, write_stack  # noqa: E402
from tests.support.fake_cloud import FakeCloudInit  # noqa: E402
from tests.support.moto_server import MotoServer, aws_environment  # noqa: E402

TARGET_S = 5.0


def timed_train(args: list[str], results: Path) -> tuple[float, dict]:
    start = time.monotonic()
    code = main(["train", *args, "--results", str(results)])
    wall = time.monotonic() - start
    if code != 0:
        raise SystemExit(f"ec2dbn train {' '.join(args)} failed with exit code {code}")
    run_dir = max(results.iterdir(), key=lambda p: p.stat().st_mtime)
    return wall, json.loads((run_dir / "run.json").read_text())


def main_bench() -> None:
    work = Path(tempfile.mkdtemp(prefix="ec2dbn-bench-flow-"))
    moto = MotoServer()
    moto.seed_images()
    os.environ.update(aws_environment(moto.url, work))
    cloud = FakeCloudInit(moto, work / "instances")
    os.environ["EC2DBN_SSH_ENDPOINT"] = cloud.endpoint
    cloud.start()
    try:
        stack = write_stack(work)
        job = write_job(work, epochs=1)
        local_wall, local = timed_train(["--local", str(job)], work / "local")
        cold_wall, cold = timed_train([str(job), "--stack", str(stack)], work / "remote-cold")
        warm_wall, warm = timed_train([str(job), "--stack", str(stack)], work / "remote-warm")
    finally:
        cloud.stop()
        moto.stop()

    print("\nec2dbn train, 1-epoch job (784-200-10, 2,000 mnist-5k digits, NumPy), moto + loopback sshd")
    print(f"{'phase':<10} {'cold (s)':>9} {'warm (s)':>9}")
    for phase in PHASES:
        print(f"{phase:<10} {cold['phases'].get(phase, 0):>9.2f} {warm['phases'].get(phase, 0):>9.2f}")
    print(f"{'wall':<10} {cold_wall:>9.2f} {warm_wall:>9.2f}")
    overhead = warm_wall - local_wall
    local_train = local["phases"]["train"]
    print(f"\n--local wall (the peer): {local_wall:.2f} s  (its train phase {local_train:.2f} s)")
    print(f"flow overhead, warm bootstrap: {overhead:.2f} s (target ≤ {TARGET_S:.0f} s)")
    print(f"ratio remote-warm / local: {warm_wall / local_wall:.2f}x")


if __name__ == "__main__":
    main_bench()
