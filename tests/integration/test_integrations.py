"""The OpenAI and LangChain integrations, end to end through the real broker.

The OpenAI client is the real ``openai`` package talking to an ``httpx.MockTransport``
that serves canned chat completions (no network); LangChain runs use the fake chat
models shipped with ``langchain_core``. Every Experience is read back from
``gym-experiences-v1`` and decoded.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.language_models.fake_chat_models import (
    FakeListChatModel,
    GenericFakeChatModel,
    ParrotFakeChatModel,
)
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.outputs import ChatResult
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool
from pydantic import BaseModel

from agentgym import AgentGym, ConfigError, InvalidEventError
from agentgym.producers.integrations.langchain import AgentGymCallbackHandler
from agentgym.producers.integrations.openai import AgentGymOpenAI, wrap_openai
from agentgym.schemas.topics import TOPICS
from tests.kafka_utils import consume_all, decode_all

pytestmark = pytest.mark.integration

EXPERIENCES = TOPICS["experiences"].name


# -- fixtures and helpers -----------------------------------------------------------
@pytest.fixture
def gym(bootstrap: str, unique: str, tmp_path: Path) -> Iterator[AgentGym]:
    client = AgentGym(bootstrap, tenant_id=f"t-{unique}", agent_id="a", spool_dir=tmp_path / "spool")
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def recorded(gym: AgentGym, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Trace ids ``gym`` was asked to record, in order; the events still go to Kafka."""
    calls: list[str] = []
    real = gym.record_experience

    def spy(**fields: Any) -> str:
        trace_id = real(**fields)
        calls.append(trace_id)
        return trace_id

    monkeypatch.setattr(gym, "record_experience", spy)
    return calls


def read_back(bootstrap: str, gym: AgentGym, *trace_ids: str) -> dict[str, dict[str, Any]]:
    """Closes ``gym`` and returns the Experiences of ``trace_ids`` read from Kafka, by trace id."""
    gym.close()
    keys = {t.encode() for t in trace_ids}
    records = decode_all(consume_all(bootstrap, EXPERIENCES, len(keys), match=lambda m: m.key() in keys))
    assert sorted(r["trace_id"] for r in records) == sorted(set(trace_ids)), "each run recorded exactly once"
    for r in records:
        assert r["tenant_id"] == gym.tenant_id and r["agent_id"] == "a"
    return {r["trace_id"]: r for r in records}


def msg(role: str, content: str, *, name: str | None = None, tool_call_id: str | None = None) -> dict[str, Any]:
    """An input message as the Experience schema decodes it."""
    return {"role": role, "content": content, "name": name, "tool_call_id": tool_call_id}


