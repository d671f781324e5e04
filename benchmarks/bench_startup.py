"""How long `ec2dbn --help`, `ec2dbn --version` and a verb's own `--help` take to answer, each in a fresh
process: the median and the spread of N runs, with the CPU they ran on. The target (issue 27) is under 0.5 s
for `--help`/`--version` on a 2-core cloud machine; it is a benchmark, not a test, as a loaded machine slows
every figure.

    python benchmarks/bench_startup.py [--runs 15]

Each run is the console script's own entry point (`python -c "from ec2dbn.cli import main; main([...])"`,
the same as the `ec2dbn` script without the script-wrapper's start), timed from spawn to exit in wall seconds.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = (["--version"], ["--help"], ["train", "--help"], ["examples"])


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux), with the number of cores this process may use."""
    name = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    cores = len(sys_affinity())
    return f"{name} ({cores} cores)"


def sys_affinity() -> set[int]:
    import os

    try:
        return os.sched_getaffinity(0)
    except AttributeError:  # not Linux
        return set(range(os.cpu_count() or 1))


def time_once(argv: list[str]) -> float:
    """Wall seconds for one fresh `ec2dbn ARGV` to exit (its output discarded)."""
    code = f"import sys; from ec2dbn.cli import main; sys.exit(main({argv!r}))"
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True
    )
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="runs per command (default 15)")
    args = parser.parse_args()
    print(f"ec2dbn start-up on {cpu_name()}, Python {platform.python_version()}, {args.runs} runs each")
    for argv in COMMANDS:
        time_once(argv)  # a warm-up: the files are in the page cache for every timed run alike
        times = sorted(time_once(argv) for _ in range(args.runs))
        q1, _, q3 = statistics.quantiles(times, n=4)
        shown = " ".join(["ec2dbn", *argv])
        print(
            f"{shown:<22} median {statistics.median(times):.3f} s  "
            f"[{q1:.3f}–{q3:.3f}] interquartile, min {times[0]:.3f}, max {times[-1]:.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
