"""A sweep's points: grid and random specs, the job file's `sweep:` section, and validation of every point
like a job before anything is launched (the CLI's one-line errors, exit 2, nothing created)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ec2dbn.cli import main
from ec2dbn.errors import ConfigError
from ec2dbn.spec.jobfiles import read_job_mapping
from ec2dbn.sweep import points as pts

JOB = {
    "data": {"name": "digits", "test_size": 0.3, "seed": 1},
    "model": {"layers": [64, 20, 10], "learn_rates": 0.3, "epochs": 1},
    "backend": "numpy",
}


def job_file(tmp_path: Path, **extra: object) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump({**JOB, **extra}))
    return path


def test_grid_values_are_yaml_split_outside_brackets() -> None:
    assert pts.parse_grid_spec("model.learn_rates=0.1,1e-4, 3") == ("model.learn_rates", [0.1, 1e-4, 3])
    assert pts.parse_grid_spec("model.layers=[784,800,10];[784,800,800,10]") == (
        "model.layers",
        [[784, 800, 10], [784, 800, 800, 10]],
    )
    assert pts.parse_grid_spec("model.layers=[784,800,10],[784,10]")[1] == [[784, 800, 10], [784, 10]]
    assert pts.parse_grid_spec("backend=numpy,cupy")[1] == ["numpy", "cupy"]
    for bad in ("model.learn_rates", "=1,2", "model.learn_rates=", "model.learn_rates=1,,2"):
        with pytest.raises(ConfigError, match="--grid"):
            pts.parse_grid_spec(bad)


def test_grid_points_are_the_product_in_a_stable_order() -> None:
    spec = pts.merge_spec(pts.PointSpec(), ("a.x=1,2", "b=u,v,w"), None, None, ())
    points = pts.expand(spec)
    assert [p.point_id for p in points] == [f"p{i:02d}" for i in range(1, 7)]
    assert [(p.values["a.x"], p.values["b"]) for p in points] == [
        (1, "u"), (1, "v"), (1, "w"), (2, "u"), (2, "v"), (2, "w"),
    ]  # fmt: skip
    assert points[0].label() == "a.x=1 b=u"


def test_random_points_are_seeded_and_within_their_distributions() -> None:
    sample = (
        "model.learn_rates=loguniform(0.01, 1)",
        "model.momentum=uniform(0.5,0.9)",
        "backend=choice(numpy,cupy)",
    )
    one = pts.expand(pts.merge_spec(pts.PointSpec(), (), 20, 7, sample))
    again = pts.expand(pts.merge_spec(pts.PointSpec(), (), 20, 7, sample))
    other = pts.expand(pts.merge_spec(pts.PointSpec(), (), 20, 8, sample))
    assert [p.values for p in one] == [p.values for p in again]
    assert [p.values for p in one] != [p.values for p in other]
    lrs = [p.values["model.learn_rates"] for p in one]
    assert all(0.01 <= x <= 1 for x in lrs) and min(lrs) < 0.1 < max(lrs)  # spread over the decades
    assert all(0.5 <= p.values["model.momentum"] <= 0.9 for p in one)
    assert {p.values["backend"] for p in one} == {"numpy", "cupy"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("normal(0,1)", "is not uniform"),
        ("uniform(1,0)", "a < b"),
        ("loguniform(0,1)", "a > 0"),
        ("uniform(a,b)", "two numbers"),
        ("choice()", "at least one value"),
    ],
)
def test_bad_distributions_are_one_line_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        pts.parse_distribution(text, "--sample k")


def test_random_needs_samples_and_samples_need_random() -> None:
    with pytest.raises(ConfigError, match="--sample needs --random"):
        pts.merge_spec(pts.PointSpec(), (), None, None, ("k=uniform(0,1)",))
    with pytest.raises(ConfigError, match="--random N needs"):
        pts.merge_spec(pts.PointSpec(), (), 3, None, ())
    with pytest.raises(ConfigError, match="no points to sweep"):
        pts.expand(pts.PointSpec())


def test_the_sweep_section_is_read_and_the_command_line_overrides_it(tmp_path: Path) -> None:
    section = {
        "grid": {"model.learn_rates": [0.1, 0.3]},
        "random": 2,
        "seed": 3,
        "sample": {"model.epochs": "choice(1,2)"},
    }
    base, found = read_job_mapping(job_file(tmp_path, sweep=section))
    assert "sweep" not in base and found == section
    spec = pts.merge_spec(
        pts.spec_from_section(found, "job.yaml"), ("model.learn_rates=1.0",), None, None, ()
    )
    points = pts.expand(spec)
    assert len(points) == 2 and {p.values["model.learn_rates"] for p in points} == {1.0}
    with pytest.raises(ConfigError, match=r"sweep\.grids: unknown key"):
        pts.spec_from_section({"grids": {}}, "job.yaml")
    with pytest.raises(ConfigError, match=r"sweep\.grid: expected KEY: \[VALUE"):
        pts.spec_from_section({"grid": {"model.epochs": 3}}, "job.yaml")


def test_every_point_is_validated_like_a_job_and_names_the_point() -> None:
    good = pts.validate_point(pts.Point("p01", {"model.learn_rates": 0.5}), JOB, stack_ref=None, local=True)
    assert good.job.model.learn_rates == (0.5, 0.5) and good.stack is None
    cases = [
        ({"model.learn_rates": -1}, r"point p02 \(model.learn_rates=-1\): model.learn_rates"),
        ({"model.learn_rate": 0.1}, "did you mean 'learn_rates'"),
        ({"backend.x": 1}, "backend is a value, not a section"),
        ({"model.layers": [64, 10]}, None),
    ]
    for values, message in cases:
        point = pts.Point("p02", values)
        if message is None:
            pts.validate_point(point, JOB, stack_ref=None, local=True)
            continue
        with pytest.raises(ConfigError, match=message):
            pts.validate_point(point, JOB, stack_ref=None, local=True)


def test_hardware_points_get_their_own_stack_and_need_ec2() -> None:
    point = pts.Point("p01", {"instance_type": "g5.xlarge", "stack": "g4dn-ondemand"})
    vp = pts.validate_point(point, JOB, stack_ref=None)
    assert vp.stack is not None and vp.stack.candidates == ["g5.xlarge"] and vp.stack.market == "on-demand"
    with pytest.raises(ConfigError, match="needs EC2, not --local"):
        pts.validate_point(point, JOB, stack_ref=None, local=True)
    with pytest.raises(ConfigError, match=r"p01.*g2\.2xlarge"):
        pts.validate_point(pts.Point("p01", {"instance_type": "g2.2xlarge"}), JOB, stack_ref=None)


def test_bad_points_stop_the_cli_before_anything_exists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = job_file(tmp_path)
    results = tmp_path / "results"
    code = main(
        ["sweep", str(job), "--local", "--grid", "model.learn_rates=0.1,-2", "--results", str(results)]
    )
    err = capsys.readouterr().err
    assert code == 2 and "point p02 (model.learn_rates=-2): model.learn_rates" in err
    assert "Traceback" not in err and not results.exists()


def test_train_refuses_a_job_with_a_sweep_section(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = job_file(tmp_path, sweep={"grid": {"model.learn_rates": [0.1]}})
    code = main(["train", "--local", str(job), "--results", str(tmp_path / "r")])
    assert code == 2 and f"{job} is a sweep: run `ec2dbn sweep {job}`" in capsys.readouterr().err


def test_dry_run_lists_the_points_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = job_file(tmp_path, sweep={"grid": {"model.learn_rates": [0.1, 0.3]}})
    code = main(
        ["sweep", str(job), "--local", "--parallel", "2", "--dry-run", "--results", str(tmp_path / "r")]
    )
    out = capsys.readouterr().out
    assert code == 0 and "p01" in out and "p02" in out and "2 local worker(s)" in out
    assert not (tmp_path / "r").exists()


def test_resume_keeps_the_region_and_market_the_sweep_started_with(tmp_path: Path) -> None:
    """`sweep job --region eu-west-1 --on-demand`, then `sweep --resume ID`: the unfinished points run where
    and how the sweep started (sweep.json keeps both), not in the stack's own region; a --region given to
    --resume wins and is kept for the next one. Offline: nothing here asks AWS."""
    from ec2dbn.sweep import prepare as prep
    from ec2dbn.sweep import start

    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump({**JOB, "sweep": {"grid": {"model.learn_rates": [0.1, 0.3]}}}))
    p = start.new_sweep(job, region="eu-west-1", spot=False)
    record, sweep_dir = prep.open_sweep(
        p, tmp_path / "results", instances=None, max_instances=2, parallel=None, max_cost=None
    )
    assert [(s.region, s.market) for s in p.stacks] == [("eu-west-1", "on-demand")]
    assert (record.region, record.spot) == ("eu-west-1", False)

    _, again = start.resume_sweep(sweep_dir, instances=None, max_instances=2)
    assert [(s.region, s.market) for s in again.stacks] == [("eu-west-1", "on-demand")]
    moved, there = start.resume_sweep(sweep_dir, instances=None, max_instances=2, region="us-west-2")
    assert [(s.region, s.market) for s in there.stacks] == [("us-west-2", "on-demand")]
    assert (moved.region, moved.spot) == ("us-west-2", False)