# -- a fake OpenAI server -----------------------------------------------------------
def completion(content: str | None, *, model: str = "gpt-4o-mini-2024-07-18", tool_calls: list[dict[str, Any]] | None = None,
               prompt_tokens: int = 0, completion_tokens: int = 0, finish_reason: str = "stop") -> httpx.Response:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return httpx.Response(200, json={
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000, "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    })


def tool_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def chunk(delta: dict[str, Any] | None, finish_reason: str | None = None, usage: dict[str, int] | None = None) -> dict[str, Any]:
    return {"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1700000000, "model": "gpt-4o-mini-2024-07-18",
            "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
            "usage": usage}


def sse(chunks: list[dict[str, Any]]) -> httpx.Response:
    body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    return httpx.Response(200, content=body.encode(), headers={"content-type": "text/event-stream"})


class FakeOpenAIServer:
    """Serves the given responses in order and keeps the JSON body of every request."""

    def __init__(self, *responses: httpx.Response) -> None:
        self.responses = list(responses)
        self.requests: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(json.loads(request.content))
        return self.responses.pop(0)

    def client(self) -> openai.OpenAI:
        # openai>=3 types http_client as an httpx2 client and still accepts an httpx one
        return openai.OpenAI(api_key="test", base_url="http://fake.invalid/v1", max_retries=0,
                             http_client=httpx.Client(transport=httpx.MockTransport(self)))  # type: ignore[arg-type]

    def async_client(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(api_key="test", base_url="http://fake.invalid/v1", max_retries=0,
                                  http_client=httpx.AsyncClient(transport=httpx.MockTransport(self)))  # type: ignore[arg-type]


QUESTION = [{"role": "system", "content": "Answer in one word."}, {"role": "user", "content": "Capital of France?"}]


# -- OpenAI -------------------------------------------------------------------------
def test_openai_completion_is_recorded(bootstrap: str, gym: AgentGym) -> None:
    server = FakeOpenAIServer(completion("Paris.", prompt_tokens=12, completion_tokens=2))
    client = wrap_openai(server.client(), gym, model_version="prompt-v7", metadata={"app": "faq"})
    trace_id = uuid.uuid4().hex

    reply = client.chat.completions.create(
        model="gpt-4o-mini", messages=QUESTION, temperature=0,
        agentgym_trace_id=trace_id, agentgym_metadata={"route": "geo"}, agentgym_session_id="s-1",
    )

    assert reply.choices[0].message.content == "Paris."  # the agent gets the real response
    assert client.last_trace_id == trace_id
    assert server.requests == [{"model": "gpt-4o-mini", "messages": QUESTION, "temperature": 0}]  # agentgym_* stripped
    rec = read_back(bootstrap, gym, trace_id)[trace_id]
    assert rec["input"] == [msg("system", "Answer in one word."), msg("user", "Capital of France?")]
    assert rec["output"] == "Paris."
    assert rec["model_name"] == "gpt-4o-mini"
    assert rec["model_version"] == "prompt-v7"
    assert (rec["prompt_tokens"], rec["completion_tokens"]) == (12, 2)
    assert rec["status"] == "ok" and rec["error"] is None
    assert rec["steps"] == []
    assert rec["latency_ms"] > 0
    assert rec["session_id"] == "s-1"
    assert rec["metadata"]["app"] == "faq" and rec["metadata"]["route"] == "geo"
    assert rec["metadata"]["response_model"] == "gpt-4o-mini-2024-07-18"
    assert rec["metadata"]["finish_reason"] == "stop"


def test_openai_tool_calls_are_tool_steps(bootstrap: str, gym: AgentGym) -> None:
    calls = [tool_call("call_1", "get_weather", '{"city": "Paris"}'), tool_call("call_2", "get_time", '{"tz": "CET"}')]
    server = FakeOpenAIServer(
        completion(None, model="gpt-4o", tool_calls=calls, prompt_tokens=30, completion_tokens=9, finish_reason="tool_calls"),
        completion("Sunny, 14:00.", model="gpt-4o", prompt_tokens=50, completion_tokens=4),
    )
    client = wrap_openai(server.client(), gym)  # model_version defaults to the model name
    messages: list[Any] = [{"role": "user", "content": "Weather and time in Paris?"}]

    first = client.chat.completions.create(model="gpt-4o", messages=messages)
    first_trace = client.last_trace_id
    # the usual agent loop: the response's message object goes back into the history
    messages += [first.choices[0].message,
                 {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
                 {"role": "tool", "tool_call_id": "call_2", "content": "14:00"}]
    client.chat.completions.create(model="gpt-4o", messages=messages)
    second_trace = client.last_trace_id

    assert first_trace and second_trace and first_trace != second_trace
    recs = read_back(bootstrap, gym, first_trace, second_trace)
    rec1, rec2 = recs[first_trace], recs[second_trace]
    assert rec1["output"] is None
    assert rec1["steps"] == [
        {"step_id": "call_1", "kind": "tool", "name": "get_weather", "input": '{"city": "Paris"}', "output": None,
         "error": None, "latency_ms": 0.0, "prompt_tokens": 0, "completion_tokens": 0},
        {"step_id": "call_2", "kind": "tool", "name": "get_time", "input": '{"tz": "CET"}', "output": None,
         "error": None, "latency_ms": 0.0, "prompt_tokens": 0, "completion_tokens": 0},
    ]
    assert rec1["model_name"] == rec1["model_version"] == "gpt-4o"
    assert (rec1["prompt_tokens"], rec1["completion_tokens"]) == (30, 9)
    assert rec1["metadata"]["finish_reason"] == "tool_calls"
    assert "response_model" not in rec1["metadata"]  # served model == requested model

    assert [m["role"] for m in rec2["input"]] == ["user", "assistant", "tool", "tool"]
    assistant_calls = json.loads(rec2["input"][1]["content"])  # tool-call-only message: its calls as content
    assert [(c["id"], c["function"]["name"], c["function"]["arguments"]) for c in assistant_calls] == [
        ("call_1", "get_weather", '{"city": "Paris"}'), ("call_2", "get_time", '{"tz": "CET"}')]
    assert rec2["input"][2] == msg("tool", "sunny", tool_call_id="call_1")
    assert rec2["output"] == "Sunny, 14:00." and rec2["steps"] == []


def test_openai_error_is_recorded_and_reraised(bootstrap: str, gym: AgentGym) -> None:
    server = FakeOpenAIServer(httpx.Response(500, json={"error": {"message": "upstream exploded", "type": "server_error"}}))
    client = wrap_openai(server.client(), gym, model_version="v1")
    trace_id = uuid.uuid4().hex

    with pytest.raises(openai.InternalServerError) as raised:
        client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION, agentgym_trace_id=trace_id)

    assert raised.value.status_code == 500
    assert len(server.requests) == 1
    rec = read_back(bootstrap, gym, trace_id)[trace_id]
    assert rec["status"] == "error"
    assert rec["error"].startswith("InternalServerError: ") and "upstream exploded" in rec["error"]
    assert rec["output"] is None and rec["steps"] == []
    assert (rec["prompt_tokens"], rec["completion_tokens"]) == (0, 0)
    assert rec["input"] == [msg("system", "Answer in one word."), msg("user", "Capital of France?")]
    assert rec["model_name"] == "gpt-4o-mini" and rec["model_version"] == "v1"


def test_openai_stream_is_recorded_once_consumed(bootstrap: str, gym: AgentGym, recorded: list[str]) -> None:
    server = FakeOpenAIServer(
        sse([chunk({"role": "assistant", "content": ""}), chunk({"content": "Hello"}), chunk({"content": " world"}),
             chunk({}, finish_reason="stop"), chunk(None, usage={"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12})]),
        sse([chunk({"role": "assistant", "tool_calls": [{"index": 0, "id": "call_9", "type": "function",
                                                           "function": {"name": "search", "arguments": ""}}]}),
             chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"q": '}}]}),
             chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"kafka"}'}}]}),
             chunk({}, finish_reason="tool_calls")]),
    )
    client = wrap_openai(server.client(), gym)

    stream = client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION, stream=True,
                                            stream_options={"include_usage": True})
    text_trace = client.last_trace_id
    assert recorded == []  # nothing recorded before the stream is read
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert recorded == [text_trace]
    tools_stream = client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION, stream=True)
    tools_trace = client.last_trace_id
    assert len(list(tools_stream)) == 4

    assert text == "Hello world"
    assert text_trace is not None and tools_trace is not None
    recs = read_back(bootstrap, gym, text_trace, tools_trace)
    rec = recs[text_trace]
    assert rec["output"] == "Hello world"
    assert (rec["prompt_tokens"], rec["completion_tokens"]) == (9, 3)
    assert rec["status"] == "ok" and rec["steps"] == []
    assert rec["metadata"]["stream"] == "true" and rec["metadata"]["finish_reason"] == "stop"
    assert float(rec["metadata"]["ttft_ms"]) <= rec["latency_ms"]
    tools = recs[tools_trace]
    assert tools["output"] is None
    assert [(s["step_id"], s["kind"], s["name"], s["input"]) for s in tools["steps"]] == [("call_9", "tool", "search", '{"q": "kafka"}')]
    assert (tools["prompt_tokens"], tools["completion_tokens"]) == (0, 0)  # no include_usage: no usage chunk


def test_openai_stream_closed_early_is_cancelled(bootstrap: str, gym: AgentGym) -> None:
    server = FakeOpenAIServer(sse([chunk({"content": "one"}), chunk({"content": " two"}), chunk({"content": " three"}),
                                   chunk({}, finish_reason="stop")]))
    client = wrap_openai(server.client(), gym)

    with client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION, stream=True) as stream:
        first = next(iter(stream))
    trace_id = client.last_trace_id

    assert first.choices[0].delta.content == "one"
    assert trace_id is not None
    rec = read_back(bootstrap, gym, trace_id)[trace_id]
    assert rec["status"] == "cancelled"
    assert rec["output"] == "one"  # what the agent received before closing


def test_async_openai_create_and_stream(bootstrap: str, gym: AgentGym) -> None:
    server = FakeOpenAIServer(
        completion("Paris.", prompt_tokens=7, completion_tokens=1),
        sse([chunk({"content": "Ber"}), chunk({"content": "lin."}, finish_reason="stop"),
             chunk(None, usage={"prompt_tokens": 8, "completion_tokens": 2, "total_tokens": 10})]),
        httpx.Response(500, json={"error": {"message": "async boom"}}),
    )
    client = wrap_openai(server.async_client(), gym, model_version="async-v1")
    traces = [uuid.uuid4().hex for _ in range(3)]

    async def agent() -> tuple[str, str]:
        reply = await client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION, agentgym_trace_id=traces[0])
        stream = await client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION, stream=True,
                                                      stream_options={"include_usage": True}, agentgym_trace_id=traces[1])
        streamed = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        with pytest.raises(openai.InternalServerError):
            await client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION, agentgym_trace_id=traces[2])
        return reply.choices[0].message.content or "", streamed

    assert asyncio.run(agent()) == ("Paris.", "Berlin.")
    recs = read_back(bootstrap, gym, *traces)
    assert (recs[traces[0]]["output"], recs[traces[0]]["prompt_tokens"], recs[traces[0]]["completion_tokens"]) == ("Paris.", 7, 1)
    assert (recs[traces[1]]["output"], recs[traces[1]]["prompt_tokens"], recs[traces[1]]["completion_tokens"]) == ("Berlin.", 8, 2)
    assert recs[traces[2]]["status"] == "error" and "async boom" in recs[traces[2]]["error"]
    assert {r["model_version"] for r in recs.values()} == {"async-v1"}


