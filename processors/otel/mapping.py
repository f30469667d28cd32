"""Pure mapping of OpenTelemetry GenAI spans to Agent Gym steps and experiences.

Two phases, both pure (no Kafka, no protobuf):

* :func:`map_span`: one span (its attributes and events already flattened to Python
  values) to a :data:`MappedSpan` dict: the step kind, model, tokens, messages, tool
  call, agent and error, read from whichever dialect the span speaks:

  - the OpenTelemetry GenAI semantic conventions (``gen_ai.operation.name``,
    ``gen_ai.request.model``, ``gen_ai.usage.input_tokens``, ``gen_ai.input.messages``,
    ``execute_tool`` spans, ``gen_ai.agent.*``; messages from attributes or from the
    older ``gen_ai.content.prompt`` / ``gen_ai.*.message`` span events);
  - OpenInference (``openinference.span.kind``, ``llm.*``, ``input.value``, ``tool.*``);
  - OpenLLMetry's legacy attributes (``gen_ai.prompt.N.*``, ``gen_ai.completion.N.*``,
    ``llm.usage.*``, ``traceloop.*``).

* :func:`assemble`: every mapped span of one trace to one Experience record (the
  trace is the agent run; its id is the OTel trace id in hex).

``docs/otel.md`` has the mapping as a table, and what is dropped.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["MappedSpan", "is_genai", "map_span", "assemble", "experience_event_id", "SPAN_KINDS", "UNIT_TYPES"]

MappedSpan = dict[str, Any]
"""One mapped span, the ``OtelSpan`` Avro record (``schemas/avro/OtelSpans.v2.avsc``)."""

SPAN_KINDS = ("llm", "tool", "retrieval", "agent", "other")

_OPERATION_KIND = {
    "chat": "llm", "text_completion": "llm", "generate_content": "llm", "completion": "llm",
    "execute_tool": "tool", "embeddings": "retrieval", "retrieval": "retrieval",
    "invoke_agent": "agent", "create_agent": "agent",
}
_OPENINFERENCE_KIND = {
    "LLM": "llm", "TOOL": "tool", "RETRIEVER": "retrieval", "EMBEDDING": "retrieval", "RERANKER": "retrieval",
    "AGENT": "agent", "CHAIN": "agent",
}
_TRACELOOP_KIND = {"workflow": "agent", "agent": "agent", "task": "other", "tool": "tool"}
_LLM_REQUEST_TYPE = {"chat": "llm", "completion": "llm", "embedding": "retrieval", "rerank": "retrieval"}


def is_genai(attributes: Mapping[str, Any]) -> bool:
    """Whether a span speaks one of the three GenAI dialects, or carries Agent Gym's own ``agentgym.*``
    attributes (an experiment assignment on the agent's own span); others are dropped."""
    for k in attributes:
        if k.startswith(("gen_ai.", "llm.", "traceloop.", "agentgym.")) or k == "openinference.span.kind":
            return True
    return False


_INT_MAX = 2**31 - 1  # the Experience's token counts are Avro ints


def _int(v: Any) -> int:
    try:
        return min(_INT_MAX, max(0, int(v)))
    except (TypeError, ValueError, OverflowError):  # OverflowError: an infinite double
        return 0


def _text(v: Any) -> str | None:
    if v is None:
        return None
    return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str)


def _maybe_json(v: Any) -> Any:
    if isinstance(v, str) and v[:1] in ("[", "{"):
        try:
            return json.loads(v)
        except ValueError:
            return v
    return v


def _message(role: Any, content: Any, name: Any = None, tool_call_id: Any = None) -> dict[str, Any]:
    return {"role": str(role or "user"), "content": _text(content) or "", "name": None if name is None else str(name),
            "tool_call_id": None if tool_call_id is None else str(tool_call_id)}


