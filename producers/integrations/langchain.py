"""Record LangChain runs as Agent Gym Experiences: a callback handler.

    from agentgym import AgentGym
    from agentgym.producers.integrations.langchain import AgentGymCallbackHandler

    gym = AgentGym(tenant_id="acme", agent_id="support-bot")
    handler = AgentGymCallbackHandler(gym, model_version="prompt-v3")
    answer = chain.invoke({"question": q}, config={"callbacks": [handler]})
    gym.record_feedback(handler.last_trace_id, thumbs_up=True)

One Experience per top-level run, that is a chain, chat model or LLM run with no
parent this handler has seen (a run whose parent the handler was not attached to
counts as top-level too). Its ``trace_id`` is LangChain's ``run_id`` in hex, so pass
``config={"run_id": some_uuid}`` to know it before the run, or read
:attr:`AgentGymCallbackHandler.last_trace_id` after it.

What is recorded:

* ``input``: the run's input as chat messages (a string becomes one user message; a
  dict with ``messages`` gives those; a dict with a single value gives that value;
  any other dict is recorded as one user message holding its JSON);
* ``steps``, in the order they started, at any depth: every LLM / chat model call
  (kind ``llm``: the messages it got, its text and tool calls, latency, tokens when the
  result carries ``usage_metadata`` or an ``llm_output["token_usage"]``), every tool
  call (kind ``tool``: its arguments and output) and every retriever call (kind
  ``retrieval``: the query and the documents), each with its error if it failed.
  Intermediate chains are not steps. A top-level chat model run also records the
  tool calls its answer requests as ``tool`` steps, as :mod:`agentgym.producers.integrations.openai` does;
* ``output``: the run's final output as text (a message's content; from a dict, its
  single value or its ``output``/``answer``/``result``/``text`` entry; else JSON);
* ``model_name``: the handler's ``model_name``, else the first LLM call's model
  (``ls_model_name``, the ``model`` invocation parameter, or the model's class name);
  ``model_version``: the handler's, by default the model name;
* tokens summed over the LLM calls; ``latency_ms``; ``status`` ``error`` (``timeout``,
  ``cancelled``) with the error text when the run raised;
* ``metadata``: the handler's, plus the run's own config metadata (``session_id`` and
  ``user_id`` there become the Experience's fields) and its ``run_name``.

A tool or retriever invoked on its own, outside any chain or model run, is not recorded.

Recording never breaks the agent: every callback logs its own failures (logger
``agentgym.integrations``) instead of raising them into LangChain.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage, ToolMessage
from langchain_core.outputs import LLMResult

from agentgym.producers.exceptions import ConfigError
from agentgym.producers.integrations._common import (
    ExperienceSink,
    assignment_record,
    content_text,
    error_text,
    json_text,
    log,
    message,
    record_safely,
    status_of,
    string_map,
)

__all__ = ["AgentGymCallbackHandler"]

_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool", "function": "function",
          "developer": "developer", "user": "user", "assistant": "assistant",
          # message chunks (from streaming) carry their class name as type
          "HumanMessageChunk": "user", "AIMessageChunk": "assistant", "SystemMessageChunk": "system",
          "ToolMessageChunk": "tool", "FunctionMessageChunk": "function"}
_OUTPUT_KEYS = ("output", "answer", "result", "text", "content")


# -- LangChain values as Experience fields -----------------------------------------
def _role(name: Any) -> str:
    return _ROLES.get(str(name), str(name))


def _lc_message(msg: BaseMessage) -> dict[str, Any]:
    role = getattr(msg, "role", None) if msg.type in ("chat", "ChatMessageChunk") else msg.type
    return message(_role(role), msg.content, name=getattr(msg, "name", None),
                   tool_call_id=getattr(msg, "tool_call_id", None), tool_calls=getattr(msg, "tool_calls", None))


def _message_like(value: Any) -> dict[str, Any] | None:
    """One message from a BaseMessage, a ``(role, content)`` pair or a role/content dict."""
    if isinstance(value, BaseMessage):
        return _lc_message(value)
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
        return message(_role(value[0]), value[1])
    if isinstance(value, Mapping) and "content" in value and ("role" in value or "type" in value):
        return message(_role(value.get("role") or value.get("type")), value["content"], name=value.get("name"),
                       tool_call_id=value.get("tool_call_id"), tool_calls=value.get("tool_calls"))
    if isinstance(value, str):
        return message("user", value)
    return None


def _input_messages(value: Any) -> list[dict[str, Any]]:
    """A run's input as chat messages (see the module docstring)."""
    if value is None:
        return []
    one = _message_like(value)
    if one is not None:
        return [one]
    to_messages = getattr(value, "to_messages", None)  # a PromptValue
    if callable(to_messages):
        return [_lc_message(m) for m in to_messages()]
    if isinstance(value, Mapping):
        if "messages" in value:
            return _input_messages(value["messages"])
        if len(value) == 1:
            return _input_messages(next(iter(value.values())))
        return [message("user", json_text(dict(value)))]
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        converted = [_message_like(v) for v in value]
        if all(m is not None for m in converted):
            return [m for m in converted if m is not None]
    return [message("user", json_text(value))]