class City(BaseModel):
    name: str
    country: str


def test_openai_wrapper_passes_everything_else_through(bootstrap: str, gym: AgentGym) -> None:
    server = FakeOpenAIServer(completion("ok"), completion('{"name": "Paris", "country": "France"}'))
    raw = server.client()
    client = wrap_openai(raw, gym)

    assert client.wrapped_client is raw
    assert client.api_key == "test" and client.base_url == raw.base_url
    assert client.models is raw.models
    assert type(client.chat.completions.with_raw_response) is type(raw.chat.completions.with_raw_response)  # not wrapped
    faster = client.with_options(timeout=5.0)
    assert isinstance(faster, AgentGymOpenAI) and faster.wrapped_client.timeout == 5.0
    trace_id = uuid.uuid4().hex
    faster.chat.completions.create(model="gpt-4o-mini", messages=QUESTION, agentgym_trace_id=trace_id)

    assert client.last_trace_id == trace_id  # the copy shares the recorder
    parse_trace = uuid.uuid4().hex
    history = iter(QUESTION)  # a one-shot iterator reaches the API whole and is recorded whole
    parsed = client.chat.completions.parse(model="gpt-4o-mini", messages=history, response_format=City,
                                           agentgym_trace_id=parse_trace)

    assert parsed.choices[0].message.parsed == City(name="Paris", country="France")
    assert server.requests[1]["messages"] == QUESTION
    recs = read_back(bootstrap, gym, trace_id, parse_trace)
    assert recs[trace_id]["output"] == "ok"
    assert json.loads(recs[parse_trace]["output"]) == {"name": "Paris", "country": "France"}
    assert recs[parse_trace]["input"] == [msg("system", "Answer in one word."), msg("user", "Capital of France?")]


