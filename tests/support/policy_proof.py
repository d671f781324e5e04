"""The proof that `ec2dbn iam-policy` allows what ec2dbn does, over what this test session recorded.

Every call ec2dbn's clients made (tests/support/authz_record.py) becomes the authorization requests AWS
evaluates for it (tests/support/authz.py), and all of them are evaluated at once under the printed policy by
a real evaluator (tests/support/iam_eval.py). Run when the session ends, so it judges exactly what the tests
that ran made ec2dbn do (a subset of the suite proves its subset). Without node or its packages the proof is
skipped with the reason — outside CI only; in CI that is a failure.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support import authz, iam_eval


@dataclass
class Verdict:
    skipped: str | None = None
    summary: str = ""
    failures: list[str] = field(default_factory=list)


def prove(
    records: Iterable[Mapping[str, Any]], policies: list[dict[str, Any]]
) -> tuple[iam_eval.Evaluation, list[str], int]:
    """Evaluate the records' requests under `policies`: (the evaluation, calls that could not be described,
    how many requests were evaluated)."""
    requests, undescribed = authz.batch(records)
    evaluation = iam_eval.evaluate(policies, requests) if requests else iam_eval.Evaluation()
    return evaluation, undescribed, len(requests)


def keep_records(path: Path) -> None:
    """Write the session's records as JSON lines (to re-run the proof by hand: `python -m
    tests.support.policy_proof PATH`)."""
    from tests.support.authz_record import RECORDED

    path.write_text("".join(json.dumps(r, default=str) + "\n" for r in RECORDED))


def verdict() -> Verdict:
    """The session's verdict over tests/support/authz_record.RECORDED."""
    from ec2dbn.aws.iam_policy import policies
    from tests.support.authz_record import RECORDED

    if not RECORDED:
        return Verdict()
    reason = iam_eval.missing()
    if reason is not None:
        if iam_eval.in_ci():
            return Verdict(summary="the evaluator is missing in CI", failures=[reason])
        return Verdict(skipped=reason)
    evaluation, undescribed, count = prove(RECORDED, policies())
    failures = [f"undescribed call: {u}" for u in undescribed] + evaluation.lines()
    calls = len(RECORDED)
    summary = (
        f"{count} distinct authorization requests from {calls} recorded calls, "
        f"{len(evaluation.results)} verdicts, {len(evaluation.refused)} refused"
    )
    return Verdict(summary=summary, failures=failures)


if __name__ == "__main__":
    from ec2dbn.aws.iam_policy import policies

    records = [json.loads(line) for line in Path(sys.argv[1]).read_text().splitlines()]
    ev, undescribed, n = prove(records, policies())
    print(f"{n} requests, {len(ev.results)} verdicts, {len(ev.refused)} refused")
    for line in [*undescribed, *ev.lines(limit=200)]:
        print(line)
