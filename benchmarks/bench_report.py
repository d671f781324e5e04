"""What benchmarks/bench_trainer.py says about the machine and its figures: the header (CPU, ISA level, the
BLAS library and kernel each side ran with, the OpenBLAS overrides), the tables and the closing verdict.

The ISA level comes from /proc/cpuinfo's flags (AVX-512 when avx512f is there, AVX2 with avx2 and fma);
the BLAS kernel (OpenBLAS's Haswell, SkylakeX, Zen ...) from threadpoolctl inside the children, so it is the
one the measured processes ran, after any OPENBLAS_CORETYPE was removed from their environment.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

# ----------------------------------------------------------------------------------------------- the machine


def machine() -> dict[str, Any]:
    """CPU model, core count, ISA level from /proc/cpuinfo's flags, Linux kernel, Python."""
    model, flags = "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not model:
                model = value.strip()
            elif key.strip() in ("flags", "Features") and not flags:
                flags = set(value.split())
    except OSError:
        pass
    simd = sorted(f for f in flags if f.startswith(("avx", "fma", "amx")))
    return {
        "cpu": model or platform.processor() or platform.machine(),
        "cores": os.cpu_count() or 1,
        "isa": isa_level(flags),
        "simd_flags": simd,
        "linux": platform.release(),
        "python": platform.python_version(),
    }


def isa_level(flags: set[str]) -> str:
    """'AVX-512', 'AVX2', 'AVX' or 'SSE' from x86 cpuinfo flags (the machine's name elsewhere)."""
    if "avx512f" in flags:
        return "AVX-512"
    if {"avx2", "fma"} <= flags:
        return "AVX2"
    if "avx" in flags:
        return "AVX"
    return "SSE" if "sse2" in flags else platform.machine()


def blas_summary(pools: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The first BLAS pool threadpoolctl saw in a child: library, version, kernel (e.g. Haswell, SkylakeX)."""
    blas = next((p for p in pools if p.get("user_api") == "blas"), None)
    if blas is None:
        return None
    return {
        "library": blas.get("internal_api"),
        "version": blas.get("version"),
        "kernel": blas.get("architecture"),
        "threads": blas.get("num_threads"),
    }


def load_average() -> list[float]:
    """The 1-, 5- and 15-minute load averages (/proc/loadavg): how busy the machine was."""
    return [round(x, 2) for x in os.getloadavg()]


# ----------------------------------------------------------------------------------------------- the report


def threads_text(n: int) -> str:
    return "1 thread" if n == 1 else f"{n} threads"


def spread_text(s: dict[str, Any] | None) -> str:
    return f"{s['median']:.2f} [{s['min']:.2f}-{s['max']:.2f}]" if s else "-"


def seconds_text(side: dict[str, Any] | None) -> str:
    return f"{side['wall_s']:6.2f} ({side['cpu_s']:6.2f})" if side else "-"


def table_lines(rows: list[dict[str, Any]]) -> list[str]:
    """One line per comparison (and one for its floor): each side's seconds, wall (CPU), as the median over
    the rounds, and the ratios' median [min-max] over the rounds."""
    cols = f"{'ours s (CPU s)':>16s} {'peer s (CPU s)':>16s} {'ratio [range]':>17s} {'CPU ratio':>17s}"
    out = [f"{'':38s} {cols} {'GEMM-bound s':>12s}"]
    for row in rows:
        label = f"{row['what']} vs {row['peer_name']}" if "peer" in row else row["what"]
        cells = [f"{label:38s}", f"{seconds_text(row['ours']):>16s}", f"{seconds_text(row.get('peer')):>16s}"]
        cells += [f"{spread_text(row.get('ratio')):>17s}", f"{spread_text(row.get('cpu_ratio')):>17s}"]
        out.append(" ".join([*cells, f"{row['gemm_bound_s']:12.2f}"]))
        if "floor" in row:
            fl = row["floor"]
            cells = [f"{'  GEMMs only (floor)':38s}", f"{seconds_text(fl):>16s}", f"{'':>16s}"]
            cells += [f"{spread_text(fl.get('ratio')):>17s}", f"{spread_text(fl.get('cpu_ratio')):>17s}"]
            out.append(" ".join(cells))
    return out


def header_lines(result: dict[str, Any]) -> list[str]:
    """The machine, per thread setting the BLAS (and PyTorch build) the children ran with and the GEMM speed,
    and what became of OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE."""
    m, ov = result["machine"], result["openblas_overrides"]
    lines = [
        f"machine: {m['cpu']} ({m['cores']} cores), ISA {m['isa']}; Linux {m['linux']}; Python {m['python']}"
    ]
    for threads, probe in result["probes"].items():
        blas, info = probe["blas"] or {}, probe["info"]
        text = f"{threads_text(threads)}: NumPy {info['numpy']} BLAS: {blas.get('library')} "
        text += f"{blas.get('version')}, kernel {blas.get('kernel')}, {blas.get('threads')} threads"
        if "torch" in info:
            t = info["torch"]
            text += f"; PyTorch {t['version']} ({t['blas']} {t['mkl'] or ''}, "
            text += f"CPU capability {t['cpu_capability']}, {t['threads']} threads)"
        where = info.get("device", f"{info['sgemm_size']}³ numpy matmul")
        lines.append(text + f"; float32 GEMM {info['sgemm_gflops']:.0f} GFLOP/s ({where})")
    if ov["set"]:
        values = " ".join(f"{k}={v}" for k, v in ov["set"].items())
        lines.append(f"{values} set here: {'kept' if ov['kept'] else 'unset'} for the benchmark's processes")
    else:
        lines.append("OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE: not set here (nothing to unset)")
    return lines


def verdict_lines(settings: list[dict[str, Any]], gpu: bool) -> list[str]:
    """ours/PyTorch at the first batch size, per thread setting; on the CPU against the trainer issue's target
    of 0.5 (there is none on the GPU)."""
    out = []
    for s in settings:
        row = s["comparisons"][0]
        if "ratio" not in row:
            continue
        r = row["ratio"]
        where = "on the GPU" if gpu else threads_text(s["threads"])
        text = f"ours/PyTorch at batch {row['batch']}, {where}: {spread_text(r)} over the rounds"
        if not gpu:
            text += f" (CPU seconds {spread_text(row['cpu_ratio'])}); target <= 0.5 "
            text += "met" if r["median"] <= 0.5 else "NOT met"
        out.append(text)
        if "ratio" in row.get("floor", {}):
            out.append(f"  the GEMMs alone: {spread_text(row['floor']['ratio'])} of PyTorch's epoch")
        out.append(f"  first-epoch loss: ours {row['ours']['loss']:.4f}, PyTorch {row['peer']['loss']:.4f}")
    return out
