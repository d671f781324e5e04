"""A sweep's points: which values each run of the job gets, and every point validated like a job.

Where points come from (the command line adds to, and overrides, the job file's `sweep:` section):

    --grid KEY=V1,V2,...       every combination of the listed values (repeatable). KEY is a job key by
                               dotted path (model.learn_rates, data.limit, backend) or `stack` /
                               `instance_type` (each point then runs on its own hardware). Values are YAML:
                               lists are written in brackets, several separated by `,` or `;`
                               (model.layers=[784,800,10];[784,800,800,10]).
    --random N --sample KEY=DIST   N draws, seeded (--seed), of uniform(a,b), loguniform(a,b) or
                               choice(v1,v2,...); with a grid, N draws for each grid combination.
    sweep: {grid: {KEY: [V1, V2]}, random: N, seed: S, sample: {KEY: DIST}}   the same, in the job file.

The `sweep:` section is removed before the job is checked with the trainer's own schema, so the trainer
never sees it (and `ec2dbn train` refuses a job file that has one, as it refuses any unknown key).
"""

from __future__ import annotations

import copy
import itertools
import math
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ec2dbn.errors import ConfigError
from ec2dbn.run.validate import check_local_data
from ec2dbn.spec.overrides import load_for_launch
from ec2dbn.spec.stack import Stack
from trainer.safe_yaml import YamlError, load_yaml

#: Point keys that choose the hardware rather than the job.
HARDWARE_KEYS = ("stack", "instance_type")
SWEEP_KEYS = ("grid", "random", "seed", "sample")
MAX_POINTS = 1000
_DIST_RE = re.compile(r"\s*(uniform|loguniform|choice)\s*\((.*)\)\s*", re.S)


def parse_value(text: str, where: str) -> Any:
    """One value as YAML, the way job files are read (so `1e-4` is a number and `[784, 10]` a list)."""
    try:
        return load_yaml(text, where)
    except YamlError as exc:
        raise ConfigError(str(exc)) from None


def split_values(text: str) -> list[str]:
    """'0.1,0.3' or '[1,2];[3,4]' → the value texts: split on `,` and `;` outside brackets and parentheses."""
    out, depth, current = [], 0, ""
    for ch in text:
        if ch in "[({":
            depth += 1
        elif ch in "])}":
            depth -= 1
        if ch in ",;" and depth == 0:
            out.append(current.strip())
            current = ""
        else:
            current += ch
    out.append(current.strip())
    return out


def _key_and_text(spec: str, flag: str) -> tuple[str, str]:
    key, sep, text = spec.partition("=")
    key = key.strip()
    if not sep or not key or not text.strip():
        raise ConfigError(f"{flag} {spec!r}: expected KEY=VALUES (e.g. model.learn_rates=0.1,0.3)")
    return key, text


def parse_grid_spec(spec: str) -> tuple[str, list[Any]]:
    """'model.learn_rates=0.1,0.3' → ('model.learn_rates', [0.1, 0.3])."""
    key, text = _key_and_text(spec, "--grid")
    texts = split_values(text)
    if any(not t for t in texts):
        raise ConfigError(f"--grid {spec!r}: an empty value (two separators in a row?)")
    return key, [parse_value(t, f"--grid {key}") for t in texts]


@dataclass(frozen=True)
class Distribution:
    """A random search dimension: uniform(a,b), loguniform(a,b) (a > 0) or choice(values...)."""

    kind: str
    args: tuple[Any, ...]

    def draw(self, rng: random.Random) -> Any:
        if self.kind == "choice":
            return copy.deepcopy(rng.choice(self.args))
        low, high = self.args
        x = (
            rng.uniform(low, high)
            if self.kind == "uniform"
            else math.exp(rng.uniform(*map(math.log, self.args)))
        )
        return float(f"{x:.4g}")  # readable, and the same on every machine for the same seed


