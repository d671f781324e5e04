"""What goes into a bake (`ec2dbn bake`), and the hash that names it.

A bake is the stack's instance after its bootstrap, imaged. What it holds follows from a few inputs: the
base image it was launched from, the bootstrap scripts (every file in bootstrap/, helpers and the image
preparation included), the steps the stack runs, and the Python packages the trainer needs on the
instance (the data sets' requirements; NumPy, PyYAML and CuPy are named in python.sh, which is hashed).
Equal inputs give an equal hash, so `bake` finds and reuses the image it made before; a change to any of
them (a new base AMI behind an alias, an edited script) gives a new hash and a new bake, and a stack with
`bake: auto` stops using the stale one at once. Pure: no AWS, no SSH.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path

from ec2dbn.package_data import bootstrap_dir

#: Hex digits of the hash kept in tags and names (48 bits: collisions among one account's bakes are moot).
HASH_LENGTH = 16

#: The script (in bootstrap/, not a step a stack lists) that prepares the builder for imaging.
PREPARE_SCRIPT = "_image_prepare.sh"


def bundled_data_sets() -> tuple[str, ...]:
    """The data sets the bundled example jobs (and sweeps) use, in a stable order: what a bake caches."""
    from ec2dbn.spec.jobfiles import bundled_examples, read_job_mapping
    from trainer.config import parse_job

    # a sweep's job is its file without the `sweep:` section (which names no other data set)
    names = {str(parse_job(read_job_mapping(e.path)[0]).data.name) for e in bundled_examples()}
    return tuple(sorted(names))


def requirements_for(data_sets: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """The (module, pip requirement) pairs the data sets need beyond NumPy and PyYAML, without repeats."""
    from trainer.data import data_requirements

    found: dict[tuple[str, str], None] = {}
    for name in data_sets:
        found.update(dict.fromkeys(data_requirements(name)))
    return tuple(sorted(found))


def bake_requirements() -> tuple[tuple[str, str], ...]:
    """What a bake's venv gets beyond NumPy, PyYAML and CuPy: what every bundled job's data set needs, and
    the run store's uploader (boto3), so a stored run on a baked instance installs nothing."""
    from trainer.contract import STORE_REQUIREMENTS

    return tuple(sorted({*requirements_for(bundled_data_sets()), *STORE_REQUIREMENTS}))


def bake_hash(base_image_id: str, steps: Sequence[str], scripts: Path | None = None) -> str:
    """The bake's name for these inputs: HASH_LENGTH hex digits of a SHA-256 over the base image id, the
    steps in order, every bootstrap/ file (name and bytes) and the requirements the venv gets. The data
    files cached in it are not an input: one that is missing is downloaded when a job needs it."""
    digest = hashlib.sha256()

    def part(label: str, value: bytes) -> None:
        digest.update(f"{label}:{len(value)}:".encode())
        digest.update(value)

    part("base", base_image_id.encode())
    part("steps", "\0".join(s.removesuffix(".sh") for s in steps).encode())
    folder = scripts or bootstrap_dir()
    for path in sorted(folder.glob("*.sh")):
        part(f"script {path.name}", path.read_bytes())
    part("requirements", repr(bake_requirements()).encode())
    return digest.hexdigest()[:HASH_LENGTH]