def _parts_message(m: Mapping[str, Any]) -> dict[str, Any]:
    """A message of the GenAI conventions' structured form (``role``, ``parts``), or the older ``content`` form."""
    parts = m.get("parts")
    if not isinstance(parts, list):
        content = m.get("content")
        if content is None and m.get("tool_calls"):
            content = m["tool_calls"]
        return _message(m.get("role"), content, m.get("name"), m.get("tool_call_id") or m.get("id"))
    texts: list[str] = []
    calls: list[Any] = []
    call_id = None
    for p in parts:
        if not isinstance(p, Mapping):
            texts.append(str(p))
            continue
        t = p.get("type")
        if t == "text" or (t is None and "content" in p):
            texts.append(str(p.get("content", "")))
        elif t == "tool_call":
            calls.append({"id": p.get("id"), "name": p.get("name"), "arguments": p.get("arguments")})
        elif t == "tool_call_response":
            call_id = p.get("id")
            texts.append(_text(p.get("response")) or "")
        else:
            texts.append(_text(p.get("content", p)) or "")
    body: Any = "".join(texts) if texts or not calls else calls
    return _message(m.get("role"), body, m.get("name"), call_id)


def _messages_attr(v: Any, default_role: str | None = None) -> list[dict[str, Any]]:
    v = _maybe_json(v)
    if isinstance(v, Mapping):
        v = [v]
    if not isinstance(v, list):
        return [] if v is None else [_message(default_role or "user", v)]
    out = []
    for m in v:
        if isinstance(m, Mapping):
            msg = _parts_message(m)
            if default_role and not m.get("role"):
                msg["role"] = default_role
            out.append(msg)
        else:
            out.append(_message(default_role or "user", m))
    return out


def _indexed(attributes: Mapping[str, Any], prefix: str) -> dict[int, dict[str, Any]]:
    """``prefix.N.rest`` attributes as {N: {rest: value}} (OpenInference and OpenLLMetry flatten lists so)."""
    out: dict[int, dict[str, Any]] = {}
    plen = len(prefix)
    for k, v in attributes.items():
        if not k.startswith(prefix):
            continue
        head, _, rest = k[plen:].partition(".")
        if head.isdigit() and rest:
            out.setdefault(int(head), {})[rest] = v
    return out


def _flat_messages(attributes: Mapping[str, Any], prefix: str, role_key: str, content_key: str,
                   calls_key: str, call_name: str, call_args: str, id_key: str) -> list[dict[str, Any]]:
    msgs = []
    for _, fields in sorted(_indexed(attributes, prefix).items()):
        calls = []
        for j in sorted({int(k[len(calls_key) + 1:].split(".", 1)[0]) for k in fields
                         if k.startswith(calls_key + ".") and k[len(calls_key) + 1:].split(".", 1)[0].isdigit()}):
            base = f"{calls_key}.{j}."
            calls.append({"name": fields.get(base + call_name), "arguments": fields.get(base + call_args)})
        content = fields.get(content_key)
        if content is None and calls:
            content = calls
        msgs.append(_message(fields.get(role_key), content, fields.get("name") or fields.get("message.name"), fields.get(id_key)))
    return msgs


