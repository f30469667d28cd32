"""The annotation queue's leases: one holder per run until the lease ends or the run is labelled (a clock the test moves)."""

from __future__ import annotations

from agentgym.gateway.annotations import Leases


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_two_reviewers_never_hold_the_same_run() -> None:
    leases = Leases(Clock())
    assert leases.claim("acme", ["t1", "t2", "t3"], "alice", 600) == ("t1", 600.0)
    assert leases.claim("acme", ["t1", "t2", "t3"], "bob", 600) == ("t2", 600.0)
    assert leases.claim("acme", ["t1", "t2", "t3"], "alice", 600) == ("t3", 600.0)  # a second run for the same reviewer
    assert leases.claim("acme", ["t1", "t2", "t3"], "carol", 600) is None
    assert leases.holder("acme", "t2") == ("bob", 600.0) and leases.holder("acme", "t9") is None
    assert leases.claim("globex", ["t1"], "dave", 600) == ("t1", 600.0)  # leases are per tenant
    assert leases.open_leases() == 4


def test_a_lease_ends_after_its_time_and_the_run_goes_back_to_the_queue() -> None:
    clock = Clock()
    leases = Leases(clock)
    assert leases.claim("acme", ["t1", "t2"], "alice", 60) == ("t1", 60.0)
    clock.now += 59
    assert leases.holder("acme", "t1") == ("alice", 1.0)
    assert leases.claim("acme", ["t1"], "bob", 60) is None
    clock.now += 1
    assert leases.holder("acme", "t1") is None and leases.open_leases() == 0
    assert leases.claim("acme", ["t1", "t2"], "bob", 60) == ("t1", 60.0)


def test_a_labelled_run_leaves_the_queue_until_the_store_shows_its_label() -> None:
    clock = Clock()
    leases = Leases(clock)
    assert leases.claim("acme", ["t1", "t2"], "alice", 600) == ("t1", 600.0)
    leases.labelled("acme", "t1", hold_s=120)
    assert leases.holder("acme", "t1") is None  # the lease ended with the label
    assert leases.claim("acme", ["t1", "t2"], "bob", 600) == ("t2", 600.0)  # t1 is not offered again
    clock.now += 120
    assert leases.claim("acme", ["t1"], "bob", 600) == ("t1", 600.0)  # by then the store's query no longer answers it
