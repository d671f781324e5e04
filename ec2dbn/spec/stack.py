"""Stack definitions: the strict model of a `stacks/*.yaml` file, loading it, and command-line overrides.

A stack says what to launch (region, instance type candidates, market, image, disk), where (the default
VPC, or `vpc_id` / `subnet_ids` / `subnet_tags`) and how to reach it (ssh user, the CIDR allowed in, where
the job runs). Everything is checked here, before any AWS call: unknown keys, wrong types, impossible
values, malformed type names and retired families (g2) all become one `ConfigError` line naming the
field, which the CLI turns into exit code 2. A well-formed type the catalog does not list passes: the plan
phase asks EC2 what it is.

Region precedence for `launch`: `--region` flag, then the AWS_REGION environment variable, then the
stack's own `region` (see `launch_region`).
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from ec2dbn import package_data
from ec2dbn.errors import ConfigError
from ec2dbn.spec import catalog
from trainer.config import parse_lifetime  # one duration syntax for a stack's and a job's max_lifetime
from trainer.errors import printable
from trainer.safe_yaml import YamlError, read_yaml_file

#: The stack used when none is named on the command line.
DEFAULT_STACK = "g4dn-spot"

#: Image aliases resolved through AWS's public SSM parameters (see ec2dbn.aws.images for the names).
IMAGE_ALIASES = ("dlami-ubuntu22", "dlami-ubuntu24", "ubuntu22", "ubuntu24")

#: The image a stack gets when it names none, and what `image: baked` bakes from by default.
DEFAULT_IMAGE = "dlami-ubuntu22"
#: `image: baked`: launch only from a bake of the stack (`ec2dbn bake --stack S`).
BAKED = "baked"

#: Bootstrap script names accepted when bootstrap/ has no scripts yet (it normally lists *.sh).
KNOWN_BOOTSTRAP = ("base", "nvidia", "python", "check")

#: Tag keys ec2dbn sets itself; a stack's `tags` may not override them.
RESERVED_TAG_PREFIXES = ("ec2dbn:", "aws:")

# Every pattern is applied with fullmatch: `$` would also match before a trailing newline, and a name
# ending in one splits the cloud-config comment it is written into.
_AMI_RE = re.compile(r"ami-[0-9a-f]{8,17}")
_VPC_RE = re.compile(r"vpc-(?:[0-9a-f]{8}|[0-9a-f]{17})")
_SUBNET_RE = re.compile(r"subnet-(?:[0-9a-f]{8}|[0-9a-f]{17})")
_USER_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
_REMOTE_DIR_RE = re.compile(r"~|~/[A-Za-z0-9_./-]*|/[A-Za-z0-9_./-]+")
#: `store: s3://bucket[/prefix]`: S3's bucket naming rules (3-63 lowercase letters, digits, dots, hyphens,
#: starting and ending with a letter or digit) and a prefix of plain key characters.
_STORE_URI_RE = re.compile(
    r"s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:/(?P<prefix>[A-Za-z0-9_./=-]*))?"
)

#: `store: auto` (the default): the run store is ec2dbn's bucket of the account and region, made on first use.
STORE_AUTO = "auto"
#: `store: none`: no run store; a run's files reach this machine only while `ec2dbn train` follows it.
STORE_NONE = "none"

#: A stack name (always applied with fullmatch: a trailing newline must not pass): it names a folder
#: of the state dir, tags and resources.
STACK_NAME_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?")


def bootstrap_names() -> tuple[str, ...]:
    """Script names a stack may list: the *.sh files in bootstrap/, or the fixed set before they exist."""
    try:
        found = sorted(
            p.stem for p in package_data.bootstrap_dir().glob("*.sh") if not p.name.startswith("_")
        )
    except FileNotFoundError:
        found = []
    return tuple(found) if found else KNOWN_BOOTSTRAP


class Stack(BaseModel):
    """One declarative stack. Units: max_price USD/hour, volume_gb GiB, max_lifetime a duration string."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str
    region: str
    instance_type: list[str] = Field(description="one type, or candidates in order of preference")
    market: Literal["spot", "on-demand"] = "spot"
    fallback: Literal["on-demand", "none"] = "on-demand"
    max_price: float | None = None
    availability_zones: list[str] | None = None
    vpc_id: str | None = None
    subnet_ids: list[str] | None = None
    subnet_tags: dict[str, str] | None = None
    image: str = DEFAULT_IMAGE
    #: `auto`: launch from the newest bake of this stack's inputs when one exists (`ec2dbn bake`), else
    #: from `image` with a full bootstrap. `image: baked` requires a bake (built from `base_image`).
    bake: Literal["off", "auto"] = "off"
    base_image: str | None = None
    volume_gb: int = 100
    ssh_user: str = "ubuntu"
    ssh_cidr: str = "auto"
    max_lifetime: str = "3h"
    remote_dir: str = "~/ec2dbn"
    bootstrap: list[str] = Field(default_factory=lambda: list(KNOWN_BOOTSTRAP))
    tags: dict[str, str] = Field(default_factory=dict)
    max_recoveries: int = 3
    #: Where runs keep their checkpoints, logs and results beyond the instance: `auto`, `none` or
    #: `s3://bucket/prefix` (see README "Runs that outlive your laptop").
    store: str = STORE_AUTO
    description: str = ""

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not STACK_NAME_RE.fullmatch(v):
            raise ValueError(f"{v!r} must be 1-40 lowercase letters, digits or '-' (it names AWS resources)")
        return v

    @field_validator("region")
    @classmethod
    def _region(cls, v: str) -> str:
        try:
            return catalog.check_region(v)
        except ConfigError as exc:  # the catalog's one-liner, re-raised so the field is named
            raise ValueError(str(exc)) from None

    @field_validator("instance_type", mode="before")
    @classmethod
    def _instance_type(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, list) or not v or not all(isinstance(t, str) for t in v):
            raise ValueError("must be an instance type or a non-empty list of them")
        names = [t.strip().lower() for t in v]
        if len(set(names)) != len(names):
            raise ValueError("lists the same instance type twice")
        for t in names:
            try:
                catalog.check_name(t)  # well-formed, not retired; EC2 describes unlisted types at plan
            except ConfigError as exc:  # the catalog's one-liner, re-raised so the field is named
                raise ValueError(str(exc)) from None
        return names

    @field_validator("max_price")
    @classmethod
    def _max_price(cls, v: float | None) -> float | None:
        if v is not None and not 0 < v <= 1000:
            raise ValueError(f"{v} USD/hour is not a price; use a positive number such as 0.30")
        return v

    @field_validator("availability_zones")
    @classmethod
    def _azs(cls, v: list[str] | None, info: ValidationInfo) -> list[str] | None:
        if v is None:
            return None
        if not v:
            raise ValueError("is empty; leave it out to use every zone that offers the type")
        region = info.data.get("region")
        for az in v:
            m = catalog.AZ_RE.fullmatch(az)
            if not m:
                raise ValueError(f"{az!r} is not an availability zone name (e.g. us-east-1a)")
            if region and m.group(1) != region:
                raise ValueError(f"{az} is not in region {region}")
        if len(set(v)) != len(v):
            raise ValueError("lists the same zone twice")
        return v

    @field_validator("vpc_id")
    @classmethod
    def _vpc(cls, v: str | None) -> str | None:
        if v is not None and not _VPC_RE.fullmatch(v):
            raise ValueError(f"{v!r} is not a VPC id (vpc- and 8 or 17 hex digits)")
        return v

    @field_validator("subnet_ids")
    @classmethod
    def _subnets(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return None
        if not v:
            raise ValueError("is empty; leave it out to use the default VPC's subnets")
        for s in v:
            if not _SUBNET_RE.fullmatch(s):
                raise ValueError(f"{s!r} is not a subnet id (subnet- and 8 or 17 hex digits)")
        if len(set(v)) != len(v):
            raise ValueError("lists the same subnet twice")
        return v

    @field_validator("subnet_tags")
    @classmethod
    def _subnet_tags(cls, v: dict[str, str] | None, info: ValidationInfo) -> dict[str, str] | None:
        if v is None:
            return None
        if not v:
            raise ValueError("is empty; give tags the subnets carry, e.g. {ec2dbn: 'yes'}")
        if info.data.get("subnet_ids"):
            raise ValueError("give subnet_ids or subnet_tags, not both")
        return v

    @field_validator("image")
    @classmethod
    def _image(cls, v: str) -> str:
        if v != BAKED and v not in IMAGE_ALIASES and not _AMI_RE.fullmatch(v):
            raise ValueError(
                f"{v!r} is neither an alias ({', '.join(IMAGE_ALIASES)}), an ami- id nor {BAKED!r}"
            )
        return v

    @field_validator("base_image")
    @classmethod
    def _base_image(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None:
            return v
        if info.data.get("image") != BAKED:
            raise ValueError("is the image a bake is made from: give it with `image: baked` only")
        if v not in IMAGE_ALIASES and not _AMI_RE.fullmatch(v):
            raise ValueError(f"{v!r} is neither an alias ({', '.join(IMAGE_ALIASES)}) nor an ami- id")
        return v

    @property
    def source_image(self) -> str:
        """The image the instance boots from before any bake: `image`, or `base_image` (default
        DEFAULT_IMAGE) with `image: baked`."""
        if self.image == BAKED:
            return self.base_image or DEFAULT_IMAGE
        return self.image

    @property
    def bake_mode(self) -> str:
        """'required' (`image: baked`), 'auto' (`bake: auto`) or 'off'."""
        return "required" if self.image == BAKED else str(self.bake)

    @field_validator("volume_gb")
    @classmethod
    def _volume(cls, v: int) -> int:
        if not 8 <= v <= 16384:
            raise ValueError(f"{v} GiB is outside 8 .. 16384 (gp3 limits)")
        return v

    @field_validator("ssh_user")
    @classmethod
    def _user(cls, v: str) -> str:
        if not _USER_RE.fullmatch(v):
            raise ValueError(f"{v!r} is not a Linux user name")
        return v

    @field_validator("ssh_cidr")
    @classmethod
    def _cidr(cls, v: str) -> str:
        if v == "auto":
            return v
        try:
            net = ipaddress.ip_network(v, strict=True)
        except ValueError as exc:
            raise ValueError(f"{v!r} is not 'auto' or a CIDR such as 203.0.113.7/32 ({exc})") from None
        return str(net)

    @field_validator("max_lifetime")
    @classmethod
    def _lifetime(cls, v: str) -> str:
        parse_lifetime(v)
        return v

    @field_validator("remote_dir")
    @classmethod
    def _remote_dir(cls, v: str) -> str:
        if not _REMOTE_DIR_RE.fullmatch(v) or "/../" in f"{v}/":
            raise ValueError(f"{v!r} must be '~', '~/path' or '/absolute/path' (letters, digits, _ . / -)")
        return v.rstrip("/") if len(v) > 1 else v

    @field_validator("bootstrap")
    @classmethod
    def _bootstrap(cls, v: list[str]) -> list[str]:
        known = bootstrap_names()
        for script in v:
            if script not in known:
                raise ValueError(f"unknown script {script!r}; bootstrap/ has {', '.join(known)}")
        if len(set(v)) != len(v):
            raise ValueError("lists the same script twice")
        return v

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: dict[str, str]) -> dict[str, str]:
        if len(v) > 40:
            raise ValueError("more than 40 tags (AWS allows 50 per resource and ec2dbn sets its own)")
        for key, value in v.items():
            if key == "Name" or key.lower().startswith(RESERVED_TAG_PREFIXES):
                raise ValueError(f"{key!r} is set by ec2dbn itself")
            if not 1 <= len(key) <= 128 or len(value) > 256:
                raise ValueError(f"{key!r}: keys are 1-128 characters, values at most 256")
        return v

    @field_validator("max_recoveries")
    @classmethod
    def _recoveries(cls, v: int) -> int:
        if not 0 <= v <= 20:
            raise ValueError(f"{v} is outside 0 .. 20")
        return v

    @field_validator("store")
    @classmethod
    def _store(cls, v: str) -> str:
        if v in (STORE_AUTO, STORE_NONE):
            return v
        m = _STORE_URI_RE.fullmatch(v)
        if not m or ".." in v or "//" in v[len("s3://") :]:
            raise ValueError(
                f"{v!r} is not 'auto', 'none' or s3://BUCKET[/PREFIX] (a bucket name: 3-63 lowercase "
                "letters, digits, '.' or '-')"
            )
        return v

    @property
    def has_store(self) -> bool:
        """Whether runs on this stack keep their files in a run store (S3)."""
        return self.store != STORE_NONE

    @property
    def candidates(self) -> list[str]:
        """Instance types in order of preference (at least one)."""
        return list(self.instance_type)

    @property
    def lifetime_minutes(self) -> int:
        """max_lifetime in minutes: the instance shuts itself down (and so terminates) after this."""
        return parse_lifetime(self.max_lifetime)

    @property
    def key_name(self) -> str:
        """The EC2 key pair and security group name for this stack."""
        return f"ec2dbn-{self.name}"


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{printable(part)}" if out else printable(part))
    return out or "stack"


def one_line(exc: ValidationError, where: str, *, name_field: bool = True) -> ConfigError:
    """The first validation problem as one line naming the field (and how many more there are)."""
    errors = exc.errors(include_url=False)
    err = errors[0]
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = f"unknown key (allowed: {', '.join(Stack.model_fields)})"
    elif err["type"] == "missing":
        msg = "is required"
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    field = f"{_loc(tuple(err['loc']))}: " if name_field else ""
    return ConfigError(f"{where}: {field}{msg}{more}")


def parse_stack(data: Any, where: str = "stack") -> Stack:
    """Validate a stack mapping (as read from YAML). `where` names it in the error line."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of stack fields, got {type(data).__name__}")
    try:
        return Stack.model_validate(data)
    except ValidationError as exc:
        raise one_line(exc, where) from None


def bundled_stacks() -> list[str]:
    """Names of the stacks shipped in stacks/."""
    try:
        return sorted(p.stem for p in package_data.stacks_dir().glob("*.yaml"))
    except FileNotFoundError:
        return []


def stack_path(name_or_path: str | os.PathLike[str]) -> Path:
    """A bundled stack by name (stacks/NAME.yaml), else a file path. ConfigError when neither exists."""
    text = str(name_or_path)
    if "/" not in text and os.sep not in text:
        try:
            bundled = package_data.stacks_dir() / f"{text.removesuffix('.yaml')}.yaml"
        except FileNotFoundError:
            bundled = None
        if bundled is not None and bundled.is_file():
            return bundled
    path = Path(text).expanduser()
    if path.is_file():
        return path
    names = ", ".join(bundled_stacks()) or "none"
    raise ConfigError(f"no stack {text!r}: not a bundled stack ({names}) nor a file")


def load_stack(name_or_path: str | os.PathLike[str] | None = None) -> Stack:
    """Load and validate a stack: a bundled name (see `bundled_stacks`) or a YAML file path.

    A file without `name:` takes its file name (stem). Every problem is one ConfigError line.
    """
    path = stack_path(name_or_path or DEFAULT_STACK)
    try:
        data = read_yaml_file(path, "stack file")  # trainer's loader: aliases, depth and size bounded
    except YamlError as exc:
        raise ConfigError(str(exc)) from None
    if isinstance(data, dict) and "name" not in data:
        data = {"name": path.stem, **data}
    return parse_stack(data, str(path))
