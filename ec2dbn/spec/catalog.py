"""The bundled instance catalog: what each EC2 type carries (GPU, vCPUs, memory) and its dated list price.

Why a bundled file: AWS's Pricing API needs credentials and a network round trip (and moto has none), yet
`plan`, `launch --dry-run` and every `train` must show a price before anything is created. So ec2dbn
ships `data/catalog.yaml`, stamped with the date and source of its prices, and says so wherever a price
is printed. Types it does not price are asked of the AWS Price List API (`ec2dbn.aws.price_list`, best
effort). Live spot prices come from `ec2dbn.aws.prices.spot_price` instead.

Validation lives here too: an instance type name is checked before any AWS call (well-formed, not of a
retired family; types the catalog does not list are described by EC2 in the plan phase, `describe`), and
families whose GPU current software cannot drive are retired (listed, flagged, refused with a suggestion):
below compute capability 5.0 (the seed's g2 GRID K520 at 3.0, p2's K80 at 3.7) CUDA 12 and CuPy cannot
run them; below 7.5 (g3's Maxwell M60 at 5.2, p3's Volta V100 at 7.0) no current driver does, because
NVIDIA's R580 is the last driver branch for Maxwell, Pascal and Volta and the Deep Learning AMIs ship newer
branches. Retirement follows from the compute capability alone, so a new entry cannot forget it.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from ec2dbn.errors import ConfigError
from trainer.safe_yaml import load_yaml

#: Oldest CUDA compute capability CUDA 12.x (and so the CuPy wheels the trainer uses) can run.
MIN_COMPUTE_CAPABILITY = "5.0"

#: Oldest compute capability (Turing) that NVIDIA's current driver branches support. "The release 580
#: series will be the last to support GPUs based on the Maxwell, Pascal, and Volta architectures" (NVIDIA,
#: Unix graphics feature deprecation schedule); current Deep Learning AMIs ship R595 or newer.
MIN_DRIVER_COMPUTE_CAPABILITY = "7.5"

#: Architecture names of the compute capabilities from 5.0 to below 7.5, by major version.
_DRIVER_RETIRED_ARCHITECTURES = {5: "Maxwell", 6: "Pascal", 7: "Volta"}

#: The region whose prices every catalog entry has; other regions fall back to it, labelled as such.
BASE_REGION = "us-east-1"

#: An availability zone: its region, then one letter (applied with fullmatch).
AZ_RE = re.compile(r"([a-z]{2,4}(?:-gov|-iso[a-z]?|-de)?-[a-z]+-\d+)[a-z]")

#: An EC2 instance type name: family (letters, digits, '-': g4dn, p6-b200, u-6tb1) '.' size (fullmatch).
_TYPE_RE = re.compile(r"[a-z][a-z0-9-]*\.[a-z0-9-]+")

#: Compute capability of the NVIDIA GPUs EC2 describes (DescribeInstanceTypes GpuInfo.Gpus[].Name), for
#: types that are not in the bundled catalog. Names missing here (a GPU newer than this table) are taken
#: as current: every GPU below compute capability 7.5 that EC2 ever offered is listed.
NVIDIA_COMPUTE_CAPABILITY = {
    "K520": "3.0",
    "K80": "3.7",
    "M60": "5.2",
    "V100": "7.0",
    "T4": "7.5",
    "T4g": "7.5",
    "A100": "8.0",
    "A10G": "8.6",
    "L4": "8.9",
    "L40S": "8.9",
    "H100": "9.0",
    "H200": "9.0",
    "B200": "10.0",
}

#: Used to suggest a type instead of a retired one that the catalog has no suggestion for.
DEFAULT_SUGGESTION = "g4dn.xlarge"


@dataclass(frozen=True)
class InstanceType:
    """One EC2 instance type as the catalog knows it.

    Memory is in GiB; `gpu_memory_gib` is per GPU. CPU types have gpu_model None, gpu_count 0,
    gpu_memory_gib 0 and gpu_compute_capability None. `retired` types (GPU below compute capability
    MIN_DRIVER_COMPUTE_CAPABILITY) are listed, so `ec2dbn catalog` can show them flagged, but `lookup`
    refuses them and `suggestion` names the type to use instead.
    """

    name: str
    family: str
    gpu_model: str | None
    gpu_count: int
    gpu_memory_gib: float
    gpu_compute_capability: str | None
    vcpus: int
    memory_gib: float
    previous_generation: bool
    note: str
    retired: bool = False
    suggestion: str | None = None

    @property
    def is_gpu(self) -> bool:
        return self.gpu_count > 0


@dataclass(frozen=True)
class Price:
    """An hourly price in USD with where it came from and when (`date` is ISO, YYYY-MM-DD): the one price
    record, from the catalog, EC2 or the Price List API, and recorded as is in state.json and run.json.
    `region` is "" in a state.json written before prices carried it."""

    usd_per_hour: float
    source: str
    date: str
    region: str = ""
    market: str = "on-demand"


@dataclass(frozen=True)
class _Catalog:
    date: str
    source: str
    types: dict[str, InstanceType]  # insertion order = the data file's order
    prices: dict[str, dict[str, float]]  # type name -> region -> USD/h


def _cc_tuple(cc: str) -> tuple[int, int]:
    major, _, minor = cc.partition(".")
    return int(major), int(minor or 0)


def _is_retired(cc: str | None) -> bool:
    """A GPU no current driver (or, below 5.0, no current CUDA) supports."""
    return cc is not None and _cc_tuple(cc) < _cc_tuple(MIN_DRIVER_COMPUTE_CAPABILITY)


def _parse(doc: dict[str, Any]) -> _Catalog:
    """Turn the YAML document into records; a malformed data file is a bug, so it fails loudly."""
    types: dict[str, InstanceType] = {}
    prices: dict[str, dict[str, float]] = {}
    for group, fam in doc["families"].items():
        gpu = fam.get("gpu")
        for name, spec in fam["types"].items():
            cc = str(gpu["compute_capability"]) if gpu else None
            retired = _is_retired(cc)
            if retired and not spec.get("suggest", fam.get("suggest")):
                raise ValueError(f"catalog entry {name} ({group}) is retired but suggests no type to use")
            types[name] = InstanceType(
                name=name,
                family=name.split(".", 1)[0],
                gpu_model=gpu["model"] if gpu else None,
                gpu_count=int(spec.get("gpus", 0)) if gpu else 0,
                gpu_memory_gib=float(gpu["memory_gib"]) if gpu else 0.0,
                gpu_compute_capability=cc,
                vcpus=int(spec["vcpus"]),
                memory_gib=float(spec["memory_gib"]),
                previous_generation=bool(fam.get("previous_generation", False)) or retired,
                note=str(fam.get("note", "")),
                retired=retired,
                suggestion=spec.get("suggest", fam.get("suggest")),
            )
            if BASE_REGION not in spec["usd_per_hour"]:
                raise ValueError(f"catalog entry {name} ({group}) has no {BASE_REGION} price")
            prices[name] = {str(r): float(p) for r, p in spec["usd_per_hour"].items()}
    return _Catalog(
        date=str(doc["date"]), source=" ".join(str(doc["source"]).split()), types=types, prices=prices
    )


@cache
def _catalog() -> _Catalog:
    text = resources.files("ec2dbn").joinpath("data", "catalog.yaml").read_text(encoding="utf-8")
    return _parse(load_yaml(text, "ec2dbn/data/catalog.yaml"))


def catalog_date() -> str:
    """The date (YYYY-MM-DD) the bundled prices were taken from AWS's price list."""
    return _catalog().date