def parse_distribution(text: str, where: str) -> Distribution:
    m = _DIST_RE.fullmatch(str(text))
    if m is None:
        raise ConfigError(f"{where}: {text!r} is not uniform(a,b), loguniform(a,b) or choice(v1,v2,...)")
    kind = m.group(1)
    args = tuple(parse_value(t, where) for t in split_values(m.group(2)) if t)
    if kind == "choice":
        if not args:
            raise ConfigError(f"{where}: choice() needs at least one value")
        return Distribution(kind, args)
    nums = len(args) == 2 and all(isinstance(a, int | float) and not isinstance(a, bool) for a in args)
    if not nums or not math.isfinite(args[0]) or not math.isfinite(args[1]) or not args[0] < args[1]:
        raise ConfigError(f"{where}: {kind}(a,b) needs two numbers with a < b, got {text!r}")
    if kind == "loguniform" and args[0] <= 0:
        raise ConfigError(f"{where}: loguniform(a,b) needs a > 0, got {text!r}")
    return Distribution(kind, (float(args[0]), float(args[1])))


@dataclass
class PointSpec:
    """How to make the points: a grid (key → values), random draws (count, seed, key → distribution)."""

    grid: dict[str, list[Any]] = field(default_factory=dict)
    random: int = 0
    seed: int = 0
    sample: dict[str, Distribution] = field(default_factory=dict)

    def keys(self) -> list[str]:
        return [*self.grid, *(k for k in self.sample if k not in self.grid)]


def spec_from_section(section: Any, where: str) -> PointSpec:
    """The job file's `sweep:` section as a PointSpec; ConfigError naming the key when it is malformed."""
    if section is None:
        return PointSpec()
    if not isinstance(section, Mapping):
        raise ConfigError(f"{where}: sweep: expected a mapping with {', '.join(SWEEP_KEYS)}")
    for k in section:
        if k not in SWEEP_KEYS:
            raise ConfigError(f"{where}: sweep.{k}: unknown key (allowed: {', '.join(SWEEP_KEYS)})")
    grid = section.get("grid") or {}
    if not isinstance(grid, Mapping) or not all(isinstance(v, list) and v for v in grid.values()):
        raise ConfigError(f"{where}: sweep.grid: expected KEY: [VALUE, ...] with at least one value each")
    count, seed = section.get("random", 0), section.get("seed", 0)
    for name, value in (("random", count), ("seed", seed)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"{where}: sweep.{name}: expected an integer >= 0, got {value!r}")
    sample = section.get("sample") or {}
    if not isinstance(sample, Mapping):
        raise ConfigError(f"{where}: sweep.sample: expected KEY: DISTRIBUTION")
    dists = {str(k): parse_distribution(v, f"{where}: sweep.sample.{k}") for k, v in sample.items()}
    return PointSpec({str(k): list(v) for k, v in grid.items()}, count, seed, dists)


def merge_spec(
    base: PointSpec, grid: Sequence[str], count: int | None, seed: int | None, sample: Sequence[str]
) -> PointSpec:
    """The job file's spec with the command line's --grid/--random/--seed/--sample on top."""
    out = PointSpec(dict(base.grid), base.random, base.seed, dict(base.sample))
    for spec in grid:
        key, values = parse_grid_spec(spec)
        out.grid[key] = values
    for spec in sample:
        key, text = _key_and_text(spec, "--sample")
        out.sample[key] = parse_distribution(text, f"--sample {key}")
    if count is not None:
        out.random = count
    if seed is not None:
        out.seed = seed
    if out.sample and not out.random:
        raise ConfigError("--sample needs --random N (how many draws)")
    if out.random and not out.sample:
        raise ConfigError("--random N needs at least one --sample KEY=DIST (what to draw)")
    return out


@dataclass(frozen=True)
class Point:
    """One point: its id (p01, ...) and the value of each swept key."""

    point_id: str
    values: dict[str, Any]

    def label(self) -> str:
        return " ".join(f"{k}={show_value(v)}" for k, v in self.values.items())