def test_openai_misuse_raises_before_the_request(gym: AgentGym, recorded: list[str]) -> None:
    server = FakeOpenAIServer(completion("never sent"))
    client = wrap_openai(server.client(), gym)

    with pytest.raises(InvalidEventError) as bad_metadata:
        client.chat.completions.create(model="m", messages=QUESTION, agentgym_metadata="route=geo")
    with pytest.raises(InvalidEventError) as typo:
        client.chat.completions.create(model="m", messages=QUESTION, agentgym_traceid="x")
    with pytest.raises(InvalidEventError) as bad_trace:
        client.chat.completions.create(model="m", messages=QUESTION, agentgym_trace_id=42)
    with pytest.raises(TypeError, match="chat.completions.create"):
        wrap_openai(object(), gym)
    with pytest.raises(ConfigError, match="model_version"):
        wrap_openai(server.client(), gym, model_version="")
    with pytest.raises(InvalidEventError) as bad_assignment:
        wrap_openai(server.client(), gym, assignment={"experiment_id": "e", "variant": "b", "unit_type": "tenant", "unit_id": "u"})

    assert (bad_metadata.value.field, typo.value.field, bad_trace.value.field) == ("agentgym_metadata", "agentgym_traceid", "agentgym_trace_id")
    assert bad_assignment.value.field == "assignment.unit_type"
    assert server.requests == [] and recorded == []


