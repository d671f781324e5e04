"""Shared pytest set-up. Fixtures live in tests/support/ modules and are loaded here as plugins."""

import pytest

pytest_plugins: list[str] = [
    "tests.support.sshd",
    "tests.support.moto_server",
    "tests.support.fake_cloud",
    "tests.support.iam",
]


@pytest.fixture(autouse=True)
def _idle_machine_for_blas(monkeypatch: pytest.MonkeyPatch) -> None:
    """ec2dbn gives a local trainer fewer BLAS threads on a busy machine (ec2dbn.run.blas_threads), and says
    so: every test sees an idle machine, so that what it checks does not depend on the machine's load."""
    monkeypatch.setenv("EC2DBN_TEST_LOAD", "0")