def show_value(v: Any) -> str:
    if isinstance(v, list):
        return "[" + ",".join(show_value(x) for x in v) + "]"
    return f"{v:g}" if isinstance(v, float) else str(v)


def expand(spec: PointSpec) -> list[Point]:
    """Every point of the spec, in a stable order: the grid's product, each with `random` draws."""
    grid_keys = list(spec.grid)
    combos = list(itertools.product(*(spec.grid[k] for k in grid_keys))) or [()]
    rng = random.Random(spec.seed)
    draws = max(1, spec.random)
    total = len(combos) * draws
    if total > MAX_POINTS:
        raise ConfigError(f"the sweep has {total:,} points; at most {MAX_POINTS:,} (narrow the grid)")
    if not spec.grid and not spec.sample:
        raise ConfigError(
            "no points to sweep: give --grid KEY=V1,V2, --random N with --sample KEY=DIST, "
            "or a `sweep:` section in the job file"
        )
    width = max(2, len(str(total)))
    points = []
    for combo in combos:
        for _ in range(draws):
            values = dict(zip(grid_keys, (copy.deepcopy(v) for v in combo), strict=True))
            values.update({k: d.draw(rng) for k, d in spec.sample.items() if k not in values})
            points.append(Point(f"p{len(points) + 1:0{width}d}", values))
    return points


# ------------------------------------------------------------------------------------------- validation


@dataclass(frozen=True)
class ValidPoint:
    """A point that passed validation: its job (trainer Job), the mapping it came from, and its stack
    (None for a local sweep)."""

    point: Point
    job: Any
    mapping: dict[str, Any]
    stack: Stack | None
    stack_ref: str | None


def set_path(mapping: dict[str, Any], key: str, value: Any) -> None:
    """mapping[a][b][c] = value for key 'a.b.c', creating missing sections; ConfigError through a value."""
    parts = key.split(".")
    node = mapping
    for i, part in enumerate(parts[:-1]):
        nxt = node.setdefault(part, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"{'.'.join(parts[: i + 1])} is a value, not a section: cannot set {key}")
        node = nxt
    node[parts[-1]] = copy.deepcopy(value)


def validate_point(
    point: Point,
    base: Mapping[str, Any],
    *,
    stack_ref: str | None,
    spot: bool | None = None,
    ssh_cidr: str | None = None,
    local: bool = False,
    region: str | None = None,
) -> ValidPoint:
    """The point's job, checked with the trainer's schema, and (unless local) its stack; ConfigError
    naming the point and its values. Touches no AWS."""
    from trainer.config import parse_job
    from trainer.errors import TrainerError

    where = f"point {point.point_id} ({point.label()})"
    mapping = copy.deepcopy(dict(base))
    for key, value in point.values.items():
        if key not in HARDWARE_KEYS:
            set_path(mapping, key, value)
    try:
        job = parse_job(mapping)
    except TrainerError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    ref = point.values.get("stack", stack_ref or (job.stack if isinstance(job.stack, str) else None))
    if ref is not None and not isinstance(ref, str):
        raise ConfigError(f"{where}: stack: expected a stack name or path, got {ref!r}")
    itype = point.values.get("instance_type")
    if itype is not None and not isinstance(itype, str):
        raise ConfigError(f"{where}: instance_type: expected an instance type name, got {itype!r}")
    if local and any(k in point.values for k in HARDWARE_KEYS):
        raise ConfigError(f"{where}: a grid over stack or instance_type needs EC2, not --local")
    try:
        check_local_data(str(job.data.name))
        types = [itype] if itype else []
        stack = (
            None
            if local
            else load_for_launch(ref, spot=spot, ssh_cidr=ssh_cidr, instance_types=types, region=region)
        )
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return ValidPoint(point, job, mapping, stack, ref)


def validate_all(points: Sequence[Point], base: Mapping[str, Any], **kw: Any) -> list[ValidPoint]:
    """Every point validated before anything is launched: the first bad one is the error."""
    return [validate_point(p, base, **kw) for p in points]
