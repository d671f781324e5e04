"""Instance types: what EC2 says each one is (DescribeInstanceTypes) and where it is offered.

Asked in the plan phase, before anything is created: a type EC2 does not know is refused there with the
closest catalog name; a type not offered in the region is refused naming the major regions that do offer
it (asked in parallel, bounded: it is a hint, not a search).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from ec2dbn.aws.errors import aws_errors, error_code, translate
from ec2dbn.aws.session import Aws
from ec2dbn.errors import ConfigError
from ec2dbn.spec import catalog


def offered_zones(aws: Aws, instance_types: Sequence[str]) -> dict[str, list[str]]:
    """instance type -> sorted availability zones of the region that offer it (absent when none)."""
    out: dict[str, list[str]] = {}
    with aws_errors(aws.region, "listing instance type offerings"):
        pages = aws.ec2.get_paginator("describe_instance_type_offerings").paginate(
            LocationType="availability-zone",
            Filters=[{"Name": "instance-type", "Values": list(instance_types)}],
        )
        for page in pages:
            for o in page["InstanceTypeOfferings"]:
                out.setdefault(o["InstanceType"], []).append(o["Location"])
    return {t: sorted(z) for t, z in out.items()}


#: Regions checked (in parallel) to say where a type IS offered when the chosen region lacks it: the
#: default-enabled regions where EC2 GPU capacity is usually found. Bounded so the error stays quick.
MAJOR_REGIONS = (
    "us-east-1",
    "us-east-2",
    "us-west-2",
    "ca-central-1",
    "eu-west-1",
    "eu-central-1",
    "ap-northeast-1",
    "ap-southeast-2",
)


def offered_regions(aws: Aws, instance_type: str, limit_s: float = 20.0) -> list[str]:
    """Major regions (MAJOR_REGIONS) that offer `instance_type`; best effort, for error messages."""
    regions = list(MAJOR_REGIONS)

    def offers(region: str) -> str | None:
        try:
            resp = Aws(region).ec2.describe_instance_type_offerings(
                LocationType="region", Filters=[{"Name": "instance-type", "Values": [instance_type]}]
            )
        except Exception:
            return None
        return region if resp["InstanceTypeOfferings"] else None

    deadline = time.monotonic() + limit_s
    pool = ThreadPoolExecutor(max_workers=len(regions))
    try:
        futures = [pool.submit(offers, r) for r in regions if r != aws.region]
        found = []
        for f in futures:
            try:
                r = f.result(timeout=max(0.1, deadline - time.monotonic()))
            except Exception:  # slow or failing region: leave it out of a best-effort hint
                r = None
            if r:
                found.append(r)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return sorted(found)


@dataclass(frozen=True)
class TypeFacts:
    """An instance type as DescribeInstanceTypes describes it. Memory in GiB (GPU memory per GPU)."""

    name: str
    vcpus: int
    memory_gib: float
    architectures: tuple[str, ...]
    gpu_model: str | None = None
    gpu_manufacturer: str | None = None
    gpu_count: int = 0
    gpu_memory_gib: float = 0.0

    @classmethod
    def from_ec2(cls, desc: Mapping[str, Any]) -> TypeFacts:
        gpus = (desc.get("GpuInfo") or {}).get("Gpus") or []
        gpu = gpus[0] if gpus else {}
        count = sum(max(int(g.get("Count", 0)), int(g.get("LogicalGpuCount", 0))) for g in gpus)
        return cls(
            name=str(desc["InstanceType"]),
            vcpus=int(desc["VCpuInfo"]["DefaultVCpus"]),
            memory_gib=round(int(desc["MemoryInfo"]["SizeInMiB"]) / 1024, 2),
            architectures=tuple(desc.get("ProcessorInfo", {}).get("SupportedArchitectures", ["x86_64"])),
            gpu_model=gpu.get("Name"),
            gpu_manufacturer=gpu.get("Manufacturer"),
            gpu_count=count,
            gpu_memory_gib=round(int(gpu.get("MemoryInfo", {}).get("SizeInMiB", 0)) / 1024, 2),
        )

    def instance_type(self) -> catalog.InstanceType:
        """The catalog's entry, or one built from these facts (ConfigError for a retired GPU)."""
        return catalog.describe(
            self.name,
            vcpus=self.vcpus,
            memory_gib=self.memory_gib,
            gpu_model=self.gpu_model,
            gpu_manufacturer=self.gpu_manufacturer,
            gpu_count=self.gpu_count,
            gpu_memory_gib=self.gpu_memory_gib,
        )


def describe_types(aws: Aws, instance_types: Sequence[str]) -> dict[str, TypeFacts]:
    """What EC2 says each type is. ConfigError naming the types EC2 does not know (with the closest
    catalog name: a typo), before anything else is asked about them."""
    try:
        resp = aws.ec2.describe_instance_types(InstanceTypes=list(instance_types))
    except ClientError as exc:
        if error_code(exc) == "InvalidInstanceType":
            unknown = [t for t in instance_types if t in str(exc.response.get("Error", {}).get("Message"))]
            hints = [f"did you mean {c}?" for c in map(catalog.closest, unknown or instance_types) if c]
            raise ConfigError(
                f"unknown instance type {', '.join(unknown or instance_types)}: EC2 does not know it in "
                f"{aws.region}{'; ' + ' '.join(hints) if hints else ''} (see `ec2dbn catalog`)"
            ) from None
        raise translate(exc, region=aws.region, action="describing instance types") from exc
    except Exception as exc:
        raise translate(exc, region=aws.region, action="describing instance types") from exc
    return {t["InstanceType"]: TypeFacts.from_ec2(t) for t in resp["InstanceTypes"]}


def check_offered(aws: Aws, instance_types: Sequence[str]) -> dict[str, list[str]]:
    """Zones offering each type; ConfigError naming where it IS offered when the region offers none."""
    zones = offered_zones(aws, instance_types)
    if not any(zones.get(t) for t in instance_types):
        first = instance_types[0]
        elsewhere = offered_regions(aws, first)
        where = f"; it is offered in {', '.join(elsewhere)}" if elsewhere else ""
        types = ", ".join(instance_types)
        raise ConfigError(
            f"{types} {'is' if len(instance_types) == 1 else 'are'} not offered in {aws.region}{where}"
        )
    return zones
