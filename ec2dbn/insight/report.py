"""`ec2dbn report`: finished runs side by side — the seed's CPU-vs-GPU table, done properly.

Each run folder (results/<run-id>/) holds the trainer's metrics.json and, for runs started by `ec2dbn train`,
run.json (where it ran, at what price, what it cost). A row per run: backend, device, instance type,
market, s/epoch (the median of the fine-tuning epochs, so one slow first epoch does not skew it), test
accuracy, cost, and the speedup against the first run given — the comparison the seed post made with
one number per machine. Rows also carry the data set and layers, because a speedup only means something
between runs of the same network on the same data; `Report.comparable` says whether they are.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ec2dbn.errors import ConfigError
from ec2dbn.insight.bench import usd_small
from ec2dbn.results_layout import RUN_FILE, SWEEP_FILE
from ec2dbn.untrusted_json import mapping, number, objects, read_object, text
from trainer.contract import METRICS_JSON as METRICS_FILE


@dataclass(frozen=True)
class ReportRow:
    """One run. Seconds per epoch in s, cost in USD; None where the run's files do not say.

    cost_usd: run.json's actual cost; 0.0 for local runs (nothing billed). usd_per_epoch: s/epoch × the
    hourly price / 3600, when run.json has a price. speedup: the first row's s/epoch ÷ this row's.
    """

    run_id: str
    path: str
    status: str
    data: str | None
    layers: str | None
    backend: str | None
    device: str | None
    mode: str | None
    instance_type: str | None
    market: str | None
    epochs: int
    seconds_per_epoch: float | None
    test_accuracy: float | None
    cost_usd: float | None
    usd_per_epoch: float | None
    speedup: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Report:
    rows: tuple[ReportRow, ...]

    @property
    def comparable(self) -> bool:
        """Every run trained the same layers on the same data (so speedups compare like with like)."""
        return len({(r.data, r.layers) for r in self.rows}) <= 1

    def to_dict(self) -> dict[str, Any]:
        return {"comparable": self.comparable, "runs": [r.to_dict() for r in self.rows]}


def run_dirs(paths: Sequence[str | Path]) -> list[Path]:
    """The run folders named by `paths`: each a run folder, or a folder of run folders (e.g. results/).

    Raises ConfigError for a path that does not exist or holds no run.
    """
    if not paths:
        raise ConfigError("name at least one results folder, e.g. ec2dbn report results/<run-id>")
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise ConfigError(f"results folder {path} not found")
        if not path.is_dir():
            raise ConfigError(f"{path} is not a folder: name a results/<run-id>/ folder")
        if _is_run(path):
            out.append(path)
            continue
        children = _runs_in(path)
        if not children:
            raise ConfigError(
                f"{path} holds no run: expected {METRICS_FILE} or {RUN_FILE} in it or its subfolders"
            )
        out.extend(children)
    return out


def _runs_in(folder: Path) -> list[Path]:
    """The run folders in `folder`; a sweep's folder (results/<sweep-id>/) stands for its points'."""
    out: list[Path] = []
    for child in sorted(p for p in folder.iterdir() if p.is_dir()):
        if _is_run(child):
            out.append(child)
        elif is_sweep(child):
            out.extend(sorted(p for p in child.iterdir() if p.is_dir() and _is_run(p)))
    if is_sweep(folder):
        out = [p for p in out if p.parent == folder]
    return out


def is_sweep(path: Path) -> bool:
    """A sweep's folder: sweep.json beside one folder per point (ec2dbn.sweep.record)."""
    return (path / SWEEP_FILE).is_file()


def _is_run(path: Path) -> bool:
    return (path / METRICS_FILE).is_file() or (path / RUN_FILE).is_file()


