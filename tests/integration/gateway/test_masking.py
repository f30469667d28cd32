"""Masking at ingestion, end to end: what reaches the broker is already masked (docs/privacy.md).

Events recorded with the SDK, and sent to the API (JSON events, feedback, OTLP spans) under a tenant
whose policy hashes placeholders and adds a custom pattern, with one agent's policy off: the raw
values on the topics are read back byte for byte, never decoded through the pipeline.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from agentgym import AgentGym
from agentgym.gateway.masking import tenant_key
from agentgym.ops.commands.tenants import tenants
from agentgym.schemas.codec import AvroCodec
from agentgym.schemas.topics import TOPICS
from tests.integration.gateway.conftest import ServedGateway, auth, call, experience, new_key, test_settings
from tests.kafka_utils import consume_all
from tests.workers import wait_for

_EXPERIENCES, _FEEDBACK, _SPANS = TOPICS["experiences"].name, TOPICS["feedback"].name, TOPICS["otel-spans"].name
_codec = AvroCodec()


def _by_keys(bootstrap: str, topic: str, keys: list[str]) -> dict[str, bytes]:
    wanted = {k.encode() for k in keys}
    msgs = consume_all(bootstrap, topic, len(keys), match=lambda m: m.key() in wanted)
    return {m.key().decode(): m.value() for m in msgs}


def _h(key: bytes, value: str) -> str:
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:8]


@pytest.mark.timeout(90)
def test_sdk_events_reach_kafka_masked(bootstrap: str, unique: str, tmp_path: Path) -> None:
    email, card = f"jane.{unique}@example.com", "4111 1111 1111 1111"
    with AgentGym(bootstrap, f"mask-{unique}", "bot", spool_dir=tmp_path / "spool") as gym:  # the defaults: on
        trace_id = gym.record_experience(
            input=f"I'm {email}, call +44 20 7946 0958", output=f"Noted {email}", model_name="m", model_version="v1",
            latency_ms=3.0, steps=[{"name": "charge", "kind": "tool", "input": {"card": card}, "output": "ok"}],
            metadata={"channel": "web"})
        gym.record_feedback(trace_id, correction=f"Write to {email} instead")
        assert gym.flush(30) == 0
    raw = _by_keys(bootstrap, _EXPERIENCES, [trace_id])[trace_id]
    for value in (email, card, "+44 20 7946 0958", "4111111111111111"):  # the raw values never reached the broker
        assert value.encode() not in raw
    run = _codec.decode(raw).record
    assert run["input"][0]["content"] == "I'm <EMAIL>, call <PHONE>" and run["output"] == "Noted <EMAIL>"
    assert run["steps"][0]["input"] == '{"card": "<CARD>"}' and run["metadata"] == {"channel": "web"}
    fb = _by_keys(bootstrap, _FEEDBACK, [trace_id])[trace_id]
    assert email.encode() not in fb
    assert _codec.decode(fb).record["correction"] == "Write to <EMAIL> instead"


@pytest.mark.timeout(120)
def test_api_events_reach_kafka_masked_per_tenant_and_agent(bootstrap: str, unique: str, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    tenant, secret = f"mapi-{unique}", f"secret-{unique}"
    email = f"bob.{unique}@example.com"
    monkeypatch.setenv("AGENTGYM_GATEWAY_DEFAULT_PLAN", "enterprise")  # the plan a tenant without a record has
    monkeypatch.setenv("AGENTGYM_GATEWAY_MASK_SECRET", secret)
    run = CliRunner().invoke
    out = run(tenants, ["masking", tenant, "--bootstrap", bootstrap, "--hash", "--pattern", r"order_id=\bORD-\d{6}\b"])
    assert out.exit_code == 0 and "hashed placeholders" in out.output and "order_id" in out.output, out.output
    out = run(tenants, ["masking", tenant, "--bootstrap", bootstrap, "--agent", "raw-agent", "--off"])
    assert out.exit_code == 0 and "raw-agent: off" in out.output, out.output
    out = run(tenants, ["masking", tenant, "--bootstrap", bootstrap, "--fields", "input,body"])
    assert out.exit_code != 0 and "unknown masking field(s) ['body']" in out.output, out.output
    out = run(tenants, ["masking", tenant, "--bootstrap", bootstrap])
    assert "tenant " + tenant + ": on: default detectors on default fields, patterns order_id, hashed" in out.output
    assert "agent raw-agent: off" in out.output, out.output
    assert run(tenants, ["masking-key", tenant]).output.strip() == tenant_key(secret, tenant).decode()
    with ServedGateway(test_settings(bootstrap, tmp_path / "spool", mask_secret=secret)) as served:
        wait_for(lambda: not served.gateway.maskers.policy(tenant, "raw-agent").active, 30,
                 "the gateway to read the tenant's masking policy")
        key = new_key(bootstrap, served, tenant)
        status, body, _ = call("POST", f"{served.url}/v1/experiences", {"events": [
            experience(0, agent_id="bot", input=f"I'm {email} about ORD-123456", output="ok",
                       steps=[{"name": "lookup", "kind": "tool", "input": f'{{"email": "{email}"}}', "output": "{}"}]),
            experience(1, agent_id="raw-agent", input=f"raw {email}")]}, auth(key))
        assert status == 202, body
        masked_trace, raw_trace = body["trace_ids"]
        status, body, _ = call("POST", f"{served.url}/v1/feedback",
                               {"trace_id": masked_trace, "agent_id": "bot", "comment": f"mail {email}"}, auth(key))
        assert status == 202, body
        span_trace, now = uuid.uuid4().hex, time.time_ns()
        span = {"traceId": span_trace, "spanId": "eee19b7ec3c1b174", "name": "chat m", "startTimeUnixNano": str(now),
                "endTimeUnixNano": str(now + 1000),
                "attributes": [{"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
                               {"key": "gen_ai.prompt.0.role", "value": {"stringValue": "user"}},
                               {"key": "gen_ai.prompt.0.content", "value": {"stringValue": f"I'm {email}"}}]}
        status, body, _ = call("POST", f"{served.url}/v1/traces",
                               orjson.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}),
                               auth(key, **{"Content-Type": "application/json", "X-AgentGym-Agent": "bot"}))
        assert status == 200, body
    tkey = tenant_key(secret, tenant)
    placeholder = f"<EMAIL:{_h(tkey, email)}>"
    runs = _by_keys(bootstrap, _EXPERIENCES, [masked_trace, raw_trace])
    assert email.encode() not in runs[masked_trace] and b"ORD-123456" not in runs[masked_trace]
    assert email.encode() in runs[raw_trace]  # raw-agent's own policy: off
    rec = _codec.decode(runs[masked_trace]).record
    assert rec["input"][0]["content"] == f"I'm {placeholder} about <ORDER_ID:{_h(tkey, 'ORD-123456')}>"
    assert rec["steps"][0]["input"] == f'{{"email": "{placeholder}"}}'
    fb = _by_keys(bootstrap, _FEEDBACK, [masked_trace])[masked_trace]
    assert email.encode() not in fb and placeholder.encode() in fb
    spans = _by_keys(bootstrap, _SPANS, [span_trace])[span_trace]
    assert email.encode() not in spans and placeholder.encode() in spans
    # an SDK given the tenant's key (agentgym tenants masking-key) hashes alike: the placeholders join
    with AgentGym(bootstrap, tenant, "sdk-bot", spool_dir=tmp_path / "sdk-spool", mask_hash_key=tkey.decode()) as gym:
        assert gym.masking.text(f"from {email}") == f"from {placeholder}"
