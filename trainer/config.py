"""The job schema: `data`, `model` and `backend` sections of a job YAML, validated strictly by hand.

Hand-written rather than pydantic because the trainer must run with numpy + pyyaml only. Every error is a
`JobError` whose one-line message starts with the key path, e.g.
`model.learn_rates: expected a number > 0 or a list of 3 numbers, got 'fast'`.

Values the model cannot hold are refused here, before anything runs: a number the trainer computes with in
float32 must survive the conversion (`scales: 1e308` would be inf, `l2_costs: 1e-50` would be 0), and a
layer or minibatch size must fit the 32-bit ints the CUDA kernels index with. Values that are legal but
unwise (`learn_rates: 1e30`) are not second-guessed: such a run diverges and says so (trainer.divergence).

`stack` and `run` belong to the orchestrator (ec2dbn): `stack` names the stack to run on, `run` holds the
orchestrator's per-run settings (`RunConfig`). The trainer checks them like every other key, so a file it
accepts is one ec2dbn accepts, and ignores them. Any other top-level key is an error.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from trainer.errors import JobError, TrainerError
from trainer.job_checks import (
    check_float32,
    check_size,
    describe,
    is_int,
    is_number,
    nonneg_int,
    per_layer,
    plain,
    reject_unknown,
    section,
)
from trainer.safe_yaml import YamlError, read_yaml_file

BACKENDS = ("auto", "numpy", "cupy")
TOP_LEVEL_KEYS = ("data", "model", "backend", "stack", "run")
RUN_KEYS = ("max_lifetime",)

#: data.seed feeds NumPy's RandomState (the split), which takes 0 .. 2**32 - 1.
MAX_DATA_SEED = 2**32 - 1

#: Bounds of an instance's lifetime (a stack's or a job's `max_lifetime`), in minutes.
MIN_LIFETIME_MINUTES = 10
MAX_LIFETIME_MINUTES = 7 * 24 * 60
_LIFETIME_RE = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?")


def parse_lifetime(text: str) -> int:
    """'3h' / '90m' / '1h30m' / '2d' -> minutes. Raises ValueError with the accepted forms and bounds."""
    m = _LIFETIME_RE.fullmatch(text) if isinstance(text, str) else None
    if not text or m is None:
        raise ValueError(f"{text!r} is not a duration; use e.g. '3h', '90m' or '1h30m'")
    days, hours, minutes = (int(g) if g else 0 for g in m.groups())
    total = days * 1440 + hours * 60 + minutes
    if not MIN_LIFETIME_MINUTES <= total <= MAX_LIFETIME_MINUTES:
        raise ValueError(f"{text!r} is outside {MIN_LIFETIME_MINUTES}m .. {MAX_LIFETIME_MINUTES // 1440}d")
    return total


@dataclass(frozen=True)
class DataConfig:
    """Which data set to load and how to split it.

    name: a data set name (`mnist`, `fashion-mnist`, `mnist-5k`, `digits`) or a path (.npz / IDX folder).
    test_size: fraction in (0, 1) held out for testing. seed: the split's (and `limit`'s shuffle's) seed.
    mirrors: base URLs tried in order for downloads (None: the loader's defaults).
    cache_dir: where downloads are cached (None: the loader's default).
    limit: use only the first `limit` samples after shuffling (None: all) — for fast tests and demos.
    """

    name: str
    test_size: float = 0.33
    seed: int = 42
    mirrors: tuple[str, ...] | None = None
    cache_dir: str | None = None
    limit: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (tuples become lists)."""
        return {
            "name": self.name,
            "test_size": self.test_size,
            "seed": self.seed,
            "mirrors": None if self.mirrors is None else list(self.mirrors),
            "cache_dir": self.cache_dir,
            "limit": self.limit,
        }


@dataclass(frozen=True)
class ModelConfig:
    """nolearn's DBN hyperparameters, with nolearn's names and defaults, resolved per weight layer.

    A network with `layers = [784, 800, 800, 10]` has 3 weight layers; every per-layer value below is a tuple
    of that length (a scalar in the job is repeated). The `*_pretrain` values default to their fine-tuning
    counterparts, as in nolearn. `dropouts[i]` is the drop probability of weight layer i's *input*
    (i = 0: the pixels), as in gdbn. `seed` (default 42, like the data split's) seeds every random draw:
    weight init, minibatch order, dropout masks and RBM samples.

    `eval_test_every_epoch` (default true; not a nolearn name) makes `python -m trainer run` score the
    held-out test set after every fine-tuning epoch, adding `test_loss` (mean cross-entropy per sample),
    `test_err` (error rate) and `eval_seconds` to the epoch's record for a train-and-test learning curve.
    It never changes the weights (a deterministic forward pass, no random draws), so it is left out of the
    checkpoint's job fingerprint; false leaves those fields out. The estimator has no test set and ignores it.
    """

    layers: tuple[int, ...]
    learn_rates: tuple[float, ...]
    learn_rate_decays: tuple[float, ...]
    learn_rate_minimums: tuple[float, ...]
    momentum: float
    l2_costs: tuple[float, ...]
    minibatch_size: int
    scales: tuple[float, ...]
    epochs: int
    epochs_pretrain: tuple[int, ...]
    learn_rates_pretrain: tuple[float, ...]
    momentum_pretrain: float
    l2_costs_pretrain: tuple[float, ...]
    dropouts: tuple[float, ...]
    real_valued_vis: bool = True
    use_re_lu: bool = False
    seed: int = 42
    eval_test_every_epoch: bool = True

    @property
    def n_weight_layers(self) -> int:
        return len(self.layers) - 1

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values; `parse_model(to_dict())` gives back an equal config."""
        return {f.name: plain(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class RunConfig:
    """The orchestrator's settings for one run of the job (`run:`), validated here, used by ec2dbn.

    max_lifetime: a duration ('3h', '90m', '1h30m', '2d', between 10m and 7d) after which the instance
    ec2dbn launches for this job terminates itself; it replaces the stack's `max_lifetime`. None: the
    stack's.
    """

    max_lifetime: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The keys that are set (an empty dict for the defaults)."""
        return {} if self.max_lifetime is None else {"max_lifetime": self.max_lifetime}


@dataclass(frozen=True)
class Job:
    """A validated job: what to train on (`data`), what to train (`model`) and where (`backend`).

    `stack` (a bundled stack name or a stack file's path; None: ec2dbn's default) and `run` are the
    orchestrator's sections, validated here and not used by the trainer.
    """

    data: DataConfig
    model: ModelConfig
    backend: str = "auto"
    stack: str | None = None
    run: RunConfig = RunConfig()

    def to_dict(self) -> dict[str, Any]:
        """The job as plain values (for metrics.json); `parse_job(to_dict())` gives back an equal Job."""
        out: dict[str, Any] = {
            "data": self.data.to_dict(),
            "model": self.model.to_dict(),
            "backend": self.backend,
        }
        if self.stack is not None:
            out["stack"] = self.stack
        if self.run.to_dict():
            out["run"] = self.run.to_dict()
        return out


# --------------------------------------------------------------------------------------------------- loading


def load_job(path: str | Path) -> Job:
    """Read and validate a job YAML file.

    Raises JobError: unreadable file, malformed or hostile YAML (with its line and column; see
    trainer.safe_yaml), bad keys or values.
    """
    try:
        mapping = read_yaml_file(path, "job file")
    except YamlError as exc:
        raise JobError(str(exc)) from None
    return parse_job(mapping)


def parse_job(mapping: Any) -> Job:
    """Validate a job given as a mapping (e.g. parsed YAML). Raises JobError naming the offending key."""
    if not isinstance(mapping, Mapping):
        raise JobError(f"job: expected a mapping with keys data and model, got {describe(mapping)}")
    reject_unknown(mapping, TOP_LEVEL_KEYS, "")
    if "data" not in mapping:
        raise JobError("data: required key missing (e.g. data: {name: mnist})")
    if "model" not in mapping:
        raise JobError("model: required key missing (e.g. model: {layers: [784, 800, 800, 10]})")
    data = parse_data(mapping["data"])
    model = parse_model(mapping["model"])
    backend = mapping.get("backend", "auto")
    if backend not in BACKENDS or not isinstance(backend, str):
        raise JobError(f"backend: expected one of {', '.join(BACKENDS)}, got {describe(backend)}")
    stack = mapping.get("stack")
    if stack is not None and (not isinstance(stack, str) or not stack.strip()):
        raise JobError(
            f"stack: expected a stack name (e.g. g4dn-spot) or a stack file path, got {describe(stack)}"
        )
    return Job(data=data, model=model, backend=backend, stack=stack, run=parse_run(mapping.get("run")))


def parse_run(mapping: Any, prefix: str = "run") -> RunConfig:
    """Validate the `run` section (absent or null: the defaults) into a RunConfig."""
    if mapping is None:
        return RunConfig()
    m = section(mapping, prefix, RUN_KEYS)
    lifetime = m.get("max_lifetime")
    if lifetime is not None:
        if not isinstance(lifetime, str):
            raise JobError(
                f"{prefix}.max_lifetime: expected a duration such as 3h or 90m, got {describe(lifetime)}"
            )
        try:
            parse_lifetime(lifetime)
        except ValueError as exc:
            raise JobError(f"{prefix}.max_lifetime: {exc}") from None
    return RunConfig(max_lifetime=lifetime)


def parse_data(mapping: Any, prefix: str = "data") -> DataConfig:
    """Validate the `data` section into a DataConfig."""
    m = section(mapping, prefix, ("name", "test_size", "seed", "mirrors", "cache_dir", "limit"))
    if "name" not in m:
        raise JobError(f"{prefix}.name: required key missing (e.g. mnist, fashion-mnist, mnist-5k, digits)")
    name = m["name"]
    if not isinstance(name, str) or not name.strip():
        raise JobError(f"{prefix}.name: expected a data set name or path, got {describe(name)}")
    from trainer.data import check_name_form  # here: trainer.data pulls in the downloader

    try:
        check_name_form(name)
    except TrainerError as exc:
        raise JobError(f"{prefix}.name: {exc}") from None
    test_size = m.get("test_size", 0.33)
    if not is_number(test_size) or not 0 < test_size < 1:
        raise JobError(f"{prefix}.test_size: expected a number between 0 and 1, got {describe(test_size)}")
    seed = nonneg_int(m.get("seed", 42), f"{prefix}.seed")
    if seed > MAX_DATA_SEED:
        raise JobError(f"{prefix}.seed: expected an integer from 0 to {MAX_DATA_SEED}, got {seed}")
    mirrors = m.get("mirrors")
    if mirrors is not None:
        if isinstance(mirrors, str):
            mirrors = [mirrors]
        if not isinstance(mirrors, list) or not mirrors:
            raise JobError(f"{prefix}.mirrors: expected a list of URLs, got {describe(mirrors)}")
        for i, url in enumerate(mirrors):
            if not isinstance(url, str) or "://" not in url:
                raise JobError(
                    f"{prefix}.mirrors[{i}]: expected a URL such as https://host/path/, got {describe(url)}"
                )
        mirrors = tuple(mirrors)
    cache_dir = m.get("cache_dir")
    if cache_dir is not None and (not isinstance(cache_dir, str) or not cache_dir):
        raise JobError(f"{prefix}.cache_dir: expected a directory path, got {describe(cache_dir)}")
    limit = m.get("limit")
    if limit is not None and (not is_int(limit) or limit < 1):
        raise JobError(f"{prefix}.limit: expected an integer >= 1, got {describe(limit)}")
    return DataConfig(
        name=name, test_size=float(test_size), seed=seed, mirrors=mirrors, cache_dir=cache_dir, limit=limit
    )


# Per-weight-layer values, key: (default, check, what, convert); check(x) says whether one value is allowed.
_PER_LAYER: dict[str, tuple[Any, Callable[[Any], bool], str, Callable[[Any], Any]]] = {
    "learn_rates": (0.1, lambda x: is_number(x) and x > 0, "a number > 0", float),
    "learn_rate_decays": (1.0, lambda x: is_number(x) and x > 0, "a number > 0", float),
    "learn_rate_minimums": (0.0, lambda x: is_number(x) and x >= 0, "a number >= 0", float),
    "l2_costs": (0.0001, lambda x: is_number(x) and x >= 0, "a number >= 0", float),
    "scales": (0.05, lambda x: is_number(x) and x > 0, "a number > 0", float),
    "epochs_pretrain": (0, lambda x: is_int(x) and x >= 0, "an integer >= 0", int),
    "learn_rates_pretrain": (None, lambda x: is_number(x) and x > 0, "a number > 0", float),
    "l2_costs_pretrain": (None, lambda x: is_number(x) and x >= 0, "a number >= 0", float),
    "dropouts": (0.0, lambda x: is_number(x) and 0 <= x < 1, "a number in [0, 1)", float),
}
_MODEL_KEYS = (
    "layers",
    *_PER_LAYER,
    "momentum",
    "momentum_pretrain",
    "minibatch_size",
    "epochs",
    "real_valued_vis",
    "use_re_lu",
    "seed",
    "eval_test_every_epoch",
)


def parse_model(mapping: Any, prefix: str = "model") -> ModelConfig:
    """Validate the `model` section into a ModelConfig (per-layer scalars expanded, pretrain defaults filled).

    `prefix` is the key path used in messages ("model" for jobs; "" for the estimator's keyword arguments).
    """
    m = section(mapping, prefix or "model", _MODEL_KEYS, prefix)
    key = (lambda k: f"{prefix}.{k}") if prefix else (lambda k: k)
    if "layers" not in m:
        raise JobError(f"{key('layers')}: required key missing (e.g. [784, 800, 800, 10])")
    layers = m["layers"]
    if (
        not isinstance(layers, list | tuple)
        or len(layers) < 2
        or not all(is_int(n) and n >= 1 for n in layers)
    ):
        raise JobError(
            f"{key('layers')}: expected a list of at least 2 integers >= 1 "
            f"(input, hidden..., output), got {describe(layers)}"
        )
    for i, n in enumerate(layers):
        check_size(n, f"{key('layers')}[{i}]")
    n_w = len(layers) - 1
    values: dict[str, Any] = {}
    # An explicit null is allowed only where the default is null (the *_pretrain values: "as fine-tuning").
    for name, (default, check, what, convert) in _PER_LAYER.items():
        raw = m.get(name, default)
        values[name] = (
            None if raw is default is None else per_layer(raw, n_w, check, what, convert, key(name))
        )
    for name in ("momentum", "momentum_pretrain"):
        raw = m.get(name, 0.9 if name == "momentum" else None)
        if (raw is not None or name == "momentum") and (not is_number(raw) or not 0 <= raw < 1):
            raise JobError(f"{key(name)}: expected a number in [0, 1), got {describe(raw)}")
        if raw is not None:
            check_float32(raw, key(name))
        values[name] = None if raw is None else float(raw)
    minibatch_size = m.get("minibatch_size", 64)
    if not is_int(minibatch_size) or minibatch_size < 1:
        raise JobError(f"{key('minibatch_size')}: expected an integer >= 1, got {describe(minibatch_size)}")
    check_size(minibatch_size, key("minibatch_size"))
    epochs = nonneg_int(m.get("epochs", 10), key("epochs"))
    for name, default in (("real_valued_vis", True), ("use_re_lu", False), ("eval_test_every_epoch", True)):
        raw = m.get(name, default)
        if not isinstance(raw, bool):
            raise JobError(f"{key(name)}: expected true or false, got {describe(raw)}")
        values[name] = raw
    seed = nonneg_int(m.get("seed", 42), key("seed"))
    return ModelConfig(
        layers=tuple(int(n) for n in layers),
        learn_rates=values["learn_rates"],
        learn_rate_decays=values["learn_rate_decays"],
        learn_rate_minimums=values["learn_rate_minimums"],
        momentum=values["momentum"],
        l2_costs=values["l2_costs"],
        minibatch_size=int(minibatch_size),
        scales=values["scales"],
        epochs=epochs,
        epochs_pretrain=values["epochs_pretrain"],
        learn_rates_pretrain=values["learn_rates_pretrain"] or values["learn_rates"],
        momentum_pretrain=values["momentum"]
        if values["momentum_pretrain"] is None
        else values["momentum_pretrain"],
        l2_costs_pretrain=values["l2_costs_pretrain"] or values["l2_costs"],
        dropouts=values["dropouts"],
        real_valued_vis=values["real_valued_vis"],
        use_re_lu=values["use_re_lu"],
        seed=seed,
        eval_test_every_epoch=values["eval_test_every_epoch"],
    )
