"""``AgentGym.run(...)``: a context manager that records one agent run."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from agentgym.producers.exceptions import InvalidEventError

if TYPE_CHECKING:
    from agentgym.producers.client import AgentGym

__all__ = ["Run", "Step"]

_STEP_KINDS = frozenset({"llm", "tool", "retrieval", "other"})


def _json_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    try:
        return json.dumps(value, default=str, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


class Step:
    """One llm/tool/retrieval call inside a run; a context manager that times itself.

    Set ``output`` (any JSON-serialisable value), ``prompt_tokens`` and
    ``completion_tokens`` inside the ``with`` block; an exception is recorded as the
    step's ``error`` and re-raised.
    """

    def __init__(self, run: "Run", name: str, kind: str, input: Any) -> None:
        if kind not in _STEP_KINDS:
            raise InvalidEventError("Experience", "steps.kind", f"{kind!r} is not one of {sorted(_STEP_KINDS)}")
        self._run = run
        self.name = name
        self.kind = kind
        self.input = input
        self.output: Any = None
        self.error: str | None = None
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self._t0 = 0.0
        self.latency_ms = 0.0

    def __enter__(self) -> "Step":
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.latency_ms = (time.perf_counter() - self._t0) * 1000.0
        if exc is not None:
            self.error = f"{exc_type.__name__}: {exc}"
        self._run.steps.append({
            "name": self.name, "kind": self.kind, "input": self.input, "output": self.output,
            "error": self.error, "latency_ms": self.latency_ms,
            "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
        })


class Run:
    """A run being recorded. Created by :meth:`AgentGym.run`; records itself on exit."""

    def __init__(self, gym: "AgentGym", *, input: Any, model_name: str, model_version: str, trace_id: str, fields: dict[str, Any]) -> None:
        self._gym = gym
        self.trace_id = trace_id
        self.input = input
        self.model_name = model_name
        self.model_version = model_version
        self.fields = fields
        self.output: str | None = None
        self.steps: list[dict[str, Any]] = []
        self.prompt_tokens: int | None = fields.pop("prompt_tokens", None)
        self.completion_tokens: int | None = fields.pop("completion_tokens", None)
        self.cost_usd: float = fields.pop("cost_usd", 0.0)
        self.metadata: dict[str, Any] = dict(fields.pop("metadata", None) or {})
        self._t0 = 0.0

    @staticmethod
    def step_record(step: Mapping[str, Any], index: int) -> dict[str, Any]:
        """A step as the Experience schema holds it."""
        if not isinstance(step, Mapping):
            raise InvalidEventError("Experience", f"steps[{index}]", f"expected a mapping, got {type(step).__name__}")
        if "name" not in step:
            raise InvalidEventError("Experience", f"steps[{index}].name", "is missing")
        kind = step.get("kind", "other")
        if kind not in _STEP_KINDS:
            raise InvalidEventError("Experience", f"steps[{index}].kind", f"{kind!r} is not one of {sorted(_STEP_KINDS)}")
        return {
            "step_id": str(step.get("step_id") or index),
            "kind": kind,
            "name": str(step["name"]),
            "input": _json_text(step.get("input")),
            "output": _json_text(step.get("output")),
            "error": step.get("error"),
            "latency_ms": float(step.get("latency_ms") or 0.0),
            "prompt_tokens": int(step.get("prompt_tokens") or 0),
            "completion_tokens": int(step.get("completion_tokens") or 0),
        }

    def step(self, name: str, kind: str = "tool", input: Any = None) -> Step:
        """A timed step: ``with run.step("search", kind="tool", input=q) as s: s.output = ...``."""
        return Step(self, name, kind, input)

    def add_step(self, name: str, kind: str = "other", **fields: Any) -> None:
        """Adds an already finished step (``input``, ``output``, ``error``, ``latency_ms``, tokens)."""
        self.steps.append({"name": name, "kind": kind, **fields})

    def __enter__(self) -> "Run":
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        latency_ms = (time.perf_counter() - self._t0) * 1000.0
        status, error = "ok", None
        if exc is not None:
            status = "timeout" if isinstance(exc, TimeoutError) else "error"
            error = f"{exc_type.__name__}: {exc}"
        pt = self.prompt_tokens if self.prompt_tokens is not None else sum(int(s.get("prompt_tokens") or 0) for s in self.steps)
        ct = self.completion_tokens if self.completion_tokens is not None else sum(int(s.get("completion_tokens") or 0) for s in self.steps)
        self._gym.record_experience(
            input=self.input, output=None if self.output is None else str(self.output),
            model_name=self.model_name, model_version=self.model_version, latency_ms=latency_ms,
            trace_id=self.trace_id, steps=[Run.step_record(s, i) for i, s in enumerate(self.steps)], prompt_tokens=pt, completion_tokens=ct,
            cost_usd=self.cost_usd, status=status, error=error, metadata=self.metadata, **self.fields,
        )
        # never swallow the agent's exception