class _BrokenGym:
    """A gym whose recording always fails (not Kafka: the integration's containment is tested)."""

    def record_experience(self, **fields: Any) -> str:
        raise RuntimeError("disk full")


def test_recording_failure_never_breaks_the_agent(caplog: pytest.LogCaptureFixture) -> None:
    server = FakeOpenAIServer(completion("still answered"), sse([chunk({"content": "streamed"}, finish_reason="stop")]))
    client = wrap_openai(server.client(), _BrokenGym())
    handler = AgentGymCallbackHandler(_BrokenGym())
    caplog.set_level(logging.WARNING, logger="agentgym.integrations")

    reply = client.chat.completions.create(model="m", messages=QUESTION)
    streamed = [c.choices[0].delta.content for c in client.chat.completions.create(model="m", messages=QUESTION, stream=True)]
    answer = (ChatPromptTemplate.from_messages([("human", "{q}")]) | FakeListChatModel(responses=["lc answer"]) | StrOutputParser()
              ).invoke({"q": "hi"}, config={"callbacks": [handler]})

    assert reply.choices[0].message.content == "still answered"
    assert streamed == ["streamed"]
    assert answer == "lc answer"
    failures = [r for r in caplog.records if r.name == "agentgym.integrations" and "could not record" in r.getMessage()]
    assert len(failures) == 3


# -- LangChain ------------------------------------------------------------------------
@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


@tool
def flaky_lookup(order_id: int) -> str:
    """Looks an order up (always fails)."""
    raise ValueError(f"boom on order {order_id}")


def weather_agent(model: GenericFakeChatModel) -> RunnableLambda[str, str]:
    """A tiny tool-using agent: ask the model, run the tools it asks for, ask again."""

    def run(question: str) -> str:
        first = model.invoke(question)
        results = [get_weather.invoke(call) for call in first.tool_calls]
        return str(model.invoke([("user", question), first, *results]).content)

    return RunnableLambda(run, name="weather_agent")


def test_langchain_agent_run_records_llm_and_tool_steps(bootstrap: str, gym: AgentGym) -> None:
    model = GenericFakeChatModel(messages=iter([
        AIMessage(content="", tool_calls=[{"name": "get_weather", "args": {"city": "Paris"}, "id": "call_1"}],
                  usage_metadata={"input_tokens": 11, "output_tokens": 7, "total_tokens": 18}),
        AIMessage(content="It is sunny in Paris.", usage_metadata={"input_tokens": 20, "output_tokens": 4, "total_tokens": 24}),
    ]))
    handler = AgentGymCallbackHandler(gym, model_version="agent-v2", metadata={"team": "geo"})

    answer = weather_agent(model).invoke("Weather in Paris?", config={"callbacks": [handler]})

    assert answer == "It is sunny in Paris."
    trace_id = handler.last_trace_id
    assert trace_id is not None
    rec = read_back(bootstrap, gym, trace_id)[trace_id]
    assert rec["input"] == [msg("user", "Weather in Paris?")]
    assert rec["output"] == "It is sunny in Paris."
    assert [(s["kind"], s["name"]) for s in rec["steps"]] == [
        ("llm", "GenericFakeChatModel"), ("tool", "get_weather"), ("llm", "GenericFakeChatModel")]
    llm1, tool_step, llm2 = rec["steps"]
    assert json.loads(llm1["input"]) == [msg("user", "Weather in Paris?")]
    assert json.loads(llm1["output"])["tool_calls"] == [{"id": "call_1", "name": "get_weather", "args": {"city": "Paris"}}]
    assert (llm1["prompt_tokens"], llm1["completion_tokens"], llm2["prompt_tokens"], llm2["completion_tokens"]) == (11, 7, 20, 4)
    assert llm2["output"] == "It is sunny in Paris."
    assert [m["role"] for m in json.loads(llm2["input"])] == ["user", "assistant", "tool"]
    assert tool_step["step_id"] == "call_1"
    assert json.loads(tool_step["input"]) == {"city": "Paris"}
    assert tool_step["output"] == "sunny in Paris" and tool_step["error"] is None
    assert all(s["latency_ms"] > 0 for s in rec["steps"])
    assert (rec["prompt_tokens"], rec["completion_tokens"]) == (31, 11)
    assert rec["model_name"] == "GenericFakeChatModel" and rec["model_version"] == "agent-v2"
    assert rec["status"] == "ok" and rec["error"] is None
    assert rec["metadata"]["team"] == "geo" and rec["metadata"]["run_name"] == "weather_agent"
    assert rec["latency_ms"] >= sum(s["latency_ms"] for s in rec["steps"])


