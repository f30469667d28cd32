"""Helpers shared by the framework integrations: message shapes and safe recording.

Imports no optional package: each integration module imports its own framework.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from agentgym.producers.exceptions import InvalidEventError
from agentgym.producers.run import Run

__all__ = [
    "ExperienceSink",
    "assignment_record",
    "content_text",
    "error_text",
    "json_text",
    "message",
    "new_trace_id",
    "record_safely",
    "status_of",
    "string_map",
]

log = logging.getLogger("agentgym.integrations")

# non-text content parts (images, audio, files) can be megabytes of base64: keep a tag only
_TEXT_PART_TYPES = frozenset({"text", "input_text", "output_text"})


class ExperienceSink(Protocol):
    """What an integration needs of :class:`agentgym.producers.AgentGym`."""

    @property
    def record_experience(self) -> Callable[..., str]:  # pragma: no cover - protocol
        """Records one run; see :meth:`agentgym.producers.AgentGym.record_experience`."""
        ...


def new_trace_id() -> str:
    """A fresh trace id: 32 lowercase hex digits, like the SDK's own."""
    return uuid.uuid4().hex


def json_text(value: Any) -> str | None:
    """``value`` as JSON text (strings and ``None`` unchanged); never raises."""
    if value is None or isinstance(value, str):
        return value
    try:
        return json.dumps(value, default=_jsonable, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        return repr(value)


def _jsonable(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)  # pydantic models: OpenAI types, LangChain messages
    if callable(dump):
        try:
            return dump(exclude_none=True)
        except Exception:
            pass
    return str(value)


def content_text(content: Any) -> str:
    """Message content as the Experience schema's string.

    A string stays as it is, ``None`` becomes ``""``, a list of content parts (OpenAI
    or LangChain style) becomes its text parts joined by newlines, with a ``[type]``
    tag in place of each non-text part (an image, audio or file).
    """
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, (list, tuple)):
        parts: list[str] = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, Mapping):
                kind = str(part.get("type", "part"))
                text = part.get("text")
                parts.append(text if kind in _TEXT_PART_TYPES and isinstance(text, str) else f"[{kind}]")
            else:
                parts.append(json_text(part) or "")
        return "\n".join(parts)
    return json_text(content) or ""


def message(role: Any, content: Any, *, name: Any = None, tool_call_id: Any = None, tool_calls: Any = None) -> dict[str, Any]:
    """One input message in the Experience schema's shape.

    The schema has no field for an assistant message's tool calls: when such a message
    has no text, its content is the JSON list of its tool calls, so nothing is lost.
    """
    text = content_text(content)
    if not text and tool_calls:
        text = json_text(list(tool_calls)) or ""
    return {
        "role": str(role or "user"),
        "content": text,
        "name": None if name is None else str(name),
        "tool_call_id": None if tool_call_id is None else str(tool_call_id),
    }


def error_text(exc: BaseException) -> str:
    """``"ExceptionType: message"``, as :class:`agentgym.producers.Run` records errors."""
    return f"{type(exc).__name__}: {exc}"


def status_of(exc: BaseException) -> str:
    """The run status an exception stands for: ``timeout``, ``cancelled`` or ``error``."""
    if isinstance(exc, TimeoutError) or "Timeout" in type(exc).__name__:  # openai.APITimeoutError, httpx timeouts
        return "timeout"
    if isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt, GeneratorExit)):
        return "cancelled"
    return "error"


def string_map(value: Any, field: str) -> dict[str, str]:
    """A metadata argument as string key/values.

    Raises:
        InvalidEventError: ``value`` is neither ``None`` nor a mapping (the agent's misuse).
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidEventError("Experience", field, f"expected a mapping, got {type(value).__name__}")
    return {str(k): v if isinstance(v, str) else str(v) for k, v in value.items()}


_ASSIGNMENT_FIELDS = ("experiment_id", "variant", "unit_type", "unit_id")
_UNIT_TYPES = frozenset({"user", "session", "trace"})


def assignment_record(value: Any, field: str = "assignment") -> dict[str, Any] | None:
    """An experiment assignment checked against the Experience schema, or ``None``.

    Raises:
        InvalidEventError: naming the field, when ``value`` is not a mapping with string
            ``experiment_id``, ``variant``, ``unit_id`` and a ``unit_type`` of
            ``user``, ``session`` or ``trace``.
    """
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidEventError("Experience", field, f"expected a mapping, got {type(value).__name__}")
    out = {}
    for key in _ASSIGNMENT_FIELDS:
        if not isinstance(value.get(key), str) or not value[key]:
            raise InvalidEventError("Experience", f"{field}.{key}", "must be a non-empty string")
        out[key] = value[key]
    if out["unit_type"] not in _UNIT_TYPES:
        raise InvalidEventError("Experience", f"{field}.unit_type", f"{out['unit_type']!r} is not one of {sorted(_UNIT_TYPES)}")
    # optional (Experience v3): the configuration version and status that served the unit
    if value.get("config_version") is not None:
        if type(value["config_version"]) is not int or value["config_version"] < 0:
            raise InvalidEventError("Experience", f"{field}.config_version", "must be an integer >= 0")
        out["config_version"] = value["config_version"]
    if value.get("experiment_status") is not None:
        if not isinstance(value["experiment_status"], str):
            raise InvalidEventError("Experience", f"{field}.experiment_status", "must be a string")
        out["experiment_status"] = value["experiment_status"]
    return out


def record_safely(gym: ExperienceSink, **fields: Any) -> str | None:
    """Calls ``gym.record_experience(**fields)``; logs and returns ``None`` on any failure.

    An integration records on the agent's call path: a failure to record must never
    surface there (the agent's own misuse is checked before the call, not here).
    Steps are handed over in the schema's shape (JSON text, every field), which lets
    the client encode them without its normalising second pass.
    """
    try:
        steps = fields.get("steps")
        if steps:
            fields["steps"] = [Run.step_record(step, i) for i, step in enumerate(steps)]
        return gym.record_experience(**fields)
    except Exception:
        log.warning("agentgym: could not record the experience %s", fields.get("trace_id"), exc_info=True)
        return None
