"""The job schema: nolearn's defaults, strict one-line errors naming the key, and the CLI's exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.trainer.trainer_fixtures import run_trainer
from trainer.config import DataConfig, Job, RunConfig, load_job, parse_job, parse_model
from trainer.errors import JobError

SEED_JOB = """\
data:  {name: mnist, test_size: 0.33, seed: 42}
model: {layers: [784, 800, 800, 10], learn_rates: 0.3, learn_rate_decays: 0.9, epochs: 10}
backend: auto
stack: g4dn-spot
run: {max_lifetime: 2h}
"""


def job(**model: object) -> dict[str, object]:
    return {"data": {"name": "digits"}, "model": {"layers": [64, 100, 10], **model}}


def test_seed_job_parses_with_nolearn_defaults(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(SEED_JOB)
    j = load_job(path)
    assert j.data == DataConfig("mnist", 0.33, 42)
    m = j.model
    assert m.layers == (784, 800, 800, 10)
    assert m.learn_rates == (0.3, 0.3, 0.3) and m.learn_rate_decays == (0.9, 0.9, 0.9)
    # nolearn's defaults for everything not given
    assert m.learn_rate_minimums == (0.0,) * 3 and m.momentum == 0.9 and m.l2_costs == (0.0001,) * 3
    assert m.minibatch_size == 64 and m.scales == (0.05,) * 3 and m.epochs == 10
    assert m.epochs_pretrain == (0, 0, 0) and m.dropouts == (0.0,) * 3
    assert m.real_valued_vis is True and m.use_re_lu is False and m.seed == 42
    # *_pretrain default to their fine-tuning values
    assert (
        m.learn_rates_pretrain == m.learn_rates
        and m.momentum_pretrain == 0.9
        and m.l2_costs_pretrain == m.l2_costs
    )
    # the orchestrator's sections are carried through untouched
    assert j.backend == "auto" and j.stack == "g4dn-spot" and j.run == RunConfig(max_lifetime="2h")


def test_to_dict_round_trips() -> None:
    j = parse_job(
        {
            **job(
                learn_rates=[0.1, 0.2], epochs_pretrain=[2, 0], learn_rates_pretrain=0.01, dropouts=[0.2, 0.5]
            ),
            "stack": "g5-spot",
            "run": {"max_lifetime": "90m"},
        }
    )
    d = j.to_dict()
    assert d["model"]["learn_rates"] == [0.1, 0.2] and d["model"]["epochs_pretrain"] == [2, 0]
    assert parse_job(d) == j
    assert isinstance(j, Job)


def test_per_layer_values_and_yaml_exponents(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(
        "data: {name: digits}\nmodel: {layers: [64, 10, 10], l2_costs: 1e-4, learn_rates: [1, 2.5e-1]}\n"
    )
    m = load_job(path).model
    assert m.l2_costs == (1e-4, 1e-4)  # PyYAML alone would read 1e-4 as a string
    assert m.learn_rates == (1.0, 0.25) and all(isinstance(x, float) for x in m.learn_rates)


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        (
            job(learn_rates="fast"),
            "model.learn_rates: expected a number > 0 or a list of 2 numbers, got 'fast'",
        ),
        (job(learn_rates=[0.1, 0.2, 0.3]), "model.learn_rates: expected a number > 0 or a list of 2 numbers"),
        (job(learn_rates=[0.1, -0.2]), "model.learn_rates[1]: expected a number > 0, got -0.2"),
        (job(learn_rates=-0.1), "model.learn_rates: expected a number > 0"),
        (job(minibatch_size=0), "model.minibatch_size: expected an integer >= 1, got 0"),
        (job(minibatch_size=True), "model.minibatch_size: expected an integer >= 1, got True"),
        (job(epochs=2.5), "model.epochs: expected an integer >= 0, got 2.5"),
        (job(dropouts=1.0), "model.dropouts: expected a number in [0, 1)"),
        (job(momentum=1), "model.momentum: expected a number in [0, 1), got 1"),
        (job(use_re_lu="yes"), "model.use_re_lu: expected true or false, got 'yes'"),
        (job(seed=-1), "model.seed: expected an integer >= 0, got -1"),
        (job(learn_rate=0.1), "model.learn_rate: unknown key (did you mean 'learn_rates'?)"),
        (job(epochs_pretrain=[1, 1.5]), "model.epochs_pretrain[1]: expected an integer >= 0, got 1.5"),
        (
            {"data": {"name": "digits"}, "model": {"layers": [64]}},
            "model.layers: expected a list of at least 2",
        ),
        (
            {"data": {"name": "digits"}, "model": {"layers": [64, 0]}},
            "model.layers: expected a list of at least 2",
        ),
        ({"data": {"name": "digits"}, "model": {}}, "model.layers: required key missing"),
        ({"model": {"layers": [64, 10]}}, "data: required key missing"),
        (
            {"data": {"name": "digits", "test_size": 1.0}, "model": {"layers": [2, 2]}},
            "data.test_size: expected",
        ),
        (
            {"data": {"name": "digits", "limit": 0}, "model": {"layers": [2, 2]}},
            "data.limit: expected an integer",
        ),
        (
            {"data": {"name": "digits", "mirrors": ["ftp"]}, "model": {"layers": [2, 2]}},
            "data.mirrors[0]: expected",
        ),
        ({"data": {"name": ""}, "model": {"layers": [2, 2]}}, "data.name: expected"),
        (
            {"data": {"nmae": "x"}, "model": {"layers": [2, 2]}},
            "data.nmae: unknown key (did you mean 'name'?)",
        ),
        ({**job(), "backend": "gpu"}, "backend: expected one of auto, numpy, cupy, got 'gpu'"),
        ({**job(), "trainer": {}}, "trainer: unknown key"),
        ([1, 2], "job: expected a mapping"),
    ],
)
def test_bad_values_name_the_key(mapping: object, message: str) -> None:
    with pytest.raises(JobError) as err:
        parse_job(mapping)
    text = str(err.value)
    assert text.startswith(message), text
    assert "\n" not in text


FLOAT32 = "cannot be represented in float32"


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"scales": 1e308}, f"model.scales: 1e+308 {FLOAT32}"),
        ({"learn_rates": 1e40}, f"model.learn_rates: 1e+40 {FLOAT32}"),
        ({"learn_rates": [0.1, 3.5e38]}, f"model.learn_rates[1]: 3.5e+38 {FLOAT32}"),
        ({"l2_costs": 1e-50}, f"model.l2_costs: 1e-50 {FLOAT32}"),  # would silently become 0
        ({"learn_rates_pretrain": 10**39}, f"model.learn_rates_pretrain: {10**39!r} {FLOAT32}"),
        ({"momentum": 1e-60}, f"model.momentum: 1e-60 {FLOAT32}"),
        ({"layers": [64, 2**31, 10]}, "model.layers[1]: 2,147,483,648 is more than the 2,147,483,647"),
        ({"minibatch_size": 2**40}, "model.minibatch_size: 1,099,511,627,776 is more than the"),
    ],
)
def test_values_the_model_cannot_hold_are_refused(model: dict[str, object], message: str) -> None:
    with pytest.raises(JobError) as err:
        parse_job(job(**model))
    text = str(err.value)
    assert text.startswith(message), text
    assert "\n" not in text


@pytest.mark.parametrize(
    "model",
    [
        {"learn_rates": 1e30},  # diverges, but is a float32: the run says so, validation does not guess
        {"scales": 3.4028234663852886e38},  # float32's largest value
        {"l2_costs": 1.5e-45, "learn_rate_minimums": 0},  # its smallest, and zero
        {"momentum": 0.999999},
    ],
)
def test_legal_but_unwise_values_are_accepted(model: dict[str, object]) -> None:
    parse_job(job(**model))


def test_estimator_prefix_has_no_section_name() -> None:
    with pytest.raises(JobError, match=r"^learn_rates: expected"):
        parse_model({"layers": [2, 2], "learn_rates": "x"}, prefix="")


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text("data: {name: digits}\nmodel:\n  layers: [64, 10\n  epochs: 3\n")
    with pytest.raises(JobError) as err:
        load_job(path)
    assert str(err.value).startswith(f"{path}:4:") and "invalid YAML" in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(JobError, match="cannot read the job file"):
        load_job(tmp_path / "nope.yaml")


def test_cli_reports_a_bad_job_in_one_line_with_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text("data: {name: digits}\nmodel: {layers: [64, 10], learn_rates: fast}\n")
    proc = run_trainer("run", str(path), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert (
        proc.stderr == "error: model.learn_rates: expected a number > 0 or a list of 1 number, got 'fast'\n"
    )
    assert not (tmp_path / "out").exists()  # nothing written before validation passed
