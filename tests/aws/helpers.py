"""What the tests under tests/aws share: the empty inventory, an in-process CLI call and a stack file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ec2dbn.cli import main

#: tests.support.moto_server.tagged_resources() of an account with nothing of ec2dbn's left.
NOTHING = {
    "instances": [],
    "spot_requests": [],
    "security_groups": [],
    "key_pairs": [],
    "volumes": [],
    "fleets": [],
    "launch_templates": [],
}


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run `ec2dbn ARGV...` in this process: (exit code, stdout, stderr); never a traceback."""
    rc = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return rc, out, err


def stack_file(tmp_path: Path, name: str = "t", **fields: Any) -> str:
    """A stack file NAME.yaml in `tmp_path`: a g4dn.xlarge in us-east-1 on ubuntu22 (30 GiB), `fields`
    added or replaced. Returns its path for --stack."""
    base = {
        "name": name,
        "region": "us-east-1",
        "instance_type": "g4dn.xlarge",
        "image": "ubuntu22",
        "volume_gb": 30,
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(json.dumps({**base, **fields}))  # JSON is YAML
    return str(path)