def _event_messages(events: Iterable[tuple[str, Mapping[str, Any]]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Messages carried by span events (the GenAI conventions before messages became attributes)."""
    ins: list[dict[str, Any]] = []
    outs: list[dict[str, Any]] = []
    for name, attrs in events:
        if name == "gen_ai.content.prompt":
            ins += _messages_attr(attrs.get("gen_ai.prompt"))
        elif name == "gen_ai.content.completion":
            outs += _messages_attr(attrs.get("gen_ai.completion"), "assistant")
        elif name == "gen_ai.client.inference.operation.details":
            ins += _messages_attr(attrs.get("gen_ai.input.messages"))
            outs += _messages_attr(attrs.get("gen_ai.output.messages"), "assistant")
        elif name in ("gen_ai.system.message", "gen_ai.user.message", "gen_ai.assistant.message", "gen_ai.tool.message"):
            role = name.split(".")[1]
            ins.append(_message(attrs.get("role", role), attrs.get("content", attrs.get("gen_ai.event.content")),
                                tool_call_id=attrs.get("id")))
        elif name == "gen_ai.choice":
            msg = _maybe_json(attrs.get("message"))
            outs.append(_parts_message(msg) if isinstance(msg, Mapping) else _message("assistant", msg))
    return ins, outs


def _kind(a: Mapping[str, Any], operation: str | None) -> str:
    if operation in _OPERATION_KIND:
        return _OPERATION_KIND[operation]
    oi = a.get("openinference.span.kind")
    if isinstance(oi, str) and oi.upper() in _OPENINFERENCE_KIND:
        return _OPENINFERENCE_KIND[oi.upper()]
    rt = a.get("llm.request.type")
    if isinstance(rt, str) and rt in _LLM_REQUEST_TYPE:
        return _LLM_REQUEST_TYPE[rt]
    tl = a.get("traceloop.span.kind")
    if isinstance(tl, str) and tl in _TRACELOOP_KIND:
        return _TRACELOOP_KIND[tl]
    if operation or "gen_ai.request.model" in a or "llm.model_name" in a:
        return "llm"
    return "other"


def _first(a: Mapping[str, Any], *keys: str) -> Any:
    for k in keys:
        v = a.get(k)
        if v is not None and v != "":
            return v
    return None


def map_span(span_id: str, parent_span_id: str, name: str, start_ns: int, end_ns: int, status_error: bool,
             status_message: str, attributes: Mapping[str, Any],
             events: Iterable[tuple[str, Mapping[str, Any]]] = ()) -> MappedSpan:
    """Maps one GenAI span.

    Args:
        span_id / parent_span_id: lowercase hex ("" for a root span's parent).
        name: the span's name.
        start_ns / end_ns: Unix epoch nanoseconds.
        status_error: whether the span's status code is ERROR.
        status_message: the status description ("" when none).
        attributes: the span's attributes, flattened (arrays as lists).
        events: the span's events, ``(name, attributes)``.
    """
    a = attributes
    operation = _first(a, "gen_ai.operation.name")
    operation = str(operation) if operation is not None else None
    kind = _kind(a, operation)
    # messages: GenAI attributes, then OpenInference, then OpenLLMetry legacy, then span events
    ins = _messages_attr(a["gen_ai.input.messages"]) if "gen_ai.input.messages" in a else []
    if "gen_ai.system_instructions" in a:
        ins = [_message("system", "".join(m["content"] for m in _messages_attr(a["gen_ai.system_instructions"])))] + ins
    outs = _messages_attr(a["gen_ai.output.messages"], "assistant") if "gen_ai.output.messages" in a else []
    if not ins:
        ins = _flat_messages(a, "llm.input_messages.", "message.role", "message.content", "message.tool_calls",
                             "tool_call.function.name", "tool_call.function.arguments", "message.tool_call_id")
    if not outs:
        outs = _flat_messages(a, "llm.output_messages.", "message.role", "message.content", "message.tool_calls",
                              "tool_call.function.name", "tool_call.function.arguments", "message.tool_call_id")
    if not ins:
        ins = _flat_messages(a, "gen_ai.prompt.", "role", "content", "tool_calls", "name", "arguments", "tool_call_id")
    if not outs:
        outs = _flat_messages(a, "gen_ai.completion.", "role", "content", "tool_calls", "name", "arguments", "tool_call_id")
    if not ins or not outs:
        ev_in, ev_out = _event_messages(events)
        ins = ins or ev_in
        outs = outs or ev_out
    tool_name = _first(a, "gen_ai.tool.name", "tool.name")
    in_text = _first(a, "gen_ai.tool.call.arguments", "tool.parameters", "input.value", "traceloop.entity.input")
    out_text = _first(a, "gen_ai.tool.call.result", "output.value", "traceloop.entity.output")
    input_tokens = _int(_first(a, "gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.token_count.prompt",
                               "llm.usage.prompt_tokens"))
    output_tokens = _int(_first(a, "gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens", "llm.token_count.completion",
                                "llm.usage.completion_tokens"))
    error = None
    if status_error:
        error = status_message or str(_first(a, "error.type", "exception.type") or "error")
    return {
        "span_id": span_id,
        "parent_span_id": parent_span_id,
        "name": (str(tool_name) if kind == "tool" and tool_name else name) or name,
        "kind": kind,
        "operation": operation,
        "start_ns": start_ns,
        "end_ns": end_ns,
        "error": error,
        "model": _text(_first(a, "gen_ai.request.model", "llm.model_name", "llm.request.model")),
        "response_model": _text(_first(a, "gen_ai.response.model", "llm.response.model")),
        "system": _text(_first(a, "gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system")),
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "input_messages": ins,
        "output_messages": outs,
        "input": _text(_maybe_json(in_text)) if in_text is not None else None,
        "output": _text(_maybe_json(out_text)) if out_text is not None else None,
        "tool_call_id": _text(_first(a, "gen_ai.tool.call.id", "tool_call.id")),
        "agent_name": _text(_first(a, "gen_ai.agent.name", "agent.name")),
        "session_id": _text(_first(a, "gen_ai.conversation.id", "session.id", "traceloop.association.properties.session_id")),
        "user_id": _text(_first(a, "user.id", "enduser.id", "gen_ai.user.id", "traceloop.association.properties.user_id")),
        "model_version": _text(_first(a, "agentgym.model_version")),
        "assignment": _assignment(a),
    }


UNIT_TYPES = ("user", "session", "trace")
_ASSIGNMENT_KEYS = ("agentgym.experiment.id", "agentgym.experiment.variant", "agentgym.experiment.unit_id")


def _assignment(a: Mapping[str, Any]) -> dict[str, Any] | None:
    """The experiment assignment a span carries in ``agentgym.experiment.*`` attributes, or None.

    ``id``, ``variant`` and ``unit_id`` go together (all or none); ``unit_type`` is user (the
    default), session or trace; ``config_version`` an integer >= 0; ``status`` the experiment's
    status that served the run. Raises ValueError naming the attribute when they are inconsistent.
    """
    given = {k: _text(a.get(k)) for k in _ASSIGNMENT_KEYS}
    if not any(given.values()):
        return None
    missing = [k for k, v in given.items() if not v]
    if missing:
        raise ValueError(f"attribute {missing[0]!r} is missing: an experiment assignment needs "
                         + ", ".join(_ASSIGNMENT_KEYS))
    unit_type = _text(a.get("agentgym.experiment.unit_type")) or "user"
    if unit_type not in UNIT_TYPES:
        raise ValueError(f"attribute 'agentgym.experiment.unit_type' is {unit_type!r}; expected one of {', '.join(UNIT_TYPES)}")
    raw_version = a.get("agentgym.experiment.config_version", 0)
    try:
        config_version = int(raw_version)
    except (TypeError, ValueError):
        config_version = -1
    if isinstance(raw_version, bool) or not 0 <= config_version <= _INT_MAX:
        raise ValueError(f"attribute 'agentgym.experiment.config_version' is {raw_version!r}; expected an integer >= 0")
    return {"experiment_id": given["agentgym.experiment.id"], "variant": given["agentgym.experiment.variant"],
            "unit_type": unit_type, "unit_id": given["agentgym.experiment.unit_id"], "config_version": config_version,
            "experiment_status": _text(a.get("agentgym.experiment.status")) or ""}


def experience_event_id(tenant_id: str, trace_id: str) -> str:
    """The Experience's event id, the same for every revision of a trace's run (so storage keeps one row)."""
    return hashlib.blake2b(f"otel:{tenant_id}:{trace_id}".encode(), digest_size=16).hexdigest()


def _roots(spans: list[MappedSpan]) -> list[MappedSpan]:
    ids = {s["span_id"] for s in spans}
    return [s for s in spans if s["parent_span_id"] not in ids]


def _step(s: MappedSpan) -> dict[str, Any]:
    kind = s["kind"]
    if kind == "llm":
        step_in = json.dumps(s["input_messages"], ensure_ascii=False) if s["input_messages"] else s["input"]
        step_out = json.dumps(s["output_messages"], ensure_ascii=False) if s["output_messages"] else s["output"]
        name = s["response_model"] or s["model"] or s["name"]
    else:
        step_in, step_out, name = s["input"], s["output"], s["name"]
    return {
        "step_id": s["span_id"], "kind": kind if kind in ("llm", "tool", "retrieval") else "other", "name": name,
        "input": step_in, "output": step_out, "error": s["error"],
        "latency_ms": max(0.0, (s["end_ns"] - s["start_ns"]) / 1e6),
        "prompt_tokens": s["input_tokens"] if kind == "llm" else 0,
        "completion_tokens": s["output_tokens"] if kind == "llm" else 0,
    }


def assemble(tenant_id: str, agent_id: str, trace_id: str, spans: Iterable[MappedSpan],
             metadata: Mapping[str, str] | None = None) -> dict[str, Any]:
    """One Experience record (the Avro ``Experience``'s fields) from every mapped span of a trace.

    The run spans the whole trace: it starts at the earliest span and ends at the latest.
    Steps are the spans in start order except the run's own agent span; tokens are summed
    over LLM spans only (agent spans that repeat their children's totals are not counted
    twice). The input is the agent span's input (or the first LLM call's messages), the
    output the agent span's output (or the last LLM call's last assistant message).
    """
    ordered = sorted(spans, key=lambda s: (s["start_ns"], s["span_id"]))
    if not ordered:
        raise ValueError("a run needs at least one span")
    roots = _roots(ordered)
    agent_root = next((s for s in roots if s["kind"] == "agent"), None)
    steps_of = [s for s in ordered if s is not agent_root and not (s["kind"] == "agent" and s in roots)]
    llms = [s for s in ordered if s["kind"] == "llm"]
    start = ordered[0]["start_ns"]
    end = max(s["end_ns"] for s in ordered)
    # input
    run_input: list[dict[str, Any]] = []
    if agent_root is not None:
        run_input = agent_root["input_messages"] or ([_message("user", agent_root["input"])] if agent_root["input"] else [])
    if not run_input and llms:
        run_input = llms[0]["input_messages"] or ([_message("user", llms[0]["input"])] if llms[0]["input"] else [])
    # output
    output = None
    if agent_root is not None:
        outs = agent_root["output_messages"]
        output = outs[-1]["content"] if outs else agent_root["output"]
    if output is None and llms:
        last = llms[-1]
        assistant = [m for m in last["output_messages"] if m["role"] == "assistant"] or last["output_messages"]
        output = assistant[-1]["content"] if assistant else last["output"]
    first_llm = llms[0] if llms else None
    model_name = (first_llm["model"] or first_llm["response_model"]) if first_llm else None
    model_version = next((s["model_version"] for s in ordered if s["model_version"]), None)
    if model_version is None and first_llm is not None:
        model_version = first_llm["response_model"] or first_llm["model"]
    top_errors = [s["error"] for s in roots if s["error"]]
    meta = {"source": "otlp", "otel.span_count": str(len(ordered))}
    for key, field in (("gen_ai.agent.name", "agent_name"), ("gen_ai.provider.name", "system")):
        v = next((s[field] for s in ordered if s[field]), None)
        if v:
            meta[key] = v
    meta.update(metadata or {})
    return {
        "event_id": experience_event_id(tenant_id, trace_id),
        "tenant_id": tenant_id,
        "agent_id": agent_id,
        "trace_id": trace_id,
        "timestamp_ms": start // 1_000_000,
        "session_id": next((s["session_id"] for s in ordered if s["session_id"]), None),
        "user_id": next((s["user_id"] for s in ordered if s["user_id"]), None),
        "input": run_input,
        "steps": [_step(s) for s in steps_of],
        "output": output,
        "model_name": model_name or "unknown",
        "model_version": model_version or "unknown",
        "assignment": next((dict(s["assignment"]) for s in ordered if s.get("assignment")), None),
        "latency_ms": max(0.0, (end - start) / 1e6),
        "prompt_tokens": min(_INT_MAX, sum(s["input_tokens"] for s in llms)),
        "completion_tokens": min(_INT_MAX, sum(s["output_tokens"] for s in llms)),
        "cost_usd": 0.0,
        "status": "error" if top_errors else "ok",
        "error": top_errors[0] if top_errors else None,
        "metadata": meta,
        "sdk_version": "otlp",
    }
