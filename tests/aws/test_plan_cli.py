"""`ec2dbn plan JOB`: the train dry run — validated, priced, DryRun-checked, estimated, nothing created."""

from __future__ import annotations

from pathlib import Path

from ec2dbn.cli import main
from tests.support.moto_server import count_calls, tagged_resources

REPO = Path(__file__).resolve().parents[2]


def test_plan_prints_the_plan_and_estimate_and_creates_nothing(aws, capsys) -> None:
    code = main(["plan", str(REPO / "examples" / "seed-mnist.yaml")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "Plan for stack g4dn-spot" in out
    assert "g4dn.xlarge" in out
    assert "10 epochs of [784, 800, 800, 10]" in out
    assert "estimated cost ~" in out and "10 epochs × " in out
    assert "dry run" in out and "allowed" in out
    assert not any(tagged_resources(aws).values())


def test_plan_refuses_a_bad_job_before_any_aws_call(aws, tmp_path: Path, capsys) -> None:
    job = tmp_path / "job.yaml"
    job.write_text("data: {name: digits}\nmodel: {layers: [64, 10], epochs: -1}\n")
    calls = count_calls()
    assert main(["plan", str(job)]) == 2
    err = capsys.readouterr().err
    assert "model.epochs" in err and "Traceback" not in err
    assert calls.calls == 0


def test_plan_refuses_g2_with_a_suggestion(aws, tmp_path: Path, capsys) -> None:
    stack = tmp_path / "g2.yaml"
    stack.write_text("name: g2\nregion: us-east-1\ninstance_type: g2.2xlarge\nimage: ubuntu22\n")
    calls = count_calls()
    assert main(["plan", str(REPO / "examples" / "seed-mnist.yaml"), "--stack", str(stack)]) == 2
    err = capsys.readouterr().err
    assert "g4dn.xlarge" in err and "compute capability 3.0" in err
    assert calls.calls == 0