def test_langchain_sequence_uses_run_id_as_trace_id(bootstrap: str, gym: AgentGym) -> None:
    chain = (ChatPromptTemplate.from_messages([("system", "You are terse."), ("human", "{question}")])
             | FakeListChatModel(responses=["Paris"]) | StrOutputParser())
    handler = AgentGymCallbackHandler(gym, model_version="seq-v1")
    run_id = uuid.uuid4()

    answer = chain.invoke({"question": "Capital of France?"}, config={
        "callbacks": [handler], "run_id": run_id, "metadata": {"session_id": "s-9", "experiment": "x"}})

    assert answer == "Paris"
    assert handler.last_trace_id == run_id.hex
    rec = read_back(bootstrap, gym, run_id.hex)[run_id.hex]
    assert rec["input"] == [msg("user", "Capital of France?")]
    assert rec["output"] == "Paris"
    assert [(s["kind"], s["name"]) for s in rec["steps"]] == [("llm", "FakeListChatModel")]  # prompt and parser are no steps
    assert json.loads(rec["steps"][0]["input"]) == [msg("system", "You are terse."), msg("user", "Capital of France?")]
    assert rec["steps"][0]["output"] == "Paris"
    assert rec["model_name"] == "FakeListChatModel" and rec["model_version"] == "seq-v1"
    assert rec["session_id"] == "s-9"
    assert rec["metadata"]["experiment"] == "x" and rec["metadata"]["run_name"] == "RunnableSequence"
    assert "session_id" not in rec["metadata"]


def test_langchain_streamed_chain_records_its_whole_input(bootstrap: str, gym: AgentGym) -> None:
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | FakeListChatModel(responses=["hello there"]) | StrOutputParser()
    handler = AgentGymCallbackHandler(gym)
    run_id = uuid.uuid4()

    pieces = list(chain.stream({"q": "Say hello"}, config={"callbacks": [handler], "run_id": run_id}))

    assert "".join(pieces) == "hello there" and len(pieces) > 1
    rec = read_back(bootstrap, gym, run_id.hex)[run_id.hex]
    # LangChain starts a streamed chain with an empty input and gives the real one at its end
    assert rec["input"] == [msg("user", "Say hello")]
    assert rec["output"] == "hello there"
    assert [(s["kind"], s["output"]) for s in rec["steps"]] == [("llm", "hello there")]


def test_langchain_chat_model_on_its_own(bootstrap: str, gym: AgentGym) -> None:
    model = GenericFakeChatModel(messages=iter([AIMessage(
        content="", tool_calls=[{"name": "get_weather", "args": {"city": "Oslo"}, "id": "call_7"}],
        usage_metadata={"input_tokens": 5, "output_tokens": 3, "total_tokens": 8})]))
    handler = AgentGymCallbackHandler(gym, model_name="fake-llm")
    run_id = uuid.uuid4()

    reply = model.invoke("Weather in Oslo?", config={"callbacks": [handler], "run_id": run_id})

    assert reply.tool_calls[0]["id"] == "call_7"
    rec = read_back(bootstrap, gym, run_id.hex)[run_id.hex]
    assert rec["input"] == [msg("user", "Weather in Oslo?")]
    assert rec["output"] is None  # the answer only calls a tool
    assert [(s["step_id"], s["kind"], s["name"]) for s in rec["steps"]] == [("0", "llm", "GenericFakeChatModel"), ("call_7", "tool", "get_weather")]
    assert json.loads(rec["steps"][1]["input"]) == {"city": "Oslo"}
    assert (rec["prompt_tokens"], rec["completion_tokens"]) == (5, 3)
    assert rec["model_name"] == rec["model_version"] == "fake-llm"


class _DownChatModel(FakeListChatModel):
    """A chat model whose provider is down."""

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None, **kwargs: Any) -> ChatResult:
        raise ConnectionError("model endpoint unreachable")