@dataclass(frozen=True)
class StoragePrice:
    """What an EBS snapshot costs to keep: USD per GB-month of data stored, with source and date."""

    usd_per_gb_month: float
    source: str
    date: str


@cache
def snapshot_price() -> StoragePrice:
    """The bundled EBS snapshot price (us-east-1 Standard tier; other regions differ by a few percent)."""
    text = resources.files("ec2dbn").joinpath("data", "catalog.yaml").read_text(encoding="utf-8")
    doc = load_yaml(text, "ec2dbn/data/catalog.yaml")["storage"]
    return StoragePrice(
        float(doc["ebs_snapshot_usd_per_gb_month"]), f"{doc['source']} ({doc['date']})", str(doc["date"])
    )


def catalog_source() -> str:
    """Where the bundled prices and specs come from, in one line."""
    return _catalog().source


def all_types() -> list[InstanceType]:
    """Every catalog entry, retired ones included (flagged), in the data file's order."""
    return list(_catalog().types.values())


def _retired_families() -> dict[str, InstanceType]:
    """Family prefix -> one representative retired entry (for refusing sizes we do not list too)."""
    out: dict[str, InstanceType] = {}
    for t in _catalog().types.values():
        if t.retired:
            out.setdefault(t.family, t)
    return out


def _why_retired(t: InstanceType) -> str:
    """Why a retired type's GPU cannot be used, in a clause ("its V100 GPU ...")."""
    gpu = (t.gpu_model or "GPU").removeprefix("NVIDIA ")
    cc = t.gpu_compute_capability or "?"
    if _cc_tuple(cc) < _cc_tuple(MIN_COMPUTE_CAPABILITY):
        return f"its {gpu} GPU is compute capability {cc}, which current CUDA and CuPy cannot run"
    arch = _DRIVER_RETIRED_ARCHITECTURES.get(_cc_tuple(cc)[0], "pre-Turing")
    return (
        f"its {gpu} GPU ({arch}, compute capability {cc}) is not supported by NVIDIA drivers after R580 "
        "(the last branch for Maxwell, Pascal and Volta), and current Deep Learning AMIs ship newer ones"
    )


