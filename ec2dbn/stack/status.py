"""`ec2dbn status`: every stack as AWS reports it (found by tags), joined with local state and priced.

AWS is the source of truth: a stack whose local state is gone still shows, and local state whose
resources are gone says so. When AWS cannot be asked (no credentials, no network), the local state is shown
as it was last recorded, each row marked as not confirmed.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from ec2dbn import aws
from ec2dbn.aws import InstanceRecord, Inventory
from ec2dbn.aws.tags import DEADLINE_TAG, STACK_TAG, SWEEP_TAG, as_dict
from ec2dbn.spec import cost
from ec2dbn.spec.catalog import Price
from ec2dbn.stack import lifecycle, state


@dataclass
class StackStatus:
    """What `status` shows of one stack: its instance (read as the one InstanceRecord) reconciled with local
    state, priced, with what else is tagged for it. A view, not a record: prices USD/h, times UTC ISO."""

    name: str
    region: str
    state: str
    instance_id: str | None = None
    instance_type: str | None = None
    market: str | None = None
    availability_zone: str | None = None
    public_ip: str | None = None
    public_dns: str | None = None
    launched_at: str | None = None
    deadline: str | None = None
    seconds_left: int | None = None
    price: Price | None = None
    cost_so_far_usd: float | None = None
    security_groups: list[str] = field(default_factory=list)
    key_pairs: list[str] = field(default_factory=list)
    local_state: bool = False
    note: str = ""

    def as_json(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        if self.price is not None:
            d["price"] = {
                "usd_per_hour": self.price.usd_per_hour,
                "source": self.price.source,
                "date": self.price.date,
                "market": self.price.market,
            }
        return d


def _status_for(region: str, name: str, inv: Inventory, local: state.StackState | None) -> list[StackStatus]:
    def mine(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [i for i in items if as_dict(i.get("Tags")).get(STACK_TAG) == name]

    sgs = [g["GroupId"] for g in mine(inv.security_groups)]
    kps = [k["KeyName"] for k in mine(inv.key_pairs)]
    rows: list[StackStatus] = []
    now = state.utc_now()
    for desc in mine(inv.instances):
        inst = InstanceRecord.from_ec2(desc)  # the one reading of EC2's description
        iid, tags, launched = inst.instance_id, dict(inst.tags), inst.launched_at
        price, _ = aws.instance_prices(region, inst.instance_type, inst.market, inst.availability_zone, None)
        deadline = tags.get(DEADLINE_TAG) or (local.deadline if local and local.instance_id == iid else None)
        left = None
        if deadline:
            with contextlib.suppress(ValueError):
                left = max(0, int((state.parse_iso(deadline) - now).total_seconds()))
        so_far = None
        if launched is not None and price is not None:
            segment = cost.InstanceSegment(iid, inst.instance_type, inst.market, price.usd_per_hour, launched)
            so_far = round(cost.actual_cost([segment], now=now).total_usd, 6)
        rows.append(
            StackStatus(
                name=name,
                region=region,
                state=inst.state,
                instance_id=iid,
                instance_type=inst.instance_type,
                market=inst.market,
                availability_zone=inst.availability_zone,
                public_ip=inst.public_ip,
                public_dns=inst.public_dns,
                launched_at=state.iso(launched) if launched else None,
                deadline=deadline,
                seconds_left=left,
                price=price,
                cost_so_far_usd=so_far,
                security_groups=sgs,
                key_pairs=kps,
                local_state=local is not None,
                note=f"sweep {tags[SWEEP_TAG]}" if SWEEP_TAG in tags else "",
            )
        )
    if not rows:
        note = "local state only: nothing tagged remains in AWS" if local and not (sgs or kps) else ""
        if sgs or kps:
            note = "no instance; leftover resources (run teardown)"
        rows.append(
            StackStatus(
                name=name,
                region=region,
                state="none",
                security_groups=sgs,
                key_pairs=kps,
                local_state=local is not None,
                note=note,
            )
        )
    elif local is not None and local.instance_id and local.instance_id not in {r.instance_id for r in rows}:
        rows[0].note = f"local state named {local.instance_id}, which is gone"
    return rows


def from_local(region: str, name: str | None, why: str) -> list[StackStatus]:
    """The stacks the state dir knows in `region` (or just `name`), as last recorded there, each marked as
    not confirmed (`why`: what stopped AWS from answering). What `status` shows offline or without
    credentials: the user still learns what may be running and costing money."""
    names = [name] if name is not None else state.names()
    rows = []
    for n in names:
        local = lifecycle.local_state(n)
        if local is None or local.region != region:
            continue
        rows.append(
            StackStatus(
                name=n,
                region=region,
                state=f"{local.instance_state or 'launched'}?",
                instance_id=local.instance_id,
                instance_type=local.instance_type,
                market=local.market,
                availability_zone=local.availability_zone,
                public_ip=local.public_ip,
                public_dns=local.public_dns,
                launched_at=local.launched_at,
                deadline=local.deadline,
                price=local.price,
                local_state=True,
                note=f"not confirmed with AWS ({why}): local state only",
            )
        )
    return rows


def query(region: str, name: str | None = None) -> list[StackStatus]:
    """Every ec2dbn stack in `region` (or just `name`), from tags, joined with local state."""
    inv = aws.inventory(region, name)
    names = set(inv.stacks())
    if name is not None:
        names.add(name)
    else:
        names.update(n for n in state.names() if lifecycle.local_region(n) == region)
    out: list[StackStatus] = []
    for n in sorted(names):
        out.extend(_status_for(region, n, inv, lifecycle.local_state(n)))
    if name is None:
        out = [r for r in out if r.state != "none" or r.local_state or r.security_groups or r.key_pairs]
    return out
