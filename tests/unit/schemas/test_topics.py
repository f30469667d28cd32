"""Topic naming and layout."""

import pytest

from agentgym.schemas import TOPICS, default_schema_set, spec_for, topic_name
from agentgym.schemas.exceptions import TopicNameError, UnknownTopicError


def test_names_are_lowercase_hyphenated_and_versioned() -> None:
    assert topic_name("experiences") == "gym-experiences-v1"
    assert topic_name("experiment-stats", 2) == "gym-experiment-stats-v2"
    for bad in ("Experiences", "exp_stats", "a.b", ""):
        with pytest.raises(TopicNameError, match="lowercase"):
            topic_name(bad)


def test_design_topics() -> None:
    names = {s.name for s in TOPICS.values()}
    assert names == {
        "gym-experiences-v1", "gym-feedback-v1", "gym-outcomes-v1", "gym-experiments-v1", "gym-experiment-stats-v1",
        "gym-decisions-v1", "gym-datasets-v1", "gym-models-v1", "gym-deadletter-v1", "gym-drift-v1",
        "gym-scenario-lineage-v1", "gym-audit-v1", "gym-otel-spans-v1", "gym-api-keys-v1", "gym-tenants-v1", "gym-tenant-usage-v1",
        "gym-deletions-v1",
    }
    assert {s.base for s in TOPICS.values() if s.compacted} == {"experiments", "models", "api-keys", "tenants", "tenant-usage",
                                                                  "deletions"}
    assert TOPICS["experiments"].config()["cleanup.policy"] == "compact"
    assert TOPICS["experiences"].config()["cleanup.policy"] == "delete"


def test_trace_topics_are_co_partitioned() -> None:
    parts = {TOPICS[b].partitions for b in ("experiences", "feedback", "outcomes", "otel-spans")}
    assert len(parts) == 1
    assert all(TOPICS[b].key_field == "trace_id" for b in ("experiences", "feedback", "outcomes", "otel-spans"))


def test_each_topic_carries_a_known_record_with_its_key_field() -> None:
    schemas = default_schema_set()
    for spec in TOPICS.values():
        fields = {f["name"] for f in schemas.latest(spec.record).raw["fields"]}
        assert spec.key_field in fields or spec.base == "deadletter", spec
        assert spec_for(spec.name) is spec
    with pytest.raises(UnknownTopicError) as unknown:
        spec_for("gym-nope-v1")
    # still a KeyError for lookups written before the typed error, and its message reads unquoted
    assert isinstance(unknown.value, KeyError) and str(unknown.value).startswith("unknown topic 'gym-nope-v1'")