def _refusal(name: str, t: InstanceType) -> ConfigError:
    suggestion = t.suggestion or DEFAULT_SUGGESTION
    modern = _catalog().types.get(suggestion)
    modern_gpu = f" ({modern.gpu_model})" if modern and modern.gpu_model else ""
    why = _why_retired(t)
    return ConfigError(
        f"{name} is a retired previous-generation family: {why}; use {suggestion}{modern_gpu} instead"
    )


def lookup(instance_type: str) -> InstanceType:
    """The catalog entry for `instance_type` (case and surrounding spaces ignored).

    Raises ConfigError, one line each: for a retired family (g2, p2, g3, g3s, p3, p3dn: GPU below
    compute capability 7.5), checked before anything else and for any size of that family, with the
    reason and a modern type to use; for a type not in the catalog, with the closest known name when
    there is one.
    """
    name = str(instance_type).strip().lower()
    cat = _catalog()
    entry = cat.types.get(name)
    if entry is not None and entry.retired:
        raise _refusal(name, entry)
    if entry is None:
        # Sizes we do not list of a retired family (g2.4xlarge) get the retirement reason, not "unknown".
        retired = _retired_families().get(name.split(".", 1)[0]) if "." in name else None
        if retired is not None:
            raise _refusal(name, retired)
        usable = [n for n, t in cat.types.items() if not t.retired]
        close = difflib.get_close_matches(name, usable, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]}? " if close else "it is not in ec2dbn's catalog; "
        raise ConfigError(f"unknown instance type {instance_type!r}: {hint}see `ec2dbn catalog`")
    return entry


@cache
def known_regions() -> tuple[str, ...]:
    """Every region of every AWS partition that has EC2, from botocore's bundled endpoint data (offline).

    Opt-in regions (af-south-1, me-central-1, ...) are listed: whether the account enabled one is AWS's
    answer to give. A region newer than the installed botocore is missing until botocore is upgraded.
    """
    import botocore.session

    session = botocore.session.get_session()
    return tuple(
        sorted(
            {
                region
                for partition in session.get_available_partitions()
                for region in session.get_available_regions("ec2", partition_name=partition)
            }
        )
    )


def check_name(instance_type: str) -> str:
    """The normalised type name if it may be asked of EC2, before any AWS call.

    A well-formed name the catalog does not list passes: the plan phase asks EC2 what it is. Raises
    ConfigError for a malformed name and for a retired family (any size), like `lookup`.
    """
    name = str(instance_type).strip().lower()
    if not _TYPE_RE.fullmatch(name):
        raise ConfigError(f"{instance_type!r} is not an instance type name (family.size, e.g. g4dn.xlarge)")
    entry = _catalog().types.get(name) or _retired_families().get(name.split(".", 1)[0])
    if entry is not None and entry.retired:
        raise _refusal(name, entry)
    return name


def closest(instance_type: str) -> str | None:
    """The usable catalog type whose name is closest to `instance_type` (a typo's likely meaning)."""
    usable = [n for n, t in _catalog().types.items() if not t.retired]
    found = difflib.get_close_matches(str(instance_type).strip().lower(), usable, n=1, cutoff=0.6)
    return found[0] if found else None


