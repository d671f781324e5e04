"""What the tests under tests/aws share: the empty inventory and an in-process CLI call."""

from __future__ import annotations

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