def _read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in `path`, None when there is no such file; ConfigError when it is malformed."""
    if not path.is_file():
        return None
    return read_object(path)


def seconds_per_epoch(metrics: Mapping[str, Any]) -> float | None:
    """Median seconds of the fine-tuning epochs in a metrics.json, None when it lists none."""
    secs = [
        s
        for e in objects(metrics.get("epochs"))
        if e.get("phase", "finetune") == "finetune"
        and (s := number(e.get("seconds"), minimum=0.0)) is not None
    ]
    return statistics.median(secs) if secs else None


def load_row(path: Path) -> ReportRow:
    """The report row of one run folder (metrics.json and/or run.json). Fields of the wrong type are
    shown as missing; a file that is not a JSON object is a ConfigError naming it."""
    metrics = _read_json(path / METRICS_FILE)
    run_json = _read_json(path / RUN_FILE)
    if metrics is None and run_json is None:
        raise ConfigError(f"{path}: no {METRICS_FILE} or {RUN_FILE}: not a results folder")
    m, run = metrics or {}, run_json or {}
    config = mapping(m.get("config"))
    model = mapping(config.get("model"))
    data_name = text(mapping(m.get("data")).get("name")) or text(mapping(config.get("data")).get("name"))
    layers = model.get("layers")
    spe = seconds_per_epoch(m)
    mode = text(run.get("mode")) or ("local" if metrics is not None else None)
    price = number(run.get("price_usd_per_hour"), minimum=0.0)
    cost = number(run.get("cost_usd"))
    if cost is None and mode == "local":
        cost = 0.0
    usd_per_epoch = None
    if price is not None and spe is not None:
        usd_per_epoch = spe * price / 3600.0
    elif mode == "local" and spe is not None:
        usd_per_epoch = 0.0
    accuracy = number(m.get("test_accuracy"), minimum=0.0)
    # run.json's (ec2dbn's) word first; a trainer-only folder has metrics.json's: finished or diverged
    status = text(run.get("status")) or text(m.get("status"))
    if status is None:
        status = "finished" if metrics is not None and accuracy is not None else "unknown"
    if metrics is None and status == "finished":
        status = "finished (no metrics.json)"
    run_id = text(run.get("run_id")) or path.name
    if is_sweep(path.parent):  # a sweep's point: named SWEEP_ID/POINT, as `ec2dbn logs` takes it
        run_id = f"{path.parent.name}/{path.name}"
    return ReportRow(
        run_id=run_id,
        path=str(path),
        status=status,
        data=data_name,
        layers="-".join(str(n) for n in layers) if isinstance(layers, list) and layers else None,
        backend=text(m.get("backend")),
        device=text(m.get("device")),
        mode=mode,
        instance_type=text(run.get("instance_type")) or ("local" if mode == "local" else None),
        market=text(run.get("market")),
        epochs=len(objects(m.get("epochs"))),
        seconds_per_epoch=spe,
        test_accuracy=accuracy,
        cost_usd=cost,
        usd_per_epoch=usd_per_epoch,
    )


def build_report(paths: Sequence[str | Path]) -> Report:
    """Rows for every run under `paths`, in the order given, with speedups against the first timed run."""
    rows = [load_row(p) for p in run_dirs(paths)]
    base = next((r.seconds_per_epoch for r in rows if r.seconds_per_epoch), None)
    out = []
    for r in rows:
        speedup = base / r.seconds_per_epoch if base and r.seconds_per_epoch else None
        out.append(ReportRow(**{**r.to_dict(), "speedup": speedup}))
    return Report(tuple(out))


# --------------------------------------------------------------------------------------- rendering

#: (header, cell) for the table; shared by the rich table and the markdown rendering.
COLUMNS: tuple[tuple[str, Any], ...] = (
    ("run", lambda r: r.run_id),
    ("data", lambda r: r.data or "—"),
    ("layers", lambda r: r.layers or "—"),
    ("backend", lambda r: r.backend or "—"),
    ("device", lambda r: _device(r.device)),
    ("instance", lambda r: r.instance_type or "—"),
    ("market", lambda r: r.market or "—"),
    ("epochs", lambda r: str(r.epochs) if r.epochs else "—"),
    ("s/epoch", lambda r: "—" if r.seconds_per_epoch is None else f"{r.seconds_per_epoch:.3g}"),
    ("speedup", lambda r: "—" if r.speedup is None else f"{r.speedup:.2f}×"),
    ("test acc", lambda r: "—" if r.test_accuracy is None else f"{100 * r.test_accuracy:.2f} %"),
    ("$/epoch", lambda r: _usd(r.usd_per_epoch)),
    ("cost", lambda r: _usd(r.cost_usd)),
    ("status", lambda r: r.status),
)


def cells(row: ReportRow) -> list[str]:
    return [fn(row) for _, fn in COLUMNS]


def headers() -> list[str]:
    return [h for h, _ in COLUMNS]


def notes(report: Report) -> list[str]:
    """Footnotes for the table: how s/epoch and speedup are defined, and any caveat."""
    out = [
        "s/epoch: median over fine-tuning epochs; speedup: the first run's s/epoch ÷ this run's; "
        "local runs cost $0 (not billed by AWS)."
    ]
    if not report.comparable:
        out.append(
            "caution: these runs differ in data set or layers, so their speedups are not like for like."
        )
    return out


def to_markdown(report: Report) -> str:
    """A GitHub-flavoured markdown table of the report, with its notes."""
    hs = headers()
    lines = ["| " + " | ".join(hs) + " |", "|" + "---|" * len(hs)]
    for r in report.rows:
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells(r)) + " |")
    lines.append("")
    lines += notes(report)
    return "\n".join(lines) + "\n"


def _device(device: str | None) -> str:
    if not device:
        return "—"
    return device.removeprefix("cpu: ").removeprefix("gpu: ")


def _usd(x: float | None) -> str:
    return "—" if x is None else usd_small(x)
