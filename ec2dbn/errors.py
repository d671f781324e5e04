"""Errors a user can cause or meet, each with the exit code the CLI turns it into.

Everything below `Ec2dbnError` carries a one-line, actionable message; the CLI prints it without a
traceback (unless --debug). Exit codes follow the house convention: 1 the job or the cloud failed,
2 bad usage or bad config.
"""

from __future__ import annotations


class Ec2dbnError(Exception):
    """Base of every error ec2dbn reports to the user as one line."""

    exit_code: int = 1


class ConfigError(Ec2dbnError):
    """Bad input: a stack or job file, a flag, an instance type. Nothing was created."""

    exit_code = 2


class CredentialsError(ConfigError):
    """No usable AWS credentials in boto3's default chain."""


class CloudError(Ec2dbnError):
    """AWS refused or failed an operation (capacity, quota, permissions, ...)."""


class RemoteError(Ec2dbnError):
    """SSH to the instance failed: unreachable, refused, or a command failed there."""


class HostKeyMismatchError(RemoteError):
    """The instance presented a host key other than the one pinned at launch."""


class JobFailedError(Ec2dbnError):
    """The trainer ran and failed (crashed, or was stopped)."""


class StackBusyError(ConfigError):
    """The stack is leased to another run (`ec2dbn train` in progress). Nothing was created or changed."""


class StackTornDownError(Ec2dbnError):
    """`ec2dbn teardown` ended the stack while a run was using it: a deliberate stop, not a loss."""

    #: The run status (run.json) a run ended by this error gets.
    run_status = "torn-down"
