"""Job values that validate today but cannot work: a data seed NumPy refuses, `run:` keys nothing reads, a
data set name with a typo, a network no memory holds. Each is one JobError line at validation."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from tests.trainer.trainer_fixtures import dataset, one_blas_thread, run_trainer, write_job  # noqa: F401
from trainer.config import MAX_DATA_SEED, RunConfig, parse_job
from trainer.data import split_indices
from trainer.errors import JobError
from trainer.memory import BUILTIN_SAMPLES, GIB, estimate_memory


def job(data: dict | None = None, **top: object) -> dict:
    return {"data": {"name": "digits", **(data or {})}, "model": {"layers": [64, 10]}, **top}


@pytest.mark.parametrize("seed", [2**32, 2**64, 10**30])
def test_a_data_seed_beyond_randomstate_is_refused(seed: int) -> None:
    with pytest.raises(JobError, match=rf"^data.seed: expected an integer from 0 to 4294967295, got {seed}$"):
        parse_job(job({"seed": seed}))


def test_the_largest_data_seed_splits() -> None:
    assert parse_job(job({"seed": MAX_DATA_SEED})).data.seed == MAX_DATA_SEED
    train, test = split_indices(100, 0.25, MAX_DATA_SEED)  # RandomState takes it
    assert len(train) == 75 and len(test) == 25


@pytest.mark.parametrize(
    ("run", "message"),
    [
        ({"max_hours": 2}, "run.max_hours: unknown key (allowed: max_lifetime)"),
        ({"max_lifetim": "2h"}, "run.max_lifetim: unknown key (did you mean 'max_lifetime'?)"),
        ([1], "run: expected a mapping of keys, got [1]"),
        ({"max_lifetime": 3}, "run.max_lifetime: expected a duration such as 3h or 90m, got 3"),
        ({"max_lifetime": "3h\n"}, "run.max_lifetime: '3h\\n' is not a duration"),
        ({"max_lifetime": "5m"}, "run.max_lifetime: '5m' is outside 10m .. 7d"),
    ],
)
def test_the_run_section_is_checked_like_the_others(run: object, message: str) -> None:
    with pytest.raises(JobError) as err:
        parse_job(job(run=run))
    assert str(err.value).startswith(message), str(err.value)


def test_the_run_section_holds_max_lifetime() -> None:
    parsed = parse_job(job(run={"max_lifetime": "1h30m"}))
    assert parsed.run == RunConfig(max_lifetime="1h30m")
    assert parsed.to_dict()["run"] == {"max_lifetime": "1h30m"}
    assert parse_job(job(run=None)).run == RunConfig() and "run" not in parse_job(job()).to_dict()


@pytest.mark.parametrize(
    "key", ["learn_rates", "dropouts", "scales", "l2_costs", "momentum", "epochs_pretrain"]
)
def test_null_is_refused_where_the_default_is_a_value(key: str) -> None:
    with pytest.raises(JobError, match=rf"^model\.{key}: expected .*, got nothing \(null\)$"):
        parse_job({"data": {"name": "digits"}, "model": {"layers": [64, 10], key: None}})


def test_null_pretrain_values_mean_as_fine_tuning() -> None:
    model = {"layers": [64, 10], "learn_rates": 0.2, "learn_rates_pretrain": None, "momentum_pretrain": None}
    m = parse_job({"data": {"name": "digits"}, "model": model}).model
    assert m.learn_rates_pretrain == (0.2,) and m.momentum_pretrain == 0.9


@pytest.mark.parametrize("stack", [5, "", ["g4dn-spot"], {"name": "x"}])
def test_stack_names_a_stack(stack: object) -> None:
    with pytest.raises(JobError, match=r"^stack: expected a stack name"):
        parse_job(job(stack=stack))


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("mnsit", "(did you mean 'mnist'?)"),
        ("fashion_mnist", "(did you mean 'fashion-mnist'?)"),
        ("cifar", ""),
    ],
)
def test_an_unknown_data_name_is_refused_at_validation(name: str, hint: str, tmp_path: Path) -> None:
    with pytest.raises(JobError) as err:
        parse_job(job({"name": name}))
    assert str(err.value).startswith(f"data.name: unknown data set {name!r}{' ' + hint if hint else ''}:")
    # the trainer's command line: exit 2, one line, before the output folder exists
    path = write_job(tmp_path / "job.yaml", {"name": name}, {"layers": [64, 10]})
    proc = run_trainer("run", str(path), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert f"data.name: unknown data set {name!r}" in proc.stderr and not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["data/set.npz", "elsewhere/idx-folder", "x.npz"])
def test_a_path_is_a_data_name_even_before_it_exists(name: str) -> None:
    assert parse_job(job({"name": name})).data.name == name  # it may exist only where the job runs


# ------------------------------------------------------------------------------------------ memory


def test_the_issues_network_needs_hundreds_of_gib() -> None:
    est = estimate_memory(parse_job({"data": {"name": "mnist"}, "model": {"layers": [784, 100_000_000, 10]}}))
    assert est.weights == 4 * (784 * 10**8 + 10**8 * 10 + 10**8 + 10 + 784 + 10**8)
    assert est.weights / GIB > 292  # W0 alone is 784 x 10**8 float32 = 292 GiB
    assert est.optimizer == 2 * 4 * (784 * 10**8 + 10**8 * 10 + 10**8 + 10)  # velocities + gradient scratch
    assert est.samples == 70_000 and est.total > 3 * est.weights
    assert est.describe().startswith(f"{est.total / GIB:,.1f} GiB (weights 296.5 GiB, ")


def test_the_data_set_counts_with_its_limit_and_split() -> None:
    small = estimate_memory(parse_job(job({"limit": 100})))
    full = estimate_memory(parse_job(job()))
    assert small.samples == 100 and full.samples == BUILTIN_SAMPLES["digits"]
    assert full.data == 1797 * (4 * (64 + 10) + 8)  # X, one-hot targets and labels of every sample
    no_test = estimate_memory(
        parse_job({**job(), "model": {"layers": [64, 10], "eval_test_every_epoch": False}})
    )
    assert no_test.data == (1797 - 594) * (4 * (64 + 10) + 8)  # only the training split


def test_builtin_sample_counts_are_what_the_loader_returns() -> None:
    data = dataset("digits")
    assert len(data.y_train) + len(data.y_test) == BUILTIN_SAMPLES["digits"]


def test_an_npz_data_set_is_counted_from_its_header(tmp_path: Path) -> None:
    import numpy as np

    np.savez(tmp_path / "d.npz", X=np.zeros((321, 64), np.float32), y=np.zeros(321, np.int64))
    assert estimate_memory(parse_job(job({"name": str(tmp_path / "d.npz")}))).samples == 321
    missing = estimate_memory(parse_job(job({"name": str(tmp_path / "missing.npz")})))
    assert missing.samples is None and missing.data == 0 and "data not counted" in missing.describe()


@pytest.mark.parametrize(
    "model",
    [
        {"layers": [64, 2000, 2000, 10]},
        # (a 3000-wide RBM on digits diverges at the default learn_rates_pretrain 0.1)
        {
            "layers": [64, 3000, 1000, 10],
            "epochs_pretrain": [1, 1, 0],
            "minibatch_size": 32,
            "learn_rates_pretrain": 0.01,
        },
        {"layers": [64, 3000, 10], "dropouts": [0.2, 0.5], "minibatch_size": 256},
    ],
)
@pytest.mark.usefixtures("one_blas_thread")
def test_the_estimate_matches_what_training_allocates(model: dict, tmp_path: Path) -> None:
    """NumPy's allocations are traced by tracemalloc: the estimate is within 25% of the measured peak of a
    real run whose network dominates its memory."""
    from trainer.config import load_job
    from trainer.run import run_job

    path = write_job(tmp_path / "job.yaml", {"name": "digits"}, {**model, "epochs": 1})
    estimate = estimate_memory(load_job(path)).total
    dataset("digits")  # imports and caches outside the measurement
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        assert run_job(path, tmp_path / "out", backend="numpy", echo=False) == 0
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert 0.75 < estimate / peak < 1.25, (estimate / 2**20, peak / 2**20)
