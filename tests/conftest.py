"""Shared pytest set-up. Fixtures live in tests/support/ modules and are loaded here as plugins."""

pytest_plugins: list[str] = [
    "tests.support.sshd",
    "tests.support.moto_server",
    "tests.support.fake_cloud",
    "tests.support.iam",
]