def test_langchain_errors_are_recorded(bootstrap: str, gym: AgentGym) -> None:
    handler = AgentGymCallbackHandler(gym)
    model = GenericFakeChatModel(messages=iter([AIMessage(
        content="", tool_calls=[{"name": "flaky_lookup", "args": {"order_id": 42}, "id": "call_3"}])]))

    def agent(question: str) -> str:
        first = model.invoke(question)
        return str(flaky_lookup.invoke(first.tool_calls[0]).content)

    tool_run, model_run = uuid.uuid4(), uuid.uuid4()
    with pytest.raises(ValueError, match="boom on order 42"):
        RunnableLambda(agent).invoke("Where is order 42?", config={"callbacks": [handler], "run_id": tool_run})
    with pytest.raises(ConnectionError):
        _DownChatModel(responses=[]).invoke("hi", config={"callbacks": [handler], "run_id": model_run})

    recs = read_back(bootstrap, gym, tool_run.hex, model_run.hex)
    failed = recs[tool_run.hex]
    assert failed["status"] == "error" and failed["error"] == "ValueError: boom on order 42"
    assert failed["output"] is None
    assert [(s["kind"], s["error"]) for s in failed["steps"]] == [("llm", None), ("tool", "ValueError: boom on order 42")]
    down = recs[model_run.hex]
    assert down["status"] == "error" and down["error"] == "ConnectionError: model endpoint unreachable"
    assert [(s["kind"], s["name"], s["error"]) for s in down["steps"]] == [("llm", "_DownChatModel", "ConnectionError: model endpoint unreachable")]
    assert down["model_name"] == "_DownChatModel"


class _Docs(BaseRetriever):
    """A retriever over two fixed documents."""

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        return [Document(page_content="Kafka keeps a log.", metadata={"id": 1}),
                Document(page_content="Brokers replicate partitions.", metadata={"id": 2})]


def test_langchain_retrieval_step(bootstrap: str, gym: AgentGym) -> None:
    prompt = ChatPromptTemplate.from_messages([("system", "Context: {context}"), ("human", "{question}")])
    def join(docs: list[Document]) -> str:
        return " ".join(d.page_content for d in docs)

    def same(question: str) -> str:
        return question

    chain = ({"context": _Docs() | RunnableLambda(join), "question": RunnableLambda(same)}
             | prompt | FakeListChatModel(responses=["It is a log."]) | StrOutputParser())
    handler = AgentGymCallbackHandler(gym)

    assert chain.invoke("What is Kafka?", config={"callbacks": [handler]}) == "It is a log."

    trace_id = handler.last_trace_id
    assert trace_id is not None
    rec = read_back(bootstrap, gym, trace_id)[trace_id]
    assert [s["kind"] for s in rec["steps"]] == ["retrieval", "llm"]
    retrieval, llm = rec["steps"]
    assert retrieval["name"] == "_Docs" and retrieval["input"] == "What is Kafka?"
    assert json.loads(retrieval["output"]) == [{"page_content": "Kafka keeps a log.", "metadata": {"id": 1}},
                                              {"page_content": "Brokers replicate partitions.", "metadata": {"id": 2}}]
    assert json.loads(llm["input"])[0] == msg("system", "Context: Kafka keeps a log. Brokers replicate partitions.")
    assert rec["input"] == [msg("user", "What is Kafka?")] and rec["output"] == "It is a log."


def test_langchain_concurrent_and_async_runs_stay_apart(bootstrap: str, gym: AgentGym) -> None:
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | ParrotFakeChatModel() | StrOutputParser()
    handler = AgentGymCallbackHandler(gym)
    questions = [f"question {i}" for i in range(4)]
    run_ids = [uuid.uuid4() for _ in questions]

    answers = chain.batch([{"q": q} for q in questions],
                          config=[{"callbacks": [handler], "run_id": r, "max_concurrency": 4} for r in run_ids])
    async_run = uuid.uuid4()
    async_answer = asyncio.run(chain.ainvoke({"q": "async question"}, config={"callbacks": [handler], "run_id": async_run}))

    assert answers == questions and async_answer == "async question"
    recs = read_back(bootstrap, gym, *(r.hex for r in run_ids), async_run.hex)
    for question, run_id in [*zip(questions, run_ids), ("async question", async_run)]:
        rec = recs[run_id.hex]
        assert rec["input"] == [msg("user", question)] and rec["output"] == question
        assert [(s["kind"], s["output"]) for s in rec["steps"]] == [("llm", question)]  # no step of another run
