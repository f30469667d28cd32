"""Record every chat completion of an OpenAI-style client as an Agent Gym Experience.

    from openai import OpenAI
    from agentgym import AgentGym
    from agentgym.producers.integrations.openai import wrap_openai

    gym = AgentGym(tenant_id="acme", agent_id="support-bot")
    client = wrap_openai(OpenAI(), gym, model_version="prompt-v3")
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=[...],
                                           agentgym_metadata={"route": "faq"})
    gym.record_feedback(client.last_trace_id, thumbs_up=True)

Works with ``openai.OpenAI`` and ``openai.AsyncOpenAI`` and with any client shaped like
them (``client.chat.completions.create(**kwargs)`` returning a chat completion, or a
chunk stream when ``stream=True``). The ``openai`` package itself is optional here.

What is recorded, per call of ``chat.completions.create`` or ``chat.completions.parse``:

* ``input``: the ``messages`` argument (an assistant message that carries only tool
  calls is recorded with the JSON list of its tool calls as content);
* ``output``: the first choice's message content (``None`` when it only calls tools);
* ``steps``: one step of kind ``tool`` per tool call of the first choice, with the
  call id as ``step_id``, the function name as ``name`` and its JSON arguments as
  ``input`` (the agent executes the tool, not this call, so ``output`` is empty);
* ``model_name``: the ``model`` argument (the served snapshot, ``response.model``, goes
  to ``metadata["response_model"]`` when it differs); ``model_version``: the argument
  of :func:`wrap_openai`, by default the model name;
* ``latency_ms`` (until the last chunk, for a stream), ``prompt_tokens`` and
  ``completion_tokens`` from ``usage``;
* ``status`` ``error`` (``timeout`` for a timeout) and the error text when the call
  raises; the exception is re-raised unchanged.

Extra keyword arguments, stripped before the real client is called:
``agentgym_trace_id`` (default: a fresh id), ``agentgym_metadata`` (string key/values),
``agentgym_session_id`` and ``agentgym_user_id``.

Streams (``stream=True``) are recorded once consumed: when the last chunk has been
read, when iteration fails, or when the stream is closed (or collected) early, then
with the text received so far and status ``cancelled`` unless a ``finish_reason``
was seen. Token counts of a stream come only from its final usage chunk, which the
API sends only with ``stream_options={"include_usage": True}``; the wrapper does not
add that option itself (it would change the chunks the agent sees).

Not recorded, passed through unchanged: ``with_raw_response`` / ``with_streaming_response``
variants, the ``chat.completions.stream(...)`` helper, and every other endpoint.

Recording never breaks the agent: a failure to record is logged (logger
``agentgym.integrations``) and the response is returned as usual. Only the agent's own
misuse raises, before the request is sent: an unknown ``agentgym_*`` argument or one of
the wrong type (:class:`agentgym.producers.InvalidEventError`).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Any

from agentgym.producers.exceptions import ConfigError, InvalidEventError
from agentgym.producers.integrations._common import (
    ExperienceSink,
    assignment_record,
    content_text,
    error_text,
    json_text,
    log,
    message,
    new_trace_id,
    record_safely,
    status_of,
    string_map,
)

__all__ = ["wrap_openai", "AgentGymOpenAI"]

_EXTRA_KWARGS = frozenset({"agentgym_trace_id", "agentgym_metadata", "agentgym_session_id", "agentgym_user_id"})
_RECORDED_METHODS = frozenset({"create", "parse"})
_CLIENT_FACTORIES = frozenset({"with_options", "copy"})  # return a new client: keep it wrapped


def _get(obj: Any, name: str, default: Any = None) -> Any:
    """An attribute of an OpenAI object, or a key of the same object given as a dict."""
    if obj is None:
        return default
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _input_messages(messages: Any) -> list[dict[str, Any]]:
    if isinstance(messages, (str, Mapping)) or not isinstance(messages, Iterable):
        return [message("user", messages)] if messages is not None else []
    return [
        message(_get(m, "role", "user"), _get(m, "content"), name=_get(m, "name"),
                tool_call_id=_get(m, "tool_call_id"), tool_calls=_get(m, "tool_calls") or _call_list(_get(m, "function_call")))
        for m in messages
    ]


def _call_list(function_call: Any) -> list[Any]:
    return [function_call] if function_call else []


def _tool_steps(tool_calls: Iterable[Any], function_call: Any = None) -> list[dict[str, Any]]:
    steps = []
    for call in tool_calls or ():
        fn = _get(call, "function") or _get(call, "custom")
        steps.append({
            "step_id": _get(call, "id"), "kind": "tool", "name": _get(fn, "name") or "tool",
            "input": json_text(_get(fn, "arguments", _get(fn, "input"))),
        })
    if function_call:  # the legacy single function call
        steps.append({"kind": "tool", "name": _get(function_call, "name") or "function",
                      "input": json_text(_get(function_call, "arguments"))})
    return steps


class _Recorder:
    """What every wrapped object of one :func:`wrap_openai` call shares."""

    def __init__(self, gym: ExperienceSink, model_version: str | None, metadata: dict[str, str],
                 session_id: str | None, user_id: str | None, assignment: dict[str, str] | None) -> None:
        self.gym = gym
        self.model_version = model_version
        self.metadata = metadata
        self.session_id = session_id
        self.user_id = user_id
        self.assignment = assignment
        self.last_trace_id: str | None = None


class _Call:
    """One chat completion call being recorded; records exactly once."""

    def __init__(self, recorder: _Recorder, kwargs: dict[str, Any]) -> None:
        unknown = sorted(k for k in kwargs if k.startswith("agentgym_") and k not in _EXTRA_KWARGS)
        if unknown:
            raise InvalidEventError("Experience", unknown[0], f"unknown argument; known ones: {sorted(_EXTRA_KWARGS)}")
        trace_id = kwargs.pop("agentgym_trace_id", None)
        if trace_id is not None and (not isinstance(trace_id, str) or not trace_id):
            raise InvalidEventError("Experience", "agentgym_trace_id", "must be a non-empty string")
        self.metadata = {**recorder.metadata, **string_map(kwargs.pop("agentgym_metadata", None), "agentgym_metadata")}
        self.session_id = self._str_arg(kwargs, "agentgym_session_id", recorder.session_id)
        self.user_id = self._str_arg(kwargs, "agentgym_user_id", recorder.user_id)
        messages = kwargs.get("messages")
        if isinstance(messages, Iterator):  # a one-shot iterator: read it once, for both of us
            messages = kwargs["messages"] = list(messages)
        try:  # a snapshot: the agent may append to its list before a stream is recorded
            self.input = _input_messages(messages)
        except Exception:
            log.warning("agentgym: could not read the messages of a chat completion", exc_info=True)
            self.input = []
        self.kwargs = kwargs  # what the real client gets: the agentgym_* arguments removed
        self.recorder = recorder
        self.trace_id = trace_id or new_trace_id()
        recorder.last_trace_id = self.trace_id
        self.timestamp_ms = time.time_ns() // 1_000_000
        self.t0 = time.perf_counter()
        self.done = False

    @staticmethod
    def _str_arg(kwargs: dict[str, Any], key: str, default: str | None) -> str | None:
        value = kwargs.pop(key, None)
        if value is not None and not isinstance(value, str):
            raise InvalidEventError("Experience", key, f"expected a string, got {type(value).__name__}")
        return value if value is not None else default

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.t0) * 1000.0

    # -- outcomes ----------------------------------------------------------------
    def response(self, response: Any) -> None:
        """Records a complete (non-streamed) chat completion."""
        try:
            choices = _get(response, "choices") or []
            first = choices[0] if choices else None
            msg = _get(first, "message")
            content = _get(msg, "content")
            usage = _get(response, "usage")
            extra = {"finish_reason": _get(first, "finish_reason"), "refusal": _get(msg, "refusal")}
            self._record(
                output=None if content is None else content_text(content),
                steps=_tool_steps(_get(msg, "tool_calls") or (), _get(msg, "function_call")),
                response_model=_get(response, "model"), response_id=_get(response, "id"),
                prompt_tokens=_int(_get(usage, "prompt_tokens")), completion_tokens=_int(_get(usage, "completion_tokens")),
                extra=extra,
            )
        except Exception:
            log.warning("agentgym: could not read the chat completion of %s", self.trace_id, exc_info=True)

    def stream_end(self, acc: "_StreamAccumulator", exc: BaseException | None = None, closed_early: bool = False) -> None:
        """Records a stream that ended: exhausted, failed, or closed before its end."""
        try:
            status = error = None
            if exc is not None:
                status, error = status_of(exc), error_text(exc)
            elif closed_early and acc.finish_reason is None:
                status = "cancelled"
            extra: dict[str, Any] = {"finish_reason": acc.finish_reason, "stream": "true",
                                     "ttft_ms": None if acc.ttft_ms is None else f"{acc.ttft_ms:.1f}"}
            self._record(
                # as for a complete response: no text, only tool calls -> no output
                output="".join(acc.text) if acc.text or (acc.finish_reason and not acc.tool_calls) else None,
                steps=_tool_steps(acc.tool_calls[i] for i in sorted(acc.tool_calls)),
                response_model=acc.model, response_id=acc.id,
                prompt_tokens=acc.prompt_tokens, completion_tokens=acc.completion_tokens,
                extra=extra, status=status, error=error,
            )
        except Exception:
            log.warning("agentgym: could not record the stream of %s", self.trace_id, exc_info=True)

    def failure(self, exc: BaseException) -> None:
        """Records a call that raised."""
        try:
            self._record(output=None, steps=[], status=status_of(exc), error=error_text(exc))
        except Exception:
            log.warning("agentgym: could not record the failed call %s", self.trace_id, exc_info=True)

    def _record(self, *, output: str | None, steps: list[dict[str, Any]], response_model: Any = None,
                response_id: Any = None, prompt_tokens: int = 0, completion_tokens: int = 0,
                extra: Mapping[str, Any] | None = None, status: str | None = None, error: str | None = None) -> None:
        if self.done:
            return
        self.done = True
        latency_ms = self.elapsed_ms()
        requested = self.kwargs.get("model")
        model_name = str(requested or response_model or "unknown")
        metadata = dict(self.metadata)
        for key, value in (extra or {}).items():
            if value is not None:
                metadata.setdefault(key, str(value))
        if response_model and str(response_model) != model_name:
            metadata.setdefault("response_model", str(response_model))
        if response_id:
            metadata.setdefault("response_id", str(response_id))
        record_safely(
            self.recorder.gym,
            input=self.input, output=output,
            model_name=model_name, model_version=self.recorder.model_version or model_name,
            latency_ms=latency_ms, trace_id=self.trace_id, steps=steps,
            prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
            status=status or "ok", error=error, session_id=self.session_id, user_id=self.user_id,
            assignment=self.recorder.assignment, metadata=metadata, timestamp_ms=self.timestamp_ms,
        )


class _StreamAccumulator:
    """Folds chat completion chunks into the text, tool calls and usage they carry."""

    def __init__(self, call: _Call) -> None:
        self._call = call
        self.text: list[str] = []
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.finish_reason: str | None = None
        self.model: str | None = None
        self.id: str | None = None
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.ttft_ms: float | None = None

    def add(self, chunk: Any) -> None:
        try:
            self.model = _get(chunk, "model") or self.model
            self.id = _get(chunk, "id") or self.id
            usage = _get(chunk, "usage")
            if usage:
                self.prompt_tokens = _int(_get(usage, "prompt_tokens"))
                self.completion_tokens = _int(_get(usage, "completion_tokens"))
            for choice in _get(chunk, "choices") or ():
                if _int(_get(choice, "index")) != 0:
                    continue  # the first choice only, as for a complete response
                delta = _get(choice, "delta")
                piece = _get(delta, "content")
                if piece:
                    if self.ttft_ms is None:
                        self.ttft_ms = self._call.elapsed_ms()
                    self.text.append(piece if isinstance(piece, str) else content_text(piece))
                for tc in _get(delta, "tool_calls") or ():
                    slot = self.tool_calls.setdefault(_int(_get(tc, "index")), {"id": None, "function": {"name": None, "arguments": ""}})
                    slot["id"] = _get(tc, "id") or slot["id"]
                    fn = _get(tc, "function")
                    slot["function"]["name"] = _get(fn, "name") or slot["function"]["name"]
                    slot["function"]["arguments"] += _get(fn, "arguments") or ""
                self.finish_reason = _get(choice, "finish_reason") or self.finish_reason
        except Exception:
            log.warning("agentgym: could not read a stream chunk of %s", self._call.trace_id, exc_info=True)


class _RecordingStream:
    """A chunk stream that records its call once consumed; otherwise the stream itself."""

    def __init__(self, stream: Any, call: _Call) -> None:
        self._stream = stream
        self._iterator: Iterator[Any] | None = None
        self._call = call
        self._acc = _StreamAccumulator(call)

    def __iter__(self) -> "_RecordingStream":
        return self

    def __next__(self) -> Any:
        if self._iterator is None:
            self._iterator = iter(self._stream)
        try:
            chunk = next(self._iterator)
        except StopIteration:
            self._call.stream_end(self._acc)
            raise
        except BaseException as exc:
            self._call.stream_end(self._acc, exc)
            raise
        self._acc.add(chunk)
        return chunk

    def close(self) -> None:
        """Closes the underlying stream; a stream closed before its end is recorded as such."""
        try:
            close = getattr(self._stream, "close", None)
            if callable(close):
                close()
        finally:
            self._call.stream_end(self._acc, closed_early=True)

    def __enter__(self) -> "_RecordingStream":
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:  # a stream dropped half-read: record what it gave (no-op if already recorded)
            if not self._call.done:
                self._call.stream_end(self._acc, closed_early=True)
        except BaseException:
            pass

    def __getattr__(self, name: str) -> Any:
        return _forward(self, "_stream", name)


class _RecordingAsyncStream:
    """The asynchronous counterpart of :class:`_RecordingStream`."""

    def __init__(self, stream: Any, call: _Call) -> None:
        self._stream = stream
        self._iterator: AsyncIterator[Any] | None = None
        self._call = call
        self._acc = _StreamAccumulator(call)

    def __aiter__(self) -> "_RecordingAsyncStream":
        return self

    async def __anext__(self) -> Any:
        if self._iterator is None:
            self._iterator = self._stream.__aiter__()
        try:
            chunk = await self._iterator.__anext__()
        except StopAsyncIteration:
            self._call.stream_end(self._acc)
            raise
        except BaseException as exc:
            self._call.stream_end(self._acc, exc)
            raise
        self._acc.add(chunk)
        return chunk

    async def close(self) -> None:
        """Closes the underlying stream; a stream closed before its end is recorded as such."""
        try:
            close = getattr(self._stream, "close", None)
            if callable(close):
                result = close()
                if inspect.isawaitable(result):
                    await result
        finally:
            self._call.stream_end(self._acc, closed_early=True)

    async def __aenter__(self) -> "_RecordingAsyncStream":
        return self

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        await self.close()

    def __del__(self) -> None:
        try:
            if not self._call.done:
                self._call.stream_end(self._acc, closed_early=True)
        except BaseException:
            pass

    def __getattr__(self, name: str) -> Any:
        return _forward(self, "_stream", name)


def _is_stream(result: Any, kwargs: Mapping[str, Any]) -> bool:
    return bool(kwargs.get("stream")) and _get(result, "choices") is None and (hasattr(result, "__next__") or hasattr(result, "__iter__"))


def _is_async_stream(result: Any, kwargs: Mapping[str, Any]) -> bool:
    return bool(kwargs.get("stream")) and _get(result, "choices") is None and hasattr(result, "__aiter__")


def _forward(obj: object, slot: str, name: str) -> Any:
    # through __dict__: a half-built object (in __del__, copy, pickle) must not recurse
    try:
        target = obj.__dict__[slot]
    except KeyError:
        raise AttributeError(name) from None
    return getattr(target, name)


class _Proxy:
    """Passes every attribute it does not define through to the wrapped object."""

    def __init__(self, target: Any, recorder: _Recorder) -> None:
        self._target = target
        self._recorder = recorder

    def __getattr__(self, name: str) -> Any:
        return _forward(self, "_target", name)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self._target!r}>"


class _Completions(_Proxy):
    """``client.chat.completions`` with ``create`` and ``parse`` recorded."""

    def __getattr__(self, name: str) -> Any:
        attr = _forward(self, "_target", name)
        if name in _RECORDED_METHODS and callable(attr):
            return self._recorded(attr)
        return attr

    def create(self, *args: Any, **kwargs: Any) -> Any:
        """``chat.completions.create(...)``, recorded; accepts the ``agentgym_*`` arguments."""
        return self._recorded(self._target.create)(*args, **kwargs)

    def _recorded(self, method: Callable[..., Any]) -> Callable[..., Any]:
        recorder = self._recorder

        def call(*args: Any, **kwargs: Any) -> Any:
            rec = _Call(recorder, kwargs)  # may raise InvalidEventError: the agent's misuse
            try:
                result = method(*args, **rec.kwargs)
            except BaseException as exc:
                rec.failure(exc)
                raise
            if inspect.isawaitable(result):
                return _finish_async(rec, result)
            if _is_stream(result, rec.kwargs):
                return _RecordingStream(result, rec)
            rec.response(result)
            return result

        call.__name__ = getattr(method, "__name__", "create")
        call.__doc__ = getattr(method, "__doc__", None)
        return call


async def _finish_async(rec: _Call, awaitable: Awaitable[Any]) -> Any:
    try:
        result = await awaitable
    except BaseException as exc:
        rec.failure(exc)
        raise
    if _is_async_stream(result, rec.kwargs):
        return _RecordingAsyncStream(result, rec)
    rec.response(result)
    return result


class _Chat(_Proxy):
    """``client.chat`` whose ``completions`` are recorded."""

    @property
    def completions(self) -> _Completions:
        return _Completions(self._target.completions, self._recorder)


class AgentGymOpenAI(_Proxy):
    """An OpenAI-style client whose chat completions are recorded; made by :func:`wrap_openai`.

    Every attribute other than ``chat`` is the wrapped client's own; ``with_options``
    and ``copy`` return a wrapped client too. The wrapped client is ``wrapped_client``.
    """

    @property
    def chat(self) -> _Chat:
        """``client.chat``, whose ``completions.create`` / ``completions.parse`` are recorded."""
        return _Chat(self._target.chat, self._recorder)

    @property
    def wrapped_client(self) -> Any:
        """The client this wraps."""
        return self._target

    @property
    def last_trace_id(self) -> str | None:
        """Trace id of the most recent recorded call (set when the call starts).

        With concurrent calls, pass ``agentgym_trace_id=`` instead of reading this.
        """
        return self._recorder.last_trace_id

    def __getattr__(self, name: str) -> Any:
        attr = _forward(self, "_target", name)
        if name in _CLIENT_FACTORIES and callable(attr):
            recorder = self._recorder

            def factory(*args: Any, **kwargs: Any) -> AgentGymOpenAI:
                return AgentGymOpenAI(attr(*args, **kwargs), recorder)

            return factory
        return attr


def wrap_openai(
    client: Any,
    gym: ExperienceSink,
    *,
    model_version: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    session_id: str | None = None,
    user_id: str | None = None,
    assignment: Mapping[str, str] | None = None,
) -> AgentGymOpenAI:
    """Wraps ``client`` so that each chat completion is recorded to ``gym`` as an Experience.

    Args:
        client: an ``openai.OpenAI`` / ``openai.AsyncOpenAI`` client, or anything with
            ``client.chat.completions.create(**kwargs)``.
        gym: the :class:`agentgym.producers.AgentGym` client to record to.
        model_version: the ``model_version`` of every Experience; default ``None``:
            the model name of each call.
        metadata: string key/values added to every Experience (per-call
            ``agentgym_metadata`` wins on a clash); default none.
        session_id / user_id: recorded on every Experience unless a call passes
            ``agentgym_session_id`` / ``agentgym_user_id``; default ``None``.
        assignment: the experiment variant serving this client (``experiment_id``,
            ``variant``, ``unit_type``, ``unit_id``); default ``None``.

    Returns:
        The wrapped client: use it exactly like ``client``.

    Raises:
        TypeError: ``client`` has no ``chat.completions.create`` or ``gym`` no
            ``record_experience``.
        ConfigError: ``model_version`` is not a non-empty string.
        InvalidEventError: naming the field, when ``metadata`` is not a mapping,
            ``session_id`` / ``user_id`` not a string or ``assignment`` malformed.
    """
    completions = getattr(getattr(client, "chat", None), "completions", None)
    if not callable(getattr(completions, "create", None)):
        raise TypeError(f"wrap_openai: {type(client).__name__} has no chat.completions.create(...)")
    if not callable(getattr(gym, "record_experience", None)):
        raise TypeError(f"wrap_openai: gym must be an AgentGym client, got {type(gym).__name__}")
    if model_version is not None and (not isinstance(model_version, str) or not model_version):
        raise ConfigError(f"wrap_openai: model_version must be a non-empty string, got {model_version!r}")
    for name, value in (("session_id", session_id), ("user_id", user_id)):
        if value is not None and not isinstance(value, str):
            raise InvalidEventError("Experience", name, f"expected a string, got {type(value).__name__}")
    recorder = _Recorder(gym, model_version, string_map(metadata, "metadata"), session_id, user_id, assignment_record(assignment))
    return AgentGymOpenAI(client, recorder)
