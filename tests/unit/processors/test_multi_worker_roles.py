"""Roles of several workers on one host: distinct sink identities, and a dataset builder that
never takes the embedded store from the workers' sinks (the chaos suite runs them for real:
``tests/chaos/test_multi_worker.py``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agentgym.processors import membership
from agentgym.processors.datasets.processor import open_shared_reader
from agentgym.processors.settings import ProcessorSettings
from agentgym.processors.sink import sink_instance_id
from agentgym.processors.store import StoreError
from agentgym.processors.store.chdb_store import directory_owner, open_paths


def _settings(home: Path, port: int) -> ProcessorSettings:
    return ProcessorSettings(home=home, bootstrap_servers="127.0.0.1:1", app_id="app", faust_web_port=port)  # type: ignore[arg-type]


def test_workers_with_their_own_homes_get_distinct_sink_identities(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # two workers on one host, each with its own AGENTGYM_HOME: both claim slot 0 of their home
    # (a slot is per home); the sink's static group instance id must still differ, else the
    # broker fences one of the two sinks out of the group
    ids, slots = [], []
    for name, port in (("a", 6101), ("b", 6102)):
        monkeypatch.setattr(membership, "_claimed", {})  # a fresh process
        s = _settings(tmp_path / name, port)
        slots.append(membership.claim_instance_id(s.app_id, s.home))
        ids.append(sink_instance_id(s))
    assert slots[0] == slots[1]  # the collision the slot alone had
    assert ids[0] != ids[1] and all(i.endswith("-6101-sink") or i.endswith("-6102-sink") for i in ids)


def test_a_worker_keeps_its_sink_identity_across_a_restart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(membership, "_claimed", {})
    first = sink_instance_id(_settings(tmp_path, 6101))
    os.close(membership._claimed["app"][0])  # the process died: the kernel frees its slot lock
    monkeypatch.setattr(membership, "_claimed", {})  # the restarted process takes the freed slot again
    assert sink_instance_id(_settings(tmp_path, 6101)) == first


def test_the_builder_reads_only_through_an_owner_and_never_takes_a_free_store(tmp_path: Path) -> None:
    path = tmp_path / "clickhouse"
    # the directory of a store whose owner has stopped: its engine lock is free (plain open_reader
    # would now start the engine in this process and hold the directory)
    path.mkdir()
    (path / "status").write_text("PID: 999999\n")
    assert directory_owner(path) is None
    with pytest.raises(StoreError, match="no worker owns the embedded ClickHouse"):
        open_shared_reader(f"chdb://{path}")
    assert str(path.resolve()) not in open_paths()  # left free for the next sink to take
    assert directory_owner(path) is None
