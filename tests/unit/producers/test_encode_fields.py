"""``encode_experience_fields(fields)`` (the gateway's path) against ``encode_experience(**fields)``: the same bytes
or the same error, for plain, normalised, masked and invalid arguments. No broker: nothing is sent."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from agentgym import AgentGym
from agentgym.producers.exceptions import InvalidEventError
from agentgym.schemas.codec import AvroCodec

_FIXED = {"trace_id": "t-1", "event_id": "e-1", "timestamp_ms": 1_760_000_000_000}
_MINIMAL = {"input": "hi", "output": "hello", "model_name": "m", "model_version": "v1", "latency_ms": 12.5}
_CASES: list[dict[str, Any]] = [
    _MINIMAL,
    {**_MINIMAL, "output": None, "status": "error", "error": "boom", "prompt_tokens": 3, "completion_tokens": 4, "cost_usd": 0.5},
    {**_MINIMAL, "input": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
     "steps": [{"name": "search", "kind": "tool", "input": "q", "output": "r", "latency_ms": 3.0}],
     "metadata": {"channel": "web"}, "session_id": "s", "user_id": "u",
     "assignment": {"experiment_id": "x", "variant": "a", "unit_type": "user", "unit_id": "u"}},
    {**_MINIMAL, "output": "mail me at jane@example.com"},  # masked by the SDK's defaults
    {**_MINIMAL, "metadata": {"n": 3, "ok": True}},  # normalised: metadata values to str
    {**_MINIMAL, "steps": [{"name": "call", "kind": "tool", "input": {"q": 1}}]},  # normalised: objects to JSON text
    {**_MINIMAL, "input": {"role": "user"}},  # a mapping input: the general path
    {**_MINIMAL, "steps": ({"name": "s", "kind": "llm"},)},  # a tuple of steps: the general path
    {**_MINIMAL, "status": "weird"},
    {**_MINIMAL, "latency_ms": "fast"},
    {**_MINIMAL, "steps": [{"kind": "tool"}]},
    {**_MINIMAL, "assignment": "x"},
    {k: v for k, v in _MINIMAL.items() if k != "model_name"},
    {**_MINIMAL, "colour": "red"},
    {**_MINIMAL, "agent_id": "other"},  # (last: the delegated call fails in its own binding)
]


def _outcome(call: Any) -> tuple[str, Any]:
    try:
        return "ok", call()
    except (InvalidEventError, TypeError) as exc:  # (a TypeError of the call names the function called: not compared)
        return type(exc).__name__, re.sub(r"^\S+\(\) ", "", str(exc))


@pytest.fixture
def gym(tmp_path: Path):
    client = AgentGym("127.0.0.1:1", "acme", "bot", spool_dir=tmp_path / "spool", background_polling=False)
    yield client
    client.close(timeout_s=0)


_FAST = 4  # the first cases take the fast way; the others go through encode_experience


@pytest.mark.parametrize("case", range(len(_CASES)))
def test_the_fields_path_gives_the_keyword_paths_bytes_or_error(gym: AgentGym, case: int) -> None:
    fields = {**_CASES[case], **_FIXED}
    if not any(type(v) is tuple for v in fields.values()):  # as parsed from JSON (its keys not interned), where it can be
        fields = orjson.loads(orjson.dumps(fields))
    want = _outcome(lambda: gym.encode_experience(tenant_id="t", agent_id="a", **fields))
    general = gym.encode_experience
    calls = []
    gym.encode_experience = lambda **kw: calls.append(kw) or general(**kw)  # type: ignore[method-assign]
    got = _outcome(lambda: gym.encode_experience_fields(fields, tenant_id="t", agent_id="a"))
    assert got == want
    assert len(calls) == (0 if case < _FAST or case == len(_CASES) - 1 else 1)


def test_without_ids_the_records_differ_only_in_their_new_ids(gym: AgentGym) -> None:
    codec = AvroCodec()
    fields = orjson.loads(orjson.dumps(_CASES[2]))
    t1, v1 = gym.encode_experience_fields(fields)  # the client's tenant and agent
    t2, v2 = gym.encode_experience(**fields)
    r1, r2 = codec.decode(v1).record, codec.decode(v2).record
    assert t1 != t2 and r1["trace_id"] == t1 and len(t1) == 32 and r1["event_id"] != r2["event_id"]
    assert abs(r1["timestamp_ms"] - r2["timestamp_ms"]) < 60_000
    for r in (r1, r2):
        del r["trace_id"], r["event_id"], r["timestamp_ms"]
    assert r1 == r2 and r1["tenant_id"] == "acme" and r1["agent_id"] == "bot"
