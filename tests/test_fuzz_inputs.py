"""Fuzz job and stack files through the real command line: random YAML, and random values in every key.

Each example is a file handed to `ec2dbn plan` / `ec2dbn launch --dry-run` exactly as a user would, with
AWS pointed at a closed local port: bad input must end as exit code 2 and valid input reaches the first
AWS call and fails there as exit 1 (cannot reach AWS) — never a traceback (main() raising), never exit 0.
The trainer's own loader gets the same files and must answer a Job or a JobError.

Bounded for CI by hypothesis's example counts (FUZZ_EXAMPLES per test, default 25; raise it locally, e.g.
FUZZ_EXAMPLES=2000, for a longer hunt); no deadline, so a loaded machine slows it down but never fails it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ec2dbn.cli import main
from ec2dbn.spec.stack import Stack
from trainer.config import _MODEL_KEYS, RUN_KEYS, load_job
from trainer.errors import JobError

REPO = Path(__file__).resolve().parents[1]
VALID_JOB = yaml.safe_load((REPO / "examples" / "seed-mnist5k.yaml").read_text())
VALID_STACK = yaml.safe_load((REPO / "stacks" / "g4dn-spot.yaml").read_text())

FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "25")),
    deadline=None,
    database=None,
    # capsys is only read between calls, so sharing it between examples is fine
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)

# Values people (and attackers) put in files: edge numbers, odd text, near-misses of valid values.
TRICKY = [
    "",
    " ",
    "~",
    "\n",
    "a\x00b",
    "3h\n",
    "us-east-9",
    "us-east-1\n",
    "ami-0123456789abcdef0\n",
    "g2.2xlarge",
    "g4dn.xlarge",
    "../../etc",
    "/",
    "/dev/null",
    "data.npz",
    "mnsit",
    "1e-4",
    "0x10",
    "[/]",
    "nl\n",
    "ubuntu\n",
    "cupy",
    "spot",
    "on-demand",
    "auto",
    "203.0.113.7/32",
    "0.0.0.0/0",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, -1, 2**31, 2**32, 2**63, 10**30, 100_000_000]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(TRICKY),
)
keys = st.one_of(st.text(max_size=12), st.sampled_from([*_MODEL_KEYS, *RUN_KEYS, *Stack.model_fields]))
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=12,
)
# YAML-ish token soup: anchors, aliases, tags, flow and block markers, for the scanner and the composer.
TOKENS = [
    *("[", "]", "{", "}", ":", ": ", "- ", ",", "? ", "|", ">", "#", "'", '"', "\\", "\t", "\x85", "\ufeff"),
    *("&a ", "*a", "&b ", "*b", "<<: ", "!!str ", "!!binary ", "!!set ", "!!python/object "),
    *("\n", "\n  ", "  ", "---\n", "...\n", "%YAML 1.1\n", "a", "1", "1e5", "~"),
    *("data", "model", "layers", "run", "stack"),
]
token_soup = st.lists(st.sampled_from(TOKENS), max_size=60).map("".join)

JOB_PATHS = [
    "data",
    "model",
    "backend",
    "stack",
    "run",
    *(f"data.{k}" for k in ("name", "test_size", "seed", "mirrors", "cache_dir", "limit", "nmae")),
    *(f"model.{k}" for k in (*_MODEL_KEYS, "learn_rate")),
    *(f"run.{k}" for k in (*RUN_KEYS, "max_hours")),
]
STACK_PATHS = [*Stack.model_fields, "regoin"]


@pytest.fixture(scope="module")
def unreachable_aws() -> Iterator[Path]:
    """A user environment whose AWS endpoint refuses connections at once, and a private ec2dbn home."""
    with tempfile.TemporaryDirectory() as home, pytest.MonkeyPatch.context() as mp:
        for var in (
            "AWS_PROFILE",
            "AWS_REGION",
            "AWS_DEFAULT_REGION",
            "AWS_ENDPOINT_URL_EC2",
            "AWS_ENDPOINT_URL_STS",
        ):
            mp.delenv(var, raising=False)
        mp.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # the discard port: nothing listens here
        mp.setenv("AWS_ACCESS_KEY_ID", "fuzz")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "fuzz")
        mp.setenv("AWS_MAX_ATTEMPTS", "1")
        mp.setenv("AWS_CONFIG_FILE", f"{home}/no-aws-config")
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", f"{home}/no-aws-credentials")
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        mp.setenv("EC2DBN_HOME", f"{home}/ec2dbn")
        mp.setenv("EC2DBN_CALLER_IP", "203.0.113.7")
        yield Path(home)


def with_values(doc: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A copy of `doc` with each path of `changes` ("model.layers") set to its value (sections created)."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in doc.items()}
    for path, value in changes.items():
        head, _, tail = path.partition(".")
        if not tail:
            out[head] = value
        else:
            section = out.get(head)
            out[head] = {**(section if isinstance(section, dict) else {}), tail: value}
    return out


def write(folder: Path, name: str, content: str | Any) -> Path:
    path = folder / name
    text = content if isinstance(content, str) else yaml.safe_dump(content, allow_unicode=True)
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    return path


def cli_refuses_or_reaches_aws(capsys: pytest.CaptureFixture[str], *argv: str) -> None:
    """`ec2dbn ARGV` ends as exit 2 with one `error:` line (bad input), or as exit 1 (valid: AWS is
    unreachable); it never raises (a traceback)."""
    capsys.readouterr()
    rc = main(list(argv))
    err = capsys.readouterr().err
    assert rc in (1, 2), f"ec2dbn {' '.join(map(repr, argv))} exited {rc}"
    if rc == 2:
        assert err.startswith("error: ") and err.count("\n") == 1, err


def trainer_loads_or_refuses(path: Path) -> None:
    try:
        load_job(path)
    except JobError as exc:
        assert "\n" not in str(exc)


@FUZZ
@given(changes=st.dictionaries(st.sampled_from(JOB_PATHS), values, min_size=1, max_size=3))
def test_random_values_in_job_keys(unreachable_aws: Path, capsys, changes: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory(dir=unreachable_aws) as tmp:
        job = write(Path(tmp), "job.yaml", with_values(VALID_JOB, changes))
        trainer_loads_or_refuses(job)
        cli_refuses_or_reaches_aws(capsys, "plan", str(job))


@FUZZ
@given(changes=st.dictionaries(st.sampled_from(STACK_PATHS), values, min_size=1, max_size=3))
def test_random_values_in_stack_keys(unreachable_aws: Path, capsys, changes: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory(dir=unreachable_aws) as tmp:
        stack = write(Path(tmp), "stack.yaml", with_values(VALID_STACK, changes))
        cli_refuses_or_reaches_aws(capsys, "launch", "--stack", str(stack), "--dry-run")


FLAGS = ["--name", "--region", "--image", "--ssh-cidr", "--instance-type"]
flag_values = st.sampled_from(TRICKY) | st.text(min_size=1, max_size=20)


@FUZZ
@given(flags=st.dictionaries(st.sampled_from(FLAGS), flag_values))
def test_random_flag_values(unreachable_aws: Path, capsys, flags: dict[str, str]) -> None:
    argv = [part for flag, value in flags.items() for part in (flag, value)]
    if any(value.startswith("-") for value in flags.values()):
        return  # click reads a value starting with '-' as an option: not what this test is about
    cli_refuses_or_reaches_aws(capsys, "launch", "--dry-run", *argv)


@FUZZ
@given(doc=st.one_of(values, token_soup))
def test_random_documents_as_job_and_stack_files(unreachable_aws: Path, capsys, doc: Any) -> None:
    with tempfile.TemporaryDirectory(dir=unreachable_aws) as tmp:
        path = write(Path(tmp), "file.yaml", doc)
        trainer_loads_or_refuses(path)
        cli_refuses_or_reaches_aws(capsys, "plan", str(path))
        cli_refuses_or_reaches_aws(capsys, "launch", "--stack", str(path), "--dry-run")
