"""Slots, the budget and per-instance SSH endpoints: the sweep's bookkeeping, without a cloud."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from ec2dbn import cost, state
from ec2dbn.errors import ConfigError
from ec2dbn.sweep.budget import Budget, instance_floor_usd, point_estimate_usd
from ec2dbn.sweep.slots import NoSlotError, Slot, SlotPool
from trainer.config import parse_job


def slots(iid: str, n: int = 1, group: int = 0) -> list[Slot]:
    return [Slot(f"{iid}/{k}", group, iid, k) for k in range(n)]


def test_a_pool_hands_out_free_slots_and_takes_them_back() -> None:
    pool = SlotPool()
    pool.expect(0, 2)
    assert pool.take(0, timeout_s=0) is None  # instances on their way: wait, not an error
    pool.add("i-1", slots("i-1", 2))
    a, b = pool.take(0, timeout_s=0), pool.take(0, timeout_s=0)
    assert {a.name, b.name} == {"i-1/0", "i-1/1"}
    assert pool.take(0, timeout_s=0) is None
    pool.give_back(a)
    assert pool.take(0, timeout_s=0) == a


def test_a_lost_instance_takes_its_slots_and_a_waiting_point_goes_first() -> None:
    pool = SlotPool()
    pool.expect(0, 2)
    pool.add("i-1", slots("i-1"))
    pool.add("i-2", slots("i-2"))
    mine = pool.take(0, timeout_s=0)
    pool.lost(mine.instance_id)
    pool.give_back(mine)  # a dead instance's slot never comes back
    other = pool.take(0, timeout_s=0)
    assert other.instance_id != mine.instance_id
    got: list[Slot | None] = []
    waiter = threading.Thread(target=lambda: got.append(pool.take(0, first=True, timeout_s=10)))
    waiter.start()
    while pool._waiting_first == 0:
        threading.Event().wait(0.01)
    assert pool.take(0, timeout_s=0) is None  # a point not started yet waits behind the lost one
    pool.give_back(other)
    waiter.join(10)
    assert got == [other]


def test_nothing_left_of_a_group_or_a_closed_pool_is_no_slot() -> None:
    pool = SlotPool()
    pool.expect(0)
    pool.failed(0)
    with pytest.raises(NoSlotError, match="every instance of this hardware is gone"):
        pool.take(0, timeout_s=0)
    pool.add(None, [Slot("worker 1")], 1)
    taken = pool.take(1, timeout_s=0)
    assert pool.take(1, timeout_s=0) is None  # local slots never run out, they are only busy
    pool.close("Ctrl-C")
    with pytest.raises(NoSlotError, match="stopping"):
        pool.take(1, timeout_s=0)
    assert taken is not None


def test_the_budget_admits_points_by_estimate_and_instances_by_their_minute() -> None:
    job = parse_job({"data": {"name": "digits"}, "model": {"layers": [64, 10], "epochs": 10}})
    price = 0.526
    est = point_estimate_usd(job, "g4dn.xlarge", price, 1)
    assert est == pytest.approx(10 * cost.GUESS_S_PER_EPOCH_BY_GPU["NVIDIA T4"] * price / 3600)
    assert point_estimate_usd(job, "g4dn.12xlarge", price, 4) == pytest.approx(
        10 * cost.GUESS_S_PER_EPOCH_BY_GPU["NVIDIA T4"] * price / 3600 / 4
    )
    floor = instance_floor_usd(price)
    budget = Budget(max_cost_usd=2 * floor + 2.5 * est)
    budget.add_instance(price)
    budget.add_instance(price)
    assert budget.admit_point(0.0, est) and budget.admit_point(0.0, est)
    assert not budget.admit_point(0.0, est)  # the third does not fit, however fast the first two ran
    assert budget.committed(10.0) == 10.0  # the actual spend counts once it is above the estimates
    assert not budget.instance_fits(0.0, price)
    assert not budget.exhausted(budget.max_cost_usd - 1e-9) and budget.exhausted(budget.max_cost_usd)
    assert Budget(None).admit_point(1e9, 1e9) and not Budget(None).exhausted(1e9)


def test_per_instance_endpoints_come_from_the_file_when_it_lists_the_instance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = tmp_path / "endpoints"
    monkeypatch.setenv(state.SSH_ENDPOINT_ENV, "127.0.0.1:2222")
    monkeypatch.setenv(state.SSH_ENDPOINTS_ENV, str(table))
    st = state.StackState(name="t", region="us-east-1", instance_id="i-2", public_ip="198.51.100.1")
    with pytest.raises(state.EndpointPending, match="i-2 has no line"):
        st.ssh_endpoint()  # no file yet: the instance's tunnel is not up
    table.write_text("# instance  address\ni-1 127.0.0.1:2201\ni-2 [::1]:2202   # the second\n")
    assert st.ssh_endpoint() == ("::1", 2202)
    table.write_text("i-2 127.0.0.1:notaport\n")
    with pytest.raises(ConfigError, match=r"endpoints:1.*not host:port"):
        st.ssh_endpoint()
    table.write_text("i-2\n")
    with pytest.raises(ConfigError, match="expected `INSTANCE_ID HOST:PORT`"):
        st.ssh_endpoint()
    monkeypatch.delenv(state.SSH_ENDPOINTS_ENV)
    assert st.ssh_endpoint() == ("127.0.0.1", 2222)  # one address for every instance, as before
