"""The producer SDK against the real broker: delivery, the run context manager, misuse."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from agentgym import AgentGym, ConfigError, InvalidEventError
from tests.kafka_utils import consume_all, decode_all
from tests.workers import wait_for


@pytest.fixture
def gym(bootstrap: str, unique: str, tmp_path: Path):
    client = AgentGym(bootstrap, tenant_id=f"t-{unique}", agent_id="bot", spool_dir=tmp_path / "spool")
    yield client
    client.close()


def _by_tenant(tenant: str):
    from agentgym.schemas import AvroCodec

    from agentgym.schemas.exceptions import DecodeError

    codec = AvroCodec()

    def match(m) -> bool:  # type: ignore[no-untyped-def]
        try:
            return bool(codec.decode(m.value()).record["tenant_id"] == tenant)
        except DecodeError:  # other tests' garbage on the shared topics (dead-letter tests)
            return False

    return match


def test_experiences_and_feedback_arrive_keyed_by_trace(gym: AgentGym, bootstrap: str) -> None:
    traces = [
        gym.record_experience(input=f"question {i}", output=f"answer {i}", model_name="m", model_version="v1",
                              latency_ms=10.0 + i, prompt_tokens=i, completion_tokens=2 * i, cost_usd=0.001 * i,
                              metadata={"i": i})
        for i in range(20)
    ]
    fb = gym.record_feedback(traces[3], rating=4.5, comment="good")
    assert gym.flush(10) == 0
    got = consume_all(bootstrap, "gym-experiences-v1", 20, match=_by_tenant(gym.tenant_id))
    assert len(got) == 20  # exactly once: no duplicates
    assert sorted(m.key().decode() for m in got) == sorted(traces)
    records = {r["trace_id"]: r for r in decode_all(got)}
    r5 = records[traces[5]]
    assert (r5["input"][0]["content"], r5["output"], r5["prompt_tokens"], r5["metadata"]) == ("question 5", "answer 5", 5, {"i": "5"})
    assert r5["agent_id"] == "bot" and r5["sdk_version"].startswith("agentgym-py/")
    fbs = decode_all(consume_all(bootstrap, "gym-feedback-v1", 1, match=_by_tenant(gym.tenant_id)))
    assert len(fbs) == 1
    assert (fbs[0]["event_id"], fbs[0]["trace_id"], fbs[0]["kind"], fbs[0]["rating"], fbs[0]["comment"]) == (fb, traces[3], "rating", 4.5, "good")
    # same key -> same partition for the experience and its feedback (co-partitioned topics)
    exp_partition = next(m.partition() for m in got if m.key().decode() == traces[3])
    fb_partition = consume_all(bootstrap, "gym-feedback-v1", 1, match=_by_tenant(gym.tenant_id))[0].partition()
    assert exp_partition == fb_partition


def test_run_context_manager_records_steps_output_latency(gym: AgentGym, bootstrap: str) -> None:
    with gym.run([{"role": "user", "content": "weather in Oslo?"}], model_name="m", model_version="v2", user_id="u7") as run:
        with run.step("plan", kind="llm", input="weather in Oslo?") as s:
            s.output = "call weather"
            s.prompt_tokens, s.completion_tokens = 11, 3
        with run.step("weather", kind="tool", input={"city": "Oslo"}) as s:
            time.sleep(0.02)
            s.output = {"temp_c": -3}
        run.output = "It is -3 °C."
    gym.flush(10)
    (rec,) = decode_all(consume_all(bootstrap, "gym-experiences-v1", 1, match=lambda m: m.key() == run.trace_id.encode()))
    assert rec["output"] == "It is -3 °C." and rec["status"] == "ok" and rec["user_id"] == "u7"
    assert [(s["kind"], s["name"]) for s in rec["steps"]] == [("llm", "plan"), ("tool", "weather")]
    assert rec["steps"][1]["input"] == '{"city": "Oslo"}' and rec["steps"][1]["output"] == '{"temp_c": -3}'
    assert rec["steps"][1]["latency_ms"] >= 20
    assert rec["latency_ms"] >= rec["steps"][1]["latency_ms"]
    assert (rec["prompt_tokens"], rec["completion_tokens"]) == (11, 3)  # summed from steps


def test_run_records_errors_and_reraises(gym: AgentGym, bootstrap: str) -> None:
    with pytest.raises(KeyError):
        with gym.run("break", model_name="m", model_version="v1") as run:
            with run.step("lookup", kind="tool"):
                raise KeyError("no such order")
    gym.flush(10)
    (rec,) = decode_all(consume_all(bootstrap, "gym-experiences-v1", 1, match=lambda m: m.key() == run.trace_id.encode()))
    assert rec["status"] == "error"
    assert "KeyError" in rec["error"] and "no such order" in rec["steps"][0]["error"]
    assert rec["output"] is None


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"latency_ms": "slow"}, "latency_ms"),
        ({"model_version": None}, "model_version"),
        ({"prompt_tokens": "many"}, "prompt_tokens"),
        ({"status": "weird"}, "status"),
        ({"steps": [{"kind": "tool"}]}, "steps[0].name"),
        ({"steps": [{"name": "x", "kind": "magic"}]}, "steps[0].kind"),
        ({"input": 42}, "input"),
        ({"input": [{"role": "user"}]}, "input[0]"),
    ],
)
def test_invalid_experience_names_the_field(gym: AgentGym, kwargs: dict, field: str) -> None:
    args = {"input": "q", "output": "a", "model_name": "m", "model_version": "v", "latency_ms": 1.0, **kwargs}
    with pytest.raises(InvalidEventError) as err:
        gym.record_experience(**args)
    assert err.value.field == field
    assert field in str(err.value)


def test_missing_required_argument_is_named(gym: AgentGym) -> None:
    with pytest.raises(TypeError, match="model_version"):
        gym.record_experience(input="q", output="a", model_name="m", latency_ms=1.0)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("kwargs", "field", "text"),
    [
        ({}, "rating", "no feedback given"),
        ({"rating": 7}, "rating", "outside"),
        ({"rating": "good"}, "rating", "expected a number"),
        ({"thumbs_up": True, "source": "robot"}, "source", "not one of"),
    ],
)
def test_invalid_feedback_names_the_field(gym: AgentGym, kwargs: dict, field: str, text: str) -> None:
    with pytest.raises(InvalidEventError, match=text) as err:
        gym.record_feedback("trace-1", **kwargs)
    assert err.value.field == field


def test_feedback_kinds(gym: AgentGym, bootstrap: str, unique: str) -> None:
    trace = f"trace-{unique}"
    gym.record_feedback(trace, correction="the right answer", thumbs_up=False)
    gym.record_feedback(trace, thumbs_up=True)
    gym.record_feedback(trace, signal="abandon", source="system")
    gym.record_feedback(trace, comment="meh", source="ai")
    gym.flush(10)
    recs = decode_all(consume_all(bootstrap, "gym-feedback-v1", 4, match=lambda m: m.key() == trace.encode()))
    assert sorted((r["kind"], r["source"]) for r in recs) == sorted(
        [("correction", "human"), ("thumbs", "human"), ("implicit", "system"), ("comment", "ai")]
    )


def test_settings_from_environment(bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTGYM_BOOTSTRAP_SERVERS", bootstrap)
    monkeypatch.setenv("AGENTGYM_TENANT_ID", "env-tenant")
    monkeypatch.setenv("AGENTGYM_AGENT_ID", "env-agent")
    with AgentGym(agent_id="arg-agent") as g:  # argument beats environment
        assert (g.settings.bootstrap_servers, g.tenant_id, g.agent_id) == (bootstrap, "env-tenant", "arg-agent")
        assert g.spool_dir.parent == Path(os.environ["AGENTGYM_SPOOL_DIR"])


@pytest.mark.parametrize(
    ("kafka_config", "text"),
    [
        ({"acks": 1}, "contradicts"),
        ({"enable.idempotence": False}, "contradicts"),
        ({"no.such.setting": 1}, "invalid Kafka producer setting"),
        ({"message.timeout.ms": 5}, "managed by the SDK"),
    ],
)
def test_pass_through_config_rejects_unknown_and_contradictions(bootstrap: str, tmp_path: Path, kafka_config: dict, text: str) -> None:
    with pytest.raises(ConfigError, match=text):
        AgentGym(bootstrap, "t", "a", spool_dir=tmp_path, kafka_config=kafka_config)


def test_invalid_setting_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="delivery_timeout_s"):
        AgentGym("127.0.0.1:1", "t", "a", spool_dir=tmp_path, delivery_timeout_s=-1)


def test_without_background_polling_the_caller_serves_the_delivery_reports(bootstrap: str, unique: str, tmp_path: Path) -> None:
    """``background_polling=False`` (the gateway's client): a failed delivery is still spooled, by the thread
    that calls ``poll()``, never by the client's background thread."""
    served: list[tuple[str, bool]] = []

    class Recording(AgentGym):
        def _on_delivery(self, err, msg):  # type: ignore[no-untyped-def]
            served.append((threading.current_thread().name, err is None))
            super()._on_delivery(err, msg)

    with Recording(bootstrap, f"t-{unique}", "bot", spool_dir=tmp_path / "spool", delivery_timeout_s=2,
                   background_polling=False) as gym:
        _, value = gym.encode_experience(input="q", output="a", model_name="m", model_version="v1", latency_ms=1.0)
        # a topic the broker does not have (auto-creation is off): librdkafka gives up after delivery_timeout_s
        gym.send_encoded("Experience", f"gym-missing-{unique}", "k", value)
        wait_for(lambda: gym.poll() >= 0 and served, 60, "the failed delivery's report")
        assert served[0] == (threading.current_thread().name, False)
        assert gym.stats["spooled"] + gym.stats["quarantined"] >= 1
