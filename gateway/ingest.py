"""Ingestion: a batch of JSON events validated and encoded whole, then produced.

The body fields of an event are the keyword arguments of the SDK's
:meth:`AgentGym.encode_experience` / :meth:`AgentGym.encode_feedback` (derived from
their signatures, so the HTTP API and the SDK cannot drift apart), plus
``agent_id`` (or the ``X-AgentGym-Agent`` header) and, optionally, ``tenant_id``,
which must equal the API key's tenant. Every event is encoded before any is
produced: a 4xx means nothing of the request was written. One SDK client (one
idempotent producer and its spool) serves every tenant of the process: the tenant is
a field of the record, never a client or a path.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from agentgym.gateway.exceptions import ApiError, InvalidIdError
from agentgym.gateway.ids import check_id
from agentgym.producers.client import AgentGym
from agentgym.producers.masking import MaskingPolicy
from agentgym.schemas.exceptions import SchemaValidationError
from agentgym.schemas.topics import TOPICS

__all__ = ["Kind", "EXPERIENCE", "FEEDBACK", "Prepared", "prepare"]


def _fields(method: Any, required_extra: tuple[str, ...] = ()) -> tuple[frozenset[str], frozenset[str]]:
    params = [p for p in inspect.signature(method).parameters.values() if p.name not in ("self", "tenant_id", "agent_id")]
    return (frozenset(p.name for p in params),
            frozenset(p.name for p in params if p.default is inspect.Parameter.empty) | frozenset(required_extra))


@dataclass(frozen=True)
class Kind:
    """One kind of event the API takes."""

    record: str
    topic: str
    fields: frozenset[str]
    required: frozenset[str]
    id_name: str  # the response's list of ids


EXPERIENCE = Kind("Experience", TOPICS["experiences"].name, *_fields(AgentGym.encode_experience), "trace_ids")
FEEDBACK = Kind("Feedback", TOPICS["feedback"].name, *_fields(AgentGym.encode_feedback), "event_ids")


class Prepared(NamedTuple):
    """One encoded event, ready to produce (a tuple: made twice as fast as a frozen dataclass)."""

    key: str  # the trace id
    value: bytes
    event_id: str  # the trace id (experiences) or the feedback's event id
    agent_id: str


def prepare(client: AgentGym, kind: Kind, events: list[dict[str, Any]], tenant_id: str, header_agent: str | None,
            max_event_bytes: int, batched: bool, *, masking: Callable[[str], MaskingPolicy] | None) -> list[Prepared]:
    """Validates, masks and encodes every event; raises :class:`ApiError` (with the event's index) at the first bad one.

    The events are the request's own (parsed from its body): they are changed in place.

    ``masking``: agent id -> the tenant's masking policy for that agent (None: no masking), applied
    to the event's fields before it is encoded (docs/privacy.md).
    """
    if masking is not None and kind is EXPERIENCE and len(events) > 1:
        masking = _batch_masking(events, header_agent, masking)
    out = []
    agents: set[str] = set()  # the agent ids already checked (a batch's events mostly share one)
    for i, event in enumerate(events):
        index = i if batched else None
        try:
            out.append(_one(client, kind, event, tenant_id, header_agent, max_event_bytes, masking, agents))
        except ApiError as exc:
            exc.index = index
            raise
        except InvalidIdError as exc:
            raise ApiError(400, "invalid_event", exc.field, exc.reason, index=index) from None
        except SchemaValidationError as exc:  # InvalidEventError included: names the field
            raise ApiError(400, "invalid_event", exc.field or "body", exc.reason, index=index) from None
    return out


def _batch_masking(events: list[dict[str, Any]], header_agent: str | None,
                   masking: Callable[[str], MaskingPolicy]) -> Callable[[str], MaskingPolicy] | None:
    """None when no event of a batch needs masking, by one pre-check over all their texts (~4 us less per
    event than one pre-check each); else ``masking`` (each event masked on its own, as a single one is)."""
    agents = {e.get("agent_id") or header_agent for e in events}
    if len(agents) > 8 or not all(type(a) is str for a in agents):
        return masking  # many agents: one policy each is likely; a missing agent is reported by _one
    policies = {id(p): p for p in map(masking, agents)}  # type: ignore[arg-type]
    if len(policies) == 1 and next(iter(policies.values())).clean_experiences(events):
        return None
    return masking


def _one(client: AgentGym, kind: Kind, event: dict[str, Any], tenant_id: str, header_agent: str | None,
         max_event_bytes: int, masking: Callable[[str], MaskingPolicy] | None = None, agents: set[str] | None = None) -> Prepared:
    named = event.pop("tenant_id", None)
    if named is not None and named != tenant_id:
        raise ApiError(403, "forbidden_tenant", "tenant_id", "names another tenant than the API key's")
    agent_id = event.pop("agent_id", None) or header_agent or _missing("agent_id", "(or the X-AgentGym-Agent header)")
    if agents is None or type(agent_id) is not str or agent_id not in agents:
        check_id("agent_id", agent_id)
        if agents is not None:
            agents.add(agent_id)
    if not event.keys() <= kind.fields:  # (the comparisons cost half of the set differences, which name the field)
        field = sorted(event.keys() - kind.fields)[0]
        raise ApiError(400, "invalid_event", field, f"unknown field for {kind.record}; known: {', '.join(sorted(kind.fields))}")
    if not event.keys() >= kind.required:
        _missing(sorted(kind.required - event.keys())[0])
    for name in ("trace_id", "event_id"):
        if name in event and event[name] is not None:
            check_id(name, event[name])
    if masking is not None:  # the body's fields carry the record's names (input, output, steps, error, comment, ...)
        policy = masking(agent_id)
        (policy.mask_feedback if kind is FEEDBACK else policy.mask_experience)(event)
    try:
        if kind is FEEDBACK:
            trace_id = event.pop("trace_id")
            event_id, value = client.encode_feedback(trace_id, tenant_id=tenant_id, agent_id=agent_id, **event)
        else:
            event_id, value = client.encode_experience_fields(event, tenant_id=tenant_id, agent_id=agent_id)
            trace_id = event_id
    except (TypeError, AttributeError, KeyError) as exc:  # a value of a shape the SDK's normaliser does not take
        raise ApiError(400, "invalid_event", "body", f"a field has the wrong shape: {exc}") from None
    size = len(value) + len(trace_id)
    if size > max_event_bytes:
        raise ApiError(413, "too_large", "event", f"the encoded event is {size} bytes; at most {max_event_bytes}")
    return Prepared(trace_id, value, event_id, agent_id)


def _missing(field: str, hint: str = "") -> Any:
    raise ApiError(400, "invalid_event", field, f"is missing {hint}".strip())
