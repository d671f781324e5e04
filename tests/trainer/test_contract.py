"""The trainer's contract with ec2dbn (trainer.contract) is defined once, and every JSON writer is strict.

Both are checked by structure, over the source of ec2dbn/ and trainer/: no other module spells a contract
file name or log marker as a literal, and no module but trainer.strict_json (benchmarks/ included) calls
json.dump(s).
"""

from __future__ import annotations

import ast
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.support.strict_json import loads_strict
from tests.trainer.trainer_fixtures import REPO, trainer_env
from trainer import contract
from trainer.strict_json import dumps, finite_or_null, write_json

SOURCES = sorted((*(REPO / "ec2dbn").rglob("*.py"), *(REPO / "trainer").rglob("*.py")))
WRITERS = [*SOURCES, *sorted((REPO / "benchmarks").rglob("*.py"))]  # benchmarks write result JSON too
CONTRACT_STRINGS = {
    value: name for name, value in vars(contract).items() if name.isupper() and isinstance(value, str)
}
EXIT_CODES = {name: value for name, value in vars(contract).items() if name.startswith("EXIT_")}


def _trees(paths: list[Path] = SOURCES) -> list[tuple[Path, ast.AST]]:
    return [(p, ast.parse(p.read_text(encoding="utf-8"))) for p in paths]


def test_contract_names_are_spelled_only_in_trainer_contract() -> None:
    assert {"interruption.json", "checkpoint.npz", "Epoch ", "Training diverged"} <= set(CONTRACT_STRINGS)
    found = [
        f"{path.relative_to(REPO)}:{node.lineno}: {node.value!r} is contract.{CONTRACT_STRINGS[node.value]}"
        for path, tree in _trees()
        if path.name != "contract.py"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in CONTRACT_STRINGS
    ]
    assert not found, "\n".join(found)


def test_exit_codes_are_distinct_and_each_has_a_run_status() -> None:
    assert len(set(EXIT_CODES.values())) == len(EXIT_CODES)
    assert EXIT_CODES["EXIT_DIVERGED"] == 4
    assert {contract.run_status(code) for code in EXIT_CODES.values()} == {
        "finished",
        "failed",
        "interrupted",
        "diverged",
    }
    assert contract.run_status(137) == "failed"


def test_readme_lists_every_exit_code() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for name, code in EXIT_CODES.items():
        word = name.removeprefix("EXIT_").lower()
        assert re.search(rf"^\| `?{code}`? \|.*{word}", readme, re.MULTILINE | re.IGNORECASE), (name, code)


def test_no_json_is_written_outside_the_strict_writer() -> None:
    calls = [
        f"{path.relative_to(REPO)}:{node.lineno}"
        for path, tree in _trees(WRITERS)
        if path.name != "strict_json.py"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr in ("dump", "dumps")
        and isinstance(node.value, ast.Name)
        and node.value.id == "json"
    ]
    assert not calls, f"json.dump(s) outside trainer.strict_json: {calls}"


def test_non_finite_numbers_become_null_and_the_output_is_strict(tmp_path: Path) -> None:
    doc = {
        "loss": float("nan"),
        "inf": [float("inf"), -math.inf, 1.5],
        "numpy": np.float64("nan"),
        "nested": {"t": (2.0, float("nan")), "ok": "NaN", "n": None, "i": 3, "b": True},
    }
    expected = {
        "loss": None,
        "inf": [None, None, 1.5],
        "numpy": None,
        "nested": {"t": [2.0, None], "ok": "NaN", "n": None, "i": 3, "b": True},
    }
    assert finite_or_null(doc) == expected
    assert loads_strict(dumps(doc)) == expected
    assert "NaN" not in json.dumps(finite_or_null(doc)).replace('"NaN"', "")
    path = write_json(tmp_path / "x.json", doc)
    assert loads_strict(path.read_text()) == expected and path.read_text().endswith("}\n")
    with pytest.raises(ValueError, match="NaN"):
        loads_strict('{"loss": NaN}')  # the checker itself refuses what Python's json would accept


def test_the_spot_watcher_still_starts_without_numpy() -> None:
    """trainer.contract and trainer.strict_json, which it now imports, pull in nothing heavy."""
    code = "import sys, trainer.spot_watch; print(sorted(m for m in ('numpy', 'yaml') if m in sys.modules))"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=trainer_env(), cwd=REPO, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "numpy" not in proc.stdout
