"""The deletion set every reader holds: what it skips, in Python and in SQL (run on the embedded engine)."""

from __future__ import annotations

import pytest

from agentgym.processors.deletions import DeletionSet, deletion_request, merge_into, subject_of


def _set() -> DeletionSet:
    s = DeletionSet()
    s.add({**deletion_request("acme", "alice", "cli:test", now_ms=1000), "trace_ids": ["t-a1"]})
    return s


@pytest.mark.parametrize(("name", "record", "skipped"), [
    ("Experience", {"tenant_id": "acme", "trace_id": "t9", "user_id": "alice", "timestamp_ms": 999}, True),
    ("Experience", {"tenant_id": "acme", "trace_id": "t9", "user_id": "alice", "timestamp_ms": 1000}, True),
    ("Experience", {"tenant_id": "acme", "trace_id": "t9", "user_id": "alice", "timestamp_ms": 1001}, False),  # after: new data
    ("Experience", {"tenant_id": "other", "trace_id": "t9", "user_id": "alice", "timestamp_ms": 5}, False),  # another tenant's alice
    ("Experience", {"tenant_id": "acme", "trace_id": "t9", "user_id": "bob", "timestamp_ms": 5}, False),
    ("Feedback", {"tenant_id": "acme", "trace_id": "t-a1", "user_id": None, "timestamp_ms": 9999}, True),  # an annotation on her trace
    ("Outcome", {"tenant_id": "acme", "trace_id": "t-a1", "timestamp_ms": 9999}, True),
    ("Outcome", {"tenant_id": "other", "trace_id": "t-a1", "timestamp_ms": 9999}, False),
    ("DeadLetter", {"tenant_id": "acme", "trace_id": "t-a1"}, False),
])
def test_what_a_reader_skips(name: str, record: dict, skipped: bool) -> None:
    assert _set().skips(name, record) is skipped


def test_the_sql_condition_keeps_what_python_keeps(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from agentgym.processors.store import open_store

    s = _set()
    rows = [("acme", "t9", "alice", 999), ("acme", "t9", "alice", 1001), ("other", "t9", "alice", 5), ("acme", "t-a1", None, 9999),
            ("acme", "t2", "bob", 5), ("acme", "t3", None, 5)]
    cond, params = s.sql_keep("Experience")  # type: ignore[misc]
    values = ", ".join(f"('{t}', '{tr}', {'NULL' if u is None else repr(u)}, {ts})" for t, tr, u, ts in rows)
    with open_store(f"chdb://{tmp_path / 'ch'}") as store:
        got = store.query(f"SELECT tenant_id, trace_id, user_id, timestamp_ms FROM values("
                          f"'tenant_id String, trace_id String, user_id Nullable(String), timestamp_ms Int64', {values}) "
                          f"WHERE {cond}", params).rows
    expected = [r for r in rows if not s.skips("Experience", dict(zip(("tenant_id", "trace_id", "user_id", "timestamp_ms"), r)))]
    assert [tuple(r) for r in got] == expected and len(expected) == 4
    assert DeletionSet().sql_keep("Experience") is None and s.sql_keep("DeadLetter") is None


def test_a_request_names_the_field_it_lacks_and_later_deletions_keep_earlier_traces() -> None:
    with pytest.raises(ValueError, match="user_id: is empty"):
        deletion_request("acme", "  ", "cli:test")
    with pytest.raises(ValueError, match="user_id: is 513 characters"):
        deletion_request("acme", "x" * 513, "cli:test")
    assert subject_of("acme", "alice") != subject_of("acme2", "alice") and "alice" not in subject_of("acme", "alice")
    first = {**deletion_request("acme", "alice", "k"), "status": "applied", "trace_ids": ["t1"], "datasets": ["d1"]}
    again = merge_into(first, deletion_request("acme", "alice", "k"))
    assert again["status"] == "requested" and again["trace_ids"] == ["t1"] and again["datasets"] == ["d1"]
