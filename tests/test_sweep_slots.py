"""Slots, the budget and per-instance SSH endpoints: the sweep's bookkeeping, without a cloud."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from ec2dbn.errors import ConfigError, RemoteError
from ec2dbn.spec import cost
from ec2dbn.stack import connect, state
from ec2dbn.sweep.budget import Budget, instance_floor_usd, point_estimate_usd
from ec2dbn.sweep.slots import NoSlotError, Slot, SlotPool
from trainer.config import parse_job


def slots(iid: str, n: int = 1, group: int = 0) -> list[Slot]:
    return [Slot(f"{iid}/{k}", group, iid, k) for k in range(n)]


def test_a_pool_hands_out_free_slots_and_takes_them_back() -> None:
    pool = SlotPool()
    pool.coming(0, "i-1")
    pool.coming(0, "i-2")
    assert pool.take(0, timeout_s=0) is None  # instances on their way: wait, not an error
    pool.add("i-1", slots("i-1", 2))
    a, b = pool.take(0, timeout_s=0), pool.take(0, timeout_s=0)
    assert {a.name, b.name} == {"i-1/0", "i-1/1"}
    assert pool.state_of(0) == {"i-1": "busy", "i-2": "coming"}
    assert pool.take(0, timeout_s=0) is None
    pool.give_back(a)
    assert pool.state_of(0)["i-1"] == "ready"
    assert pool.take(0, timeout_s=0) == a


def test_a_lost_instance_takes_its_slots_and_a_waiting_point_goes_first() -> None:
    pool = SlotPool()
    pool.govern(0, lambda: "max_recoveries (0) spent")
    pool.coming(0, "i-1")
    pool.coming(0, "i-2")
    pool.add("i-1", slots("i-1"))
    pool.add("i-2", slots("i-2"))
    mine = pool.take(0, timeout_s=0)
    assert pool.gone(mine.instance_id) is False  # no replacement: the policy refuses
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


class Recoveries:
    """A group's replacement policy with a budget of `left` replacements, counting what it granted."""

    def __init__(self, left: int) -> None:
        self.left, self.granted = left, 0

    def __call__(self) -> str | None:
        if self.left == 0:
            return "max_recoveries spent"
        self.left -= 1
        self.granted += 1
        return None


def test_losing_the_only_instance_asks_its_replacement_in_the_same_step() -> None:
    """Issue 28: a fleet of one lost while a point waits. The waiter never sees the group empty: the
    instance is gone and its replacement asked for under one lock; NoSlotError only once the recovery
    budget is spent and nothing is coming, ready or busy."""
    pool, policy = SlotPool(), Recoveries(2)
    pool.govern(0, policy)
    pool.coming(0, "i-1")
    pool.add("i-1", slots("i-1"))
    mine = pool.take(0, timeout_s=0)
    assert pool.gone("i-1") is True and policy.granted == 1  # the caller launches one replacement
    assert pool.take(0, first=True, timeout_s=0) is None  # waits: a replacement is coming
    assert pool.gone("i-1") is False and policy.granted == 1  # gone once; asked once
    pool.give_back(mine)
    assert pool.take(0, timeout_s=0) is None
    assert pool.answered(0, ["i-2"]) is False  # EC2 gave one: it is coming
    assert pool.state_of(0) == {"i-1": "gone", "i-2": "coming"}
    assert pool.gone("i-2") is True  # lost while it bootstraps: the second replacement is asked
    assert pool.answered(0, []) is False  # EC2 gave none, and the budget is spent
    with pytest.raises(NoSlotError, match=r"every instance of this hardware is gone.*max_recoveries"):
        pool.take(0, first=True, timeout_s=0)


def test_an_empty_replacement_answer_is_asked_again_while_the_budget_allows() -> None:
    pool, policy = SlotPool(), Recoveries(2)
    pool.govern(0, policy)
    pool.coming(0, "i-1")
    assert pool.gone("i-1") is True  # gone before it was ever ready
    assert pool.answered(0, []) is True  # none launched: asked again, the same step
    assert not pool.exhausted(0)
    assert pool.answered(0, ["i-2"]) is False
    pool.add("i-2", slots("i-2"))
    assert pool.take(0, first=True, timeout_s=0) == slots("i-2")[0]
    assert policy.granted == 2


def test_a_waiter_never_sees_the_group_empty_while_instances_are_lost_and_replaced() -> None:
    """Many losses from many threads, each replaced (the policy allows all): a waiting point is served
    by the last replacement and is never told that the hardware is gone."""
    pool, policy = SlotPool(), Recoveries(40)
    pool.govern(0, policy)
    for k in range(4):
        pool.coming(0, f"i-{k}")
    errors: list[BaseException] = []
    got: list[Slot | None] = []

    def waiter() -> None:
        try:
            got.append(pool.take(0, first=True, timeout_s=30))
        except BaseException as exc:
            errors.append(exc)

    def churn(start: int) -> None:
        iid = f"i-{start}"
        for k in range(10):
            if pool.gone(iid):
                iid = f"i-{start}-{k}"
                pool.answered(0, [iid])

    w = threading.Thread(target=waiter)
    w.start()
    workers = [threading.Thread(target=churn, args=(k,)) for k in range(4)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(30)
    assert not errors and not got  # still waiting, never NoSlotError
    live = [iid for iid, s in pool.state_of(0).items() if s == "coming"]
    assert len(live) == 4 and policy.granted == 40
    pool.add(live[0], slots(live[0]))
    w.join(10)
    assert not errors and got == slots(live[0])[:1]


def test_nothing_left_of_a_group_or_a_closed_pool_is_no_slot() -> None:
    pool = SlotPool()
    pool.coming(0, "i-1")
    pool.give_up(0, "EC2 gave the fleet nothing")
    assert pool.take(0, timeout_s=0) is None  # given up, but i-1 is still coming
    assert pool.gone("i-1") is False  # no policy: no replacement
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


def test_the_endpoint_wait_ends_when_ec2_says_the_instance_is_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 28: a lost instance's line never comes to $EC2DBN_SSH_ENDPOINTS; the wait asks EC2 (here
    `still_there`, which the callers answer from describe_instances) and stops at its first 'gone'."""
    monkeypatch.setenv(state.SSH_ENDPOINTS_ENV, str(tmp_path / "endpoints"))
    st = state.StackState(
        name="t", region="us-east-1", instance_id="i-9", host_public_key="ssh-ed25519 AAAA", key_path="k"
    )
    answers = [True, False]
    asked: list[bool] = []

    def still_there() -> bool:
        asked.append(answers[len(asked)])
        return asked[-1]

    monkeypatch.setattr(connect, "STATE_POLL_S", 0.0)
    with pytest.raises(RemoteError, match="i-9 is gone"):
        connect.remote_for(st, wait_s=3600, still_there=still_there)  # an hour: only EC2 can end it
    assert asked == [True, False]
