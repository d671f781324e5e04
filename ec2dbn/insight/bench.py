"""Host side of `ec2dbn bench`: price a bench.json, find the speedup and the break-even width, write it up.

`trainer.bench` (on the instance, or here with `--local`) measures; this module only reads its bench.json.
Per row it adds $/epoch = s/epoch × USD/hour / 3600 at the instance's price. Per width it computes the
speedup = NumPy s/epoch ÷ CuPy s/epoch (> 1: the GPU is faster), and from those the break-even width, where
the speedup crosses 1 — interpolated on log-log axes between the two measured widths around the crossing.
Both backends run on the same instance and pay the same $/hour, so the cost break-even is that same width.

Outputs (next to bench.json): summary.md (a short markdown write-up) and bench.png (ec2dbn.insight.plots).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from ec2dbn.errors import ConfigError
from ec2dbn.spec.catalog import Price
from ec2dbn.spec.cost import format_usd
from ec2dbn.untrusted_json import mapping, number, read_object, text, whole
from trainer.contract import BENCH_FILE

#: The note printed next to $0 when a local bench has no --price-per-hour.
LOCAL_PRICE_NOTE = "local run: this machine is not billed by AWS, so $/epoch is $0 (use --price-per-hour)"


@dataclass(frozen=True)
class BenchRow:
    """One (width, backend) measurement, priced.

    status: "ok", "skipped" (backend unavailable; `reason` says why), "failed" (e.g. out of GPU memory) or
    "diverged" (the loss stopped being finite at this width; `reason` is the trainer's message).
    seconds_per_epoch: median over the timed epochs (s). samples_per_second: training samples per second.
    usd_per_epoch: at the price given to `summarize` (None without one, or when the row did not run).
    """

    width: int
    backend: str
    status: str
    seconds_per_epoch: float | None = None
    samples_per_second: float | None = None
    test_accuracy: float | None = None
    usd_per_epoch: float | None = None
    device: str | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok" and self.seconds_per_epoch is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "width": self.width,
            "backend": self.backend,
            "status": self.status,
            "seconds_per_epoch": self.seconds_per_epoch,
            "samples_per_second": self.samples_per_second,
            "test_accuracy": self.test_accuracy,
            "usd_per_epoch": self.usd_per_epoch,
            "device": self.device,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class BreakEven:
    """Where the GPU starts to beat the CPU.

    kind: "crossing" (width interpolated between two measured widths), "below" (the GPU already wins at the
    smallest width measured), "above" (it never wins up to the largest), or "unknown" (no width has both
    backends). width: the interpolated width (crossing) or the bound it is below/above; None when unknown.
    """

    kind: str
    width: float | None = None

    def describe(self) -> str:
        if self.kind == "crossing" and self.width is not None:
            return f"the GPU (CuPy) overtakes the CPU (NumPy) at a hidden width of about {self.width:,.0f}"
        if self.kind == "below" and self.width is not None:
            return f"the GPU is faster at every width measured (break-even below width {self.width:,.0f})"
        if self.kind == "above" and self.width is not None:
            return f"the CPU is faster at every width measured (break-even above width {self.width:,.0f})"
        return "no width has both a NumPy and a CuPy measurement, so there is no speedup to compare"


@dataclass(frozen=True)
class BenchSummary:
    """A priced bench: its rows, the speedup per width, the break-even, and the raw bench.json."""

    rows: tuple[BenchRow, ...]
    speedups: dict[int, float]
    break_even: BreakEven
    price: Price | None
    price_note: str
    bench: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": [r.to_dict() for r in self.rows],
            "speedups": {str(w): s for w, s in self.speedups.items()},
            "break_even": {"kind": self.break_even.kind, "width": self.break_even.width},
            "price": None
            if self.price is None
            else {
                "usd_per_hour": self.price.usd_per_hour,
                "source": self.price.source,
                "date": self.price.date,
                "market": self.price.market,
            },
            "price_note": self.price_note,
        }


def usd_per_epoch(seconds_per_epoch: float, usd_per_hour: float) -> float:
    """USD one epoch costs: s/epoch × USD/hour / 3600 (a rate × time; EC2's minimum bill does not apply)."""
    if not math.isfinite(seconds_per_epoch) or seconds_per_epoch < 0:
        raise ConfigError(f"s/epoch must be a non-negative number, got {seconds_per_epoch!r}")
    if not math.isfinite(usd_per_hour) or usd_per_hour < 0:
        raise ConfigError(f"a price must be a non-negative USD/hour, got {usd_per_hour!r}")
    return seconds_per_epoch * usd_per_hour / 3600.0


def local_price(usd_per_hour: float | None = None) -> tuple[Price, str]:
    """The price of a bench run on this machine: $0 with a note, or what the user said it costs."""
    today = date.today().isoformat()
    if usd_per_hour is None:
        return Price(0.0, "local run, not billed", today, "local", "local"), LOCAL_PRICE_NOTE
    if not math.isfinite(usd_per_hour) or usd_per_hour < 0:
        raise ConfigError(f"--price-per-hour must be a non-negative USD/hour, got {usd_per_hour!r}")
    note = f"priced at {format_usd(usd_per_hour)}/hour as given by --price-per-hour"
    return Price(float(usd_per_hour), "--price-per-hour", today, "local", "local"), note


# ----------------------------------------------------------------------------------------- reading


def load_bench(path: str | Path) -> dict[str, Any]:
    """Read bench.json (or a folder holding one), untrusted: it comes from the instance. Raises
    ConfigError when it is missing or malformed."""
    path = Path(path)
    if path.is_dir():
        path = path / BENCH_FILE
    if not path.is_file():
        raise ConfigError(f"{path}: not found (run `ec2dbn bench JOB.yaml --local` to make one)")
    data = read_object(path)
    if not isinstance(data.get("rows"), list):
        raise ConfigError(f"{path}: not a bench.json (expected an object with a list of rows)")
    return data


def as_row(raw: BenchRow | Mapping[str, Any], usd_per_hour: float | None = None) -> BenchRow:
    """A BenchRow from a bench.json row (priced at `usd_per_hour` when given), or the row itself.
    Raises ConfigError for a row without a width and a backend; other fields of the wrong type are missing."""
    if isinstance(raw, BenchRow):
        return raw
    row = mapping(raw)
    width, backend = whole(row.get("width"), minimum=1), text(row.get("backend"))
    if width is None or backend is None:
        raise ConfigError(f"bench row without a width and backend: {raw!r}"[:200])
    spe = number(row.get("seconds_per_epoch"), minimum=0.0)
    status = text(row.get("status")) or ("ok" if spe is not None else "failed")
    usd = number(row.get("usd_per_epoch"))
    if usd_per_hour is not None and status == "ok" and spe is not None:
        usd = usd_per_epoch(spe, usd_per_hour)
    return BenchRow(
        width=width,
        backend=backend,
        status=status,
        seconds_per_epoch=spe,
        samples_per_second=number(row.get("samples_per_second")),
        test_accuracy=number(row.get("test_accuracy")),
        usd_per_epoch=usd,
        device=text(row.get("device")),
        reason=text(row.get("reason")),
    )


# -------------------------------------------------------------------------------------------- math


def speedups(rows: Sequence[BenchRow]) -> dict[int, float]:
    """{width: NumPy s/epoch ÷ CuPy s/epoch} for every width where both backends ran, widths ascending."""
    by: dict[tuple[int, str], float] = {
        (r.width, r.backend): r.seconds_per_epoch for r in rows if r.ok and r.seconds_per_epoch
    }
    out: dict[int, float] = {}
    for width in sorted({w for w, _ in by}):
        cpu, gpu = by.get((width, "numpy")), by.get((width, "cupy"))
        if cpu and gpu:
            out[width] = cpu / gpu
    return out


def find_break_even(speedup: Mapping[int, float]) -> BreakEven:
    """The width where speedup = 1, interpolated linearly in (log width, log speedup).

    The first crossing from < 1 to >= 1 counts (the GPU's advantage grows with width: more arithmetic per
    kernel launch and per byte moved). Without a crossing, says on which side of the measured range it lies.
    """
    points = sorted((w, s) for w, s in speedup.items() if s > 0)
    if not points:
        return BreakEven("unknown")
    if points[0][1] >= 1.0:
        return BreakEven("below", float(points[0][0]))
    for (w1, s1), (w2, s2) in itertools.pairwise(points):
        if s1 < 1.0 <= s2:
            if s2 == s1:
                return BreakEven("crossing", float(w2))
            t = (0.0 - math.log(s1)) / (math.log(s2) - math.log(s1))
            return BreakEven("crossing", math.exp(math.log(w1) + t * (math.log(w2) - math.log(w1))))
    return BreakEven("above", float(points[-1][0]))


def summarize(bench: Mapping[str, Any], price: Price | None = None, price_note: str = "") -> BenchSummary:
    """Price every row of `bench` at `price` (USD/hour) and compute speedups and the break-even."""
    usd_per_hour = None if price is None else price.usd_per_hour
    rows = tuple(
        sorted(
            (as_row(r, usd_per_hour) for r in bench.get("rows", [])),
            key=lambda r: (r.width, r.backend != "numpy", r.backend),  # per width: CPU first, then GPU
        )
    )
    if not rows:
        raise ConfigError("the bench has no rows: nothing was measured")
    sp = speedups(rows)
    if price is not None and not price_note:
        price_note = f"{format_usd(price.usd_per_hour)}/hour {price.market} ({price.source})"
    return BenchSummary(rows, sp, find_break_even(sp), price, price_note, bench)


# ----------------------------------------------------------------------------------------- writing


def render_summary(summary: BenchSummary) -> str:
    """summary.md: what was measured, where, the table, the speedups and the break-even."""
    b = summary.bench
    env, data, arch = (mapping(b.get(k)) for k in ("environment", "data", "architecture"))
    lines = ["# ec2dbn bench", ""]
    template = arch.get("layers_template")
    if template:
        lines.append(f"- Network: {template} with every hidden layer set to the width below")
    if data:
        lines.append(
            f"- Data: {data.get('name')} — {data.get('n_train', '?'):,} train / "
            f"{data.get('n_test', '?'):,} test samples"
            if isinstance(data.get("n_train"), int) and isinstance(data.get("n_test"), int)
            else f"- Data: {data.get('name')}"
        )
    if b.get("epochs") is not None:
        lines.append(
            f"- Epochs per row: {b.get('epochs')}; {mapping(b.get('warmup')).get('description', '')}".rstrip()
        )
    cpu = env.get("cpu_model")
    if cpu:
        lines.append(f"- CPU: {cpu}, {env.get('vcpus', '?')} vCPUs, BLAS {env.get('blas', '?')}")
    lines.append(f"- GPU: {env.get('gpu_name') or 'none usable'}")
    load, load_end = _first_number(env.get("load_average")), _first_number(b.get("load_average_end"))
    if load is not None:
        end = f", {load_end:g} at the end" if load_end is not None else ""
        lines.append(
            f"- Machine load (1-minute average): {load:g} at the start{end}, "
            f"on {env.get('vcpus', '?')} vCPUs (CPU timings are noisy when it exceeds the vCPUs)"
        )
    versions = ", ".join(f"{k} {env[k]}" for k in ("numpy_version", "cupy_version") if env.get(k))
    if versions:
        lines.append(f"- Versions: {versions.replace('_version', '')}")
    if summary.price_note:
        lines.append(f"- Price: {summary.price_note}")
    lines += [
        "",
        "| width | backend | s/epoch | samples/s | test accuracy | $/epoch | note |",
        "|" + "---|" * 7,
    ]
    for r in summary.rows:
        if r.ok:
            lines.append(
                f"| {r.width:,} | {r.backend} | {r.seconds_per_epoch:.3f} | "
                f"{_fmt_rate(r.samples_per_second)} | {_fmt_acc(r.test_accuracy)} | "
                f"{_fmt_usd(r.usd_per_epoch)} | |"
            )
        else:
            lines.append(f"| {r.width:,} | {r.backend} | — | — | — | — | {r.status}: {_md(r.reason or '')} |")
    lines += ["", "## Speedup (NumPy s/epoch ÷ CuPy s/epoch)", ""]
    if summary.speedups:
        lines += ["| width | speedup |", "|---|---|"]
        lines += [f"| {w:,} | {s:.2f}× |" for w, s in summary.speedups.items()]
        lines.append("")
    lines.append(f"Break-even: {summary.break_even.describe()}.")
    if summary.speedups:
        lines.append(
            "Both backends ran on the same machine at the same $/hour, "
            "so the cost break-even is the same width."
        )
    return "\n".join(lines) + "\n"


def _first_number(values: Any) -> float | None:
    """The first item of a JSON list (e.g. a load average's 1-minute figure) when it is a number."""
    return number(values[0]) if isinstance(values, list) and values else None


def _fmt_rate(x: float | None) -> str:
    return "—" if x is None else f"{x:,.0f}"


def _fmt_acc(x: float | None) -> str:
    return "—" if x is None else f"{x:.4f}"


def _fmt_usd(x: float | None) -> str:
    return "—" if x is None else usd_small(x)


def usd_small(x: float) -> str:
    """Dollars for per-epoch sums: two significant figures below a cent ($0.00029, $0.0000014), else
    format_usd's rounding ($0.0123, $1.50). Never scientific notation: these are read as money."""
    if x == 0:
        return "$0.00"
    if 0 < abs(x) < 0.01:
        digits = 1 - math.floor(math.log10(abs(x)))
        return f"{'-' if x < 0 else ''}${abs(x):.{digits}f}"
    return format_usd(x)


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