def _message_output(msg: BaseMessage) -> str | None:
    text = content_text(msg.content)
    return None if not text and getattr(msg, "tool_calls", None) else text


def _output_text(value: Any) -> str | None:
    """A run's output as the Experience's ``output`` (see the module docstring)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, BaseMessage):
        return _message_output(value)
    if isinstance(value, Mapping):
        if len(value) == 1:
            return _output_text(next(iter(value.values())))
        for key in _OUTPUT_KEYS:
            if key in value:
                return _output_text(value[key])
        return json_text(dict(value))
    if isinstance(value, Sequence) and value and all(isinstance(v, BaseMessage) for v in value):
        return _output_text(value[-1])  # a message list (e.g. a graph's state): its last message
    to_string = getattr(value, "to_string", None)
    if callable(to_string):
        return str(to_string())
    return json_text(value)


def _tool_call_list(msg: Any) -> list[dict[str, Any]]:
    return [{"id": tc.get("id"), "name": tc.get("name"), "args": tc.get("args")} for tc in getattr(msg, "tool_calls", None) or ()]


def _usage(response: LLMResult) -> tuple[int, int]:
    """Prompt and completion tokens of an LLM result; ``(0, 0)`` when it carries none."""
    prompt = completion = 0
    found = False
    for generations in response.generations:
        usage = getattr(getattr(generations[0], "message", None), "usage_metadata", None) if generations else None
        if usage:  # one usage per prompt: n>1 generations share their prompt's usage
            prompt += int(usage.get("input_tokens") or 0)
            completion += int(usage.get("output_tokens") or 0)
            found = True
    if not found and response.llm_output:
        usage = response.llm_output.get("token_usage") or response.llm_output.get("usage") or {}
        if isinstance(usage, Mapping):
            prompt = int(usage.get("prompt_tokens") or usage.get("input_tokens") or 0)
            completion = int(usage.get("completion_tokens") or usage.get("output_tokens") or 0)
    return prompt, completion


def _model_name(serialized: Mapping[str, Any] | None, metadata: Mapping[str, Any] | None, kwargs: Mapping[str, Any]) -> str:
    params = kwargs.get("invocation_params") or {}
    serialized = serialized or {}
    for candidate in ((metadata or {}).get("ls_model_name"), params.get("model"), params.get("model_name"),
                      params.get("model_id"), (serialized.get("kwargs") or {}).get("model"),
                      (serialized.get("kwargs") or {}).get("model_name"), kwargs.get("name"),
                      serialized.get("name"), (serialized.get("id") or [None])[-1]):
        if isinstance(candidate, str) and candidate:
            return candidate
    return "unknown"


def _run_name(serialized: Mapping[str, Any] | None, kwargs: Mapping[str, Any], default: str) -> str:
    name = kwargs.get("name") or (serialized or {}).get("name") or ((serialized or {}).get("id") or [None])[-1]
    return str(name) if name else default


@dataclass
class _Root:
    """A top-level run being recorded."""

    trace_id: str
    kind: str  # "chain" or "llm"
    name: str
    input: list[dict[str, Any]]
    metadata: dict[str, Any]
    timestamp_ms: int
    t0: float = field(default_factory=time.perf_counter)
    steps: list[dict[str, Any]] = field(default_factory=list)
    members: list[UUID] = field(default_factory=list)
    model_name: str | None = None
    output: str | None = None


class AgentGymCallbackHandler(BaseCallbackHandler):
    """A LangChain callback handler that records each top-level run as an Experience.

    Args:
        gym: the :class:`agentgym.producers.AgentGym` client to record to.
        model_version: ``model_version`` of every Experience; default ``None``: the
            model name.
        model_name: ``model_name`` of every Experience; default ``None``: the first
            LLM call's model.
        metadata: string key/values added to every Experience; default none.
        assignment: the experiment variant serving this agent (``experiment_id``,
            ``variant``, ``unit_type``, ``unit_id``); default ``None``.

    Raises:
        TypeError: ``gym`` has no ``record_experience``.
        ConfigError: ``model_version`` or ``model_name`` is not a non-empty string.
        InvalidEventError: ``metadata`` is not a mapping or ``assignment`` is malformed.
    """

    # our callbacks only hand events to the producer's queue: no need for an executor hop
    run_inline = True

    def __init__(
        self,
        gym: ExperienceSink,
        *,
        model_version: str | None = None,
        model_name: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        assignment: Mapping[str, str] | None = None,
    ) -> None:
        if not callable(getattr(gym, "record_experience", None)):
            raise TypeError(f"AgentGymCallbackHandler: gym must be an AgentGym client, got {type(gym).__name__}")
        for name, value in (("model_version", model_version), ("model_name", model_name)):
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigError(f"AgentGymCallbackHandler: {name} must be a non-empty string, got {value!r}")
        self.gym = gym
        self.model_version = model_version
        self.model_name = model_name
        self.metadata = string_map(metadata, "metadata")
        self.assignment = assignment_record(assignment)
        self.last_trace_id: str | None = None
        self._lock = threading.Lock()
        self._roots: dict[UUID, _Root] = {}
        self._root_of: dict[UUID, UUID] = {}  # every run seen -> its top-level run
        self._open_steps: dict[UUID, dict[str, Any]] = {}

    # -- bookkeeping ---------------------------------------------------------------
    def _start_root(self, run_id: UUID, kind: str, name: str, inputs: list[dict[str, Any]],
                    metadata: Mapping[str, Any] | None) -> _Root:
        root = _Root(trace_id=run_id.hex, kind=kind, name=name, input=inputs,
                     metadata={k: v for k, v in (metadata or {}).items() if not k.startswith(("ls_", "lc_"))},
                     timestamp_ms=time.time_ns() // 1_000_000)
        root.members.append(run_id)
        self._roots[run_id] = root
        self._root_of[run_id] = run_id
        return root

    def _join(self, run_id: UUID, parent_run_id: UUID | None) -> _Root | None:
        """Attaches a child run to its top-level run; ``None`` if its parent is unknown."""
        root_id = self._root_of.get(parent_run_id) if parent_run_id is not None else None
        if root_id is None:
            return None
        self._root_of[run_id] = root_id
        root = self._roots[root_id]
        root.members.append(run_id)
        return root

    def _open_step(self, root: _Root, run_id: UUID, kind: str, name: str, input: Any) -> dict[str, Any]:
        step = {"name": name, "kind": kind, "input": input, "output": None, "error": None,
                "latency_ms": 0.0, "prompt_tokens": 0, "completion_tokens": 0, "_t0": time.perf_counter()}
        root.steps.append(step)  # in start order; filled in when the call ends
        self._open_steps[run_id] = step
        return step

    def _close_step(self, run_id: UUID) -> dict[str, Any] | None:
        step = self._open_steps.pop(run_id, None)
        if step is not None:
            step["latency_ms"] = (time.perf_counter() - step.pop("_t0")) * 1000.0
        return step

    def _finish_root(self, run_id: UUID, output: str | None, exc: BaseException | None, inputs: Any = None) -> None:
        with self._lock:
            root = self._roots.pop(run_id, None)
            if root is None:
                return
            if inputs is not None:  # a streamed chain learns its whole input only at its end
                root.input = _input_messages(inputs)
            for member in root.members:
                self._root_of.pop(member, None)
                step = self._open_steps.pop(member, None)
                if step is not None:  # a call that never reported its end
                    step.pop("_t0", None)
        latency_ms = (time.perf_counter() - root.t0) * 1000.0
        self.last_trace_id = root.trace_id
        model_name = self.model_name or root.model_name or "unknown"
        run_meta = dict(root.metadata)
        session_id = run_meta.pop("session_id", None)
        user_id = run_meta.pop("user_id", None)
        steps = [{k: v for k, v in s.items() if k != "_t0"} for s in root.steps]
        record_safely(
            self.gym,
            input=root.input, output=output, model_name=model_name,
            model_version=self.model_version or model_name, latency_ms=latency_ms,
            trace_id=root.trace_id, steps=steps,
            prompt_tokens=sum(s["prompt_tokens"] for s in steps if s["kind"] == "llm"),
            completion_tokens=sum(s["completion_tokens"] for s in steps if s["kind"] == "llm"),
            status="ok" if exc is None else status_of(exc), error=None if exc is None else error_text(exc),
            session_id=session_id if isinstance(session_id, str) else None,
            user_id=user_id if isinstance(user_id, str) else None,
            assignment=self.assignment,
            metadata={**string_map(run_meta, "metadata"), "run_name": root.name, **self.metadata},
            timestamp_ms=root.timestamp_ms,
        )

    # -- chains --------------------------------------------------------------------
    def on_chain_start(self, serialized: dict[str, Any] | None, inputs: Any, *, run_id: UUID,
                       parent_run_id: UUID | None = None, tags: list[str] | None = None,
                       metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
        """Starts a top-level run, or attaches a nested chain to its top-level run."""
        try:
            with self._lock:
                if self._join(run_id, parent_run_id) is None:
                    self._start_root(run_id, "chain", _run_name(serialized, kwargs, "chain"), _input_messages(inputs), metadata)
        except Exception:
            log.warning("agentgym: on_chain_start failed", exc_info=True)

    def on_chain_end(self, outputs: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        """Records a top-level chain run that finished."""
        try:
            if run_id in self._roots:
                self._finish_root(run_id, _output_text(outputs), None, kwargs.get("inputs"))
        except Exception:
            log.warning("agentgym: on_chain_end failed", exc_info=True)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        """Records a top-level chain run that raised."""
        try:
            if run_id in self._roots:
                self._finish_root(run_id, None, error, kwargs.get("inputs"))
        except Exception:
            log.warning("agentgym: on_chain_error failed", exc_info=True)

    # -- LLMs and chat models --------------------------------------------------------
    def _llm_start(self, serialized: dict[str, Any] | None, prompt: list[dict[str, Any]], step_input: Any, run_id: UUID,
                   parent_run_id: UUID | None, metadata: dict[str, Any] | None, kwargs: dict[str, Any]) -> None:
        model = _model_name(serialized, metadata, kwargs)
        with self._lock:
            root = self._join(run_id, parent_run_id)
            if root is None:
                root = self._start_root(run_id, "llm", _run_name(serialized, kwargs, model), prompt, metadata)
            if root.model_name is None:
                root.model_name = model
            self._open_step(root, run_id, "llm", model, step_input)

    def on_chat_model_start(self, serialized: dict[str, Any] | None, messages: list[list[BaseMessage]], *, run_id: UUID,
                            parent_run_id: UUID | None = None, tags: list[str] | None = None,
                            metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
        """Opens an ``llm`` step (and a top-level run when the model runs on its own)."""
        try:
            prompts = [[_lc_message(m) for m in batch] for batch in messages]
            first = prompts[0] if prompts else []
            self._llm_start(serialized, first, first if len(prompts) == 1 else prompts, run_id, parent_run_id, metadata, kwargs)
        except Exception:
            log.warning("agentgym: on_chat_model_start failed", exc_info=True)

    def on_llm_start(self, serialized: dict[str, Any] | None, prompts: list[str], *, run_id: UUID,
                     parent_run_id: UUID | None = None, tags: list[str] | None = None,
                     metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
        """Opens an ``llm`` step for a text-completion model."""
        try:
            first = [message("user", prompts[0])] if prompts else []
            self._llm_start(serialized, first, prompts[0] if len(prompts) == 1 else prompts, run_id, parent_run_id, metadata, kwargs)
        except Exception:
            log.warning("agentgym: on_llm_start failed", exc_info=True)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        """Closes an ``llm`` step with its text, tool calls and tokens."""
        try:
            first = response.generations[0][0] if response.generations and response.generations[0] else None
            msg = getattr(first, "message", None)
            text = _message_output(msg) if msg is not None else getattr(first, "text", None)
            tool_calls = _tool_call_list(msg)
            with self._lock:
                step = self._close_step(run_id)
                if step is not None:
                    step["output"] = {"content": text, "tool_calls": tool_calls} if tool_calls else text
                    step["prompt_tokens"], step["completion_tokens"] = _usage(response)
                root = self._roots.get(run_id)
                if root is not None and tool_calls:  # a model run on its own: its requested tool calls
                    root.steps.extend({"step_id": tc["id"], "kind": "tool", "name": tc["name"] or "tool", "input": tc["args"]}
                                      for tc in tool_calls)
            if root is not None:
                self._finish_root(run_id, text, None)
        except Exception:
            log.warning("agentgym: on_llm_end failed", exc_info=True)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        """Closes an ``llm`` step with its error."""
        try:
            with self._lock:
                step = self._close_step(run_id)
                if step is not None:
                    step["error"] = error_text(error)
            if run_id in self._roots:
                self._finish_root(run_id, None, error)
        except Exception:
            log.warning("agentgym: on_llm_error failed", exc_info=True)

    # -- tools -------------------------------------------------------------------------
    def on_tool_start(self, serialized: dict[str, Any] | None, input_str: str, *, run_id: UUID,
                      parent_run_id: UUID | None = None, tags: list[str] | None = None,
                      metadata: dict[str, Any] | None = None, inputs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        """Opens a ``tool`` step with the tool's arguments."""
        try:
            with self._lock:
                root = self._join(run_id, parent_run_id)
                if root is not None:
                    step = self._open_step(root, run_id, "tool", _run_name(serialized, kwargs, "tool"),
                                           inputs if inputs is not None else input_str)
                    if kwargs.get("tool_call_id"):
                        step["step_id"] = str(kwargs["tool_call_id"])
        except Exception:
            log.warning("agentgym: on_tool_start failed", exc_info=True)

    def on_tool_end(self, output: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        """Closes a ``tool`` step with the tool's output."""
        try:
            with self._lock:
                step = self._close_step(run_id)
                if step is not None:
                    if isinstance(output, ToolMessage):
                        step["output"] = content_text(output.content)
                        if output.status == "error":  # a tool error handled into a message
                            step["error"] = step["output"]
                    else:
                        step["output"] = output.content if isinstance(output, BaseMessage) else output
        except Exception:
            log.warning("agentgym: on_tool_end failed", exc_info=True)

    def on_tool_error(self, error: BaseException, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        """Closes a ``tool`` step with its error."""
        self._fail_step(run_id, error, "on_tool_error")

    # -- retrievers --------------------------------------------------------------------
    def on_retriever_start(self, serialized: dict[str, Any] | None, query: str, *, run_id: UUID,
                           parent_run_id: UUID | None = None, tags: list[str] | None = None,
                           metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
        """Opens a ``retrieval`` step with the query."""
        try:
            with self._lock:
                root = self._join(run_id, parent_run_id)
                if root is not None:
                    self._open_step(root, run_id, "retrieval", _run_name(serialized, kwargs, "retriever"), query)
        except Exception:
            log.warning("agentgym: on_retriever_start failed", exc_info=True)

    def on_retriever_end(self, documents: Sequence[Any], *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        """Closes a ``retrieval`` step with the documents (content and metadata)."""
        try:
            with self._lock:
                step = self._close_step(run_id)
                if step is not None:
                    step["output"] = [{"page_content": getattr(d, "page_content", str(d)), "metadata": getattr(d, "metadata", {})}
                                      for d in documents]
        except Exception:
            log.warning("agentgym: on_retriever_end failed", exc_info=True)

    def on_retriever_error(self, error: BaseException, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        """Closes a ``retrieval`` step with its error."""
        self._fail_step(run_id, error, "on_retriever_error")

    def _fail_step(self, run_id: UUID, error: BaseException, where: str) -> None:
        try:
            with self._lock:
                step = self._close_step(run_id)
                if step is not None:
                    step["error"] = error_text(error)
        except Exception:
            log.warning("agentgym: %s failed", where, exc_info=True)