def describe(
    name: str,
    *,
    vcpus: int,
    memory_gib: float,
    gpu_model: str | None = None,
    gpu_manufacturer: str | None = None,
    gpu_count: int = 0,
    gpu_memory_gib: float = 0.0,
) -> InstanceType:
    """What `name` is: its catalog entry when the catalog lists it, else an entry built from what EC2
    describes (DescribeInstanceTypes: vCPUs, memory in GiB, GPU name and manufacturer, GPU memory per GPU
    in GiB). The compute capability of an NVIDIA GPU comes from NVIDIA_COMPUTE_CAPABILITY, and the
    catalog's retirement rule applies to it: ConfigError (with a type to use instead) below 7.5."""
    name = check_name(name)
    entry = _catalog().types.get(name)
    if entry is not None:
        return entry
    manufacturer = (gpu_manufacturer or "").strip()
    model = f"{manufacturer} {gpu_model}".strip() if gpu_model else None
    cc = NVIDIA_COMPUTE_CAPABILITY.get(gpu_model or "") if manufacturer.upper() == "NVIDIA" else None
    described = InstanceType(
        name=name,
        family=name.split(".", 1)[0],
        gpu_model=model if gpu_count else None,
        gpu_count=int(gpu_count) if gpu_model else 0,
        gpu_memory_gib=float(gpu_memory_gib) if gpu_model else 0.0,
        gpu_compute_capability=cc,
        vcpus=int(vcpus),
        memory_gib=float(memory_gib),
        previous_generation=_is_retired(cc),
        note="described by EC2 (not in ec2dbn's catalog)",
        retired=_is_retired(cc),
        suggestion=DEFAULT_SUGGESTION if _is_retired(cc) else None,
    )
    if described.retired:
        raise _refusal(name, described)
    return described


def listed(instance_type: str) -> InstanceType | None:
    """The catalog's usable entry for `instance_type`; None when the catalog does not list it (EC2 is
    asked at plan). Raises ConfigError for a malformed name or a retired family, like `check_name`."""
    return _catalog().types.get(check_name(instance_type))


def bundled_price(instance_type: str, region: str) -> Price | None:
    """The bundled on-demand price of a catalog type in `region` (see `list_price`); None for a type the
    catalog does not list: the price is unknown, not guessed."""
    entry = _catalog().types.get(str(instance_type).strip().lower())
    return list_price(entry, region) if entry is not None else None


def check_region(region: str) -> str:
    """`region` if botocore knows it as an EC2 region (see `known_regions`), else a one-line ConfigError."""
    known = known_regions()
    if region in known:
        return region
    cleaned = str(region).strip().lower()
    if cleaned in known:  # a stray space, newline or capital
        raise ConfigError(f"{region!r} is not an AWS region; did you mean {cleaned}?")
    close = closest_region(cleaned, known)
    if close:
        raise ConfigError(f"{region!r} is not an AWS region; did you mean {close}?")
    raise ConfigError(f"{region!r} is not an AWS region; known: {', '.join(known)}")


def closest_region(text: str, known: list[str]) -> str | None:
    """The region `text` is a typo of ('a or b' when two are as close), or None. difflib finds the similar
    names; among them the fewest edits win, a swap of two neighbours counting as one (us-esat-1 is
    us-east-1, not us-west-1)."""
    similar = sorted(difflib.get_close_matches(text, known, n=6, cutoff=0.7))
    edits = {name: _edits(text, name) for name in similar}
    best = min(edits.values(), default=3)
    if best > 2:
        return None
    return " or ".join([name for name in similar if edits[name] == best][:2])


def _edits(a: str, b: str) -> int:
    """Optimal-string-alignment distance: insertions, deletions, substitutions, adjacent swaps."""
    d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[len(a)][len(b)]


def list_price(entry: InstanceType, region: str) -> Price:
    """The bundled on-demand price of a catalog entry, retired ones included (for display).

    Regions without their own figure get the us-east-1 price, and `source` says that it may differ.
    """
    region = check_region(region)
    cat = _catalog()
    by_region = cat.prices[entry.name]
    if region in by_region:
        return Price(
            usd_per_hour=by_region[region],
            source=f"bundled catalog ({region} list price, {cat.date})",
            date=cat.date,
            region=region,
        )
    return Price(
        usd_per_hour=by_region[BASE_REGION],
        source=f"bundled catalog ({BASE_REGION} list price, {cat.date}); region {region} may differ",
        date=cat.date,
        region=region,
    )


def on_demand_price(instance_type: str, region: str) -> Price:
    """Linux on-demand USD/hour for `instance_type` in `region`, from the bundled catalog.

    Validates the type like `lookup` (retired and unknown types raise ConfigError) and the region name.
    """
    return list_price(lookup(instance_type), region)
