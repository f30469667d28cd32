"""Relabelling history (pure half): times on the command line, the revision scheme, what a replay emits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from agentgym.ops.cli import main
from agentgym.processors.deletions import DeletionSet
from agentgym.processors.labelling.engine import InMemoryLabeller, LabellingEngine
from agentgym.processors.labelling.replay import (
    PartitionReplay,
    ReplayError,
    TraceOutcomes,
    is_replay_id,
    parse_time,
    replay_event_id,
)
from agentgym.processors.labelling.rules import RuleBook
from agentgym.processors.labelling.settings import LabellerSettings
from agentgym.schemas import AvroCodec
from tests.unit.processors.labelling.helpers import experience, feedback

NOW = 1_764_748_800_000  # 2025-12-03T08:00:00Z
codec = AvroCodec()

# the bug: a 4 of 5 rating (0.8) fell in the neutral band; the fix: the default 0.7
BUGGY = {"rating_success_at": 0.9}
FIXED: dict[str, Any] = {}


@pytest.mark.parametrize(("text", "expected"), [
    ("2025-12-03T08:00:00Z", NOW),
    ("2025-12-03T09:00:00+01:00", NOW),
    ("2025-12-03T08:00:00", NOW),  # no zone: UTC
    ("2025-12-03", NOW - 8 * 3_600_000),
    (str(NOW), NOW),
    ("2h", NOW - 2 * 3_600_000),
    ("30m", NOW - 30 * 60_000),
    ("90s ago", NOW - 90_000),
    ("7d", NOW - 7 * 86_400_000),
    ("1.5h", NOW - 5_400_000),
    ("now", NOW),
])
def test_times_on_the_command_line(text: str, expected: int) -> None:
    assert parse_time(text, "--since", NOW) == expected


@pytest.mark.parametrize(("text", "reason"), [
    ("yesterday", "'yesterday' is not a time"),
    ("", "is empty"),
    ("1764748800", "not epoch milliseconds (before 1973); seconds? give 1764748800000"),
    ("2h later", "is not a time"),
    ("2025-13-01", "is not a time"),
])
def test_a_bad_time_names_the_option_and_the_reason(text: str, reason: str) -> None:
    with pytest.raises(ReplayError) as e:
        parse_time(text, "--until", NOW)
    assert str(e.value).startswith("--until: ") and reason in str(e.value)


def _engine(rules: dict[str, Any]) -> LabellingEngine:
    return LabellingEngine(RuleBook(rules or None), LabellerSettings(quiet_period_s=1, state_ttl_s=3600))


def _live(rules: dict[str, Any], *events: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """What the live labeller emitted for these events (in order), with ``rules``."""
    lab = InMemoryLabeller(_engine(rules))
    for i, (kind, rec) in enumerate(events):
        getattr(lab, kind)(rec, NOW + i * 100)  # within the quiet period
    lab.flush(NOW + 10**7)
    return lab.outcomes


def _replay(rules: dict[str, Any], exps: list[dict[str, Any]], fbs: list[dict[str, Any]], outs: list[dict[str, Any]],
            deletions: DeletionSet | None = None, **kw: Any) -> tuple[PartitionReplay, list[Any]]:
    r = PartitionReplay(_engine(rules), lambda t, a: None, 3, deletions=deletions, **kw)
    for e in exps:
        r.experience(e)
    for f in fbs:
        r.feedback(f)
    for o in outs:
        r.outcome(o)
    return r, list(r.relabel(NOW + 10**8))


def _rated(trace: str, stars: float) -> tuple[dict[str, Any], dict[str, Any]]:
    return experience(trace), feedback(trace, kind="rating", rating=stars)


def test_a_fixed_rule_emits_revisions_only_where_the_label_changed_and_a_second_replay_nothing() -> None:
    (e1, f1), (e2, f2) = _rated("t1", 4.0), _rated("t2", 1.0)
    live = _live(BUGGY, ("experience", e1), ("feedback", f1), ("experience", e2), ("feedback", f2))
    assert {(o["trace_id"], o["revision"], o["label"]) for o in live} == {("t1", 0, "unknown"), ("t2", 0, "failure")}
    r, got = _replay(FIXED, [e1, e2], [f1, f2], live)
    emitted = [x.outcome for x in got if x.outcome is not None]
    assert [(o["trace_id"], o["revision"], o["label"], o["labeller"]) for o in emitted] == [("t1", 1, "success", "human")]
    o = emitted[0]
    assert o["event_id"] == replay_event_id("t1", 1, got[0].decision) and is_replay_id(o["event_id"])
    assert o["event_id"] != "t1:outcome:1"  # never the live labeller's id of its next revision
    assert (o["model_version"], o["agent_id"], o["tenant_id"]) == ("v1", "bot", "acme")
    assert codec.decode(codec.encode("Outcome", o), expected="Outcome").record == o  # fits the schema
    assert (r.counts.traces, r.counts.relabelled, r.counts.unchanged, r.counts.experiences, r.counts.feedback,
            r.counts.outcomes) == (2, 1, 1, 2, 2, 2)
    # the second replay reads the first one's revision back from the topic: nothing to emit
    r2, again = _replay(FIXED, [e1, e2], [f1, f2], live + emitted)
    assert [x.outcome for x in again] == [None, None] and r2.counts.unchanged == 2


def test_replay_revisions_never_shadow_a_later_live_revision() -> None:
    e, f = _rated("t1", 4.0)
    live = _live(BUGGY, ("experience", e), ("feedback", f))  # t1:outcome:0, unknown
    _, first = _replay(FIXED, [e], [f], live)
    r1 = first[0].outcome
    assert r1["revision"] == 1
    # the rules change again (4 of 5 now a failure): the replay stays at L + 1 = 1, with another id
    _, second = _replay({"rating_success_at": 0.95, "rating_failure_at": 0.85}, [e], [f], live + [r1])
    r1b = second[0].outcome
    assert (r1b["revision"], r1b["label"]) == (1, "failure") and r1b["event_id"] != r1["event_id"]
    # the live labeller's next revision is 1 too (event id t1:outcome:1): equal, and written later, it wins in
    # storage; a replay after it goes to 2
    live1 = {**live[0], "event_id": "t1:outcome:1", "revision": 1, "label": "failure", "labeller": "human", "confidence": 0.95}
    h = TraceOutcomes()
    for o in (live[0], r1, r1b, live1):
        h.add(o)
    assert (h.live_revision, h.latest["event_id"], h.next_revision) == (1, "t1:outcome:1", 2)
    _, third = _replay(FIXED, [e], [f], live + [r1, r1b, live1])
    assert third[0].outcome["revision"] == 2


def test_the_same_decision_replayed_twice_has_the_same_event_id() -> None:
    e, f = _rated("t1", 4.0)
    live = _live(BUGGY, ("experience", e), ("feedback", f))
    _, a = _replay(FIXED, [e], [f], live)
    _, b = _replay(FIXED, [e], [f], live)  # an interrupted replay started again before Kafka held the first
    assert a[0].outcome["event_id"] == b[0].outcome["event_id"]


def test_a_trace_never_labelled_gets_revision_0_and_one_labelled_the_same_gets_nothing() -> None:
    e, f = _rated("t1", 5.0)
    _, got = _replay(FIXED, [e], [f], [])
    assert (got[0].outcome["revision"], got[0].outcome["label"], got[0].previous) == (0, "success", None)
    live = _live(FIXED, ("experience", e), ("feedback", f))
    _, same = _replay(FIXED, [e], [f], live)
    assert same[0].outcome is None and same[0].previous["event_id"] == "t1:outcome:0"


def test_deleted_users_and_traces_are_skipped_and_filters_apply() -> None:
    (e1, f1), (e2, f2), (e3, f3) = _rated("t1", 4.0), _rated("t2", 4.0), _rated("t3", 4.0)
    e2["user_id"] = f2["user_id"] = "bob"
    deleted = DeletionSet()
    deleted.add({"tenant_id": "acme", "user_id": "bob", "requested_ms": NOW + 1, "trace_ids": []})
    deleted.add({"tenant_id": "acme", "user_id": "eve", "requested_ms": NOW + 1, "trace_ids": ["t3"]})
    other = experience("t4", tenant_id="globex")
    r, got = _replay(FIXED, [e1, e2, e3, other], [f1, f2, f3], [], deletions=deleted, tenant_id="acme", agent_id="bot")
    assert [x.trace_id for x in got] == ["t1"]
    assert r.counts.skipped_deleted == 4  # bob's experience and feedback, and trace t3's
    # another tenant's feedback on the same trace id joins nothing
    r2, got2 = _replay(FIXED, [e1], [f1, feedback("t1", kind="thumbs", thumbs_up=False, tenant_id="globex")], [])
    assert got2[0].decision.label == "success" and r2.counts.skipped_no_experience == 1


def test_feedback_without_an_experience_in_the_window_is_not_relabelled() -> None:
    r, got = _replay(FIXED, [], [feedback("t9", thumbs_up=True)], [])
    assert got == [] and r.counts.skipped_no_experience == 1


def test_invalid_events_are_counted_not_raised() -> None:
    r, got = _replay(FIXED, [experience("t1", latency_ms=-1.0)], [], [])
    assert got == [] and r.counts.skipped_invalid == 1


@pytest.mark.parametrize(("args", "message"), [
    (["--since", "yesterday"], "--since: 'yesterday' is not a time"),
    (["--since", "2h", "--until", "soon"], "--until: 'soon' is not a time"),
    (["--since", "2h", "--until", "3h"], "must be before --until"),
    (["--since", "2h", "--agent", "bot"], "--agent needs --tenant"),
    (["--since", "2h", "--tenant", "../x"], "tenant_id"),
])
def test_the_command_refuses_bad_arguments_naming_the_option(args: list[str], message: str) -> None:
    res = CliRunner().invoke(main, ["labeller", "replay", *args])
    assert res.exit_code == 2 and message in res.output, res.output


def test_the_command_refuses_an_unreadable_or_invalid_rules_file(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["labeller", "replay", "--since", "2h", "--rules", str(tmp_path / "missing.yaml")])
    assert res.exit_code == 2 and "--rules" in res.output and "cannot read the rules file" in res.output, res.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("default:\n  rating_success_at: 2\n")
    res = CliRunner().invoke(main, ["labeller", "replay", "--since", "2h", "--rules", str(bad)])
    assert res.exit_code == 2 and "rating_success_at" in res.output, res.output
