"""Errors the trainer reports as one line, with the process exit code they map to."""

from __future__ import annotations


class TrainerError(Exception):
    """Base of the trainer's user-facing errors."""

    exit_code = 1


class JobError(TrainerError):
    """The job file is invalid: a bad key, type or value. Exit code 2."""

    exit_code = 2


class DataError(TrainerError):
    """The data cannot be used: missing, truncated, corrupted, or inconsistent. Exit code 2."""

    exit_code = 2


class BackendError(TrainerError):
    """The requested array backend is unusable (e.g. `cupy` without a GPU). Exit code 2."""

    exit_code = 2


def printable(text: object) -> str:
    """`text` as it is when it prints on one line, else its repr (`'a\\nb'`): user-supplied names and paths
    go into one-line messages, and a newline or control character in them must not break or forge a line."""
    shown = str(text)
    return shown if shown.isprintable() else repr(shown)
