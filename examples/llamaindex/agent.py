"""LlamaIndex: a callback handler records each query, with its retrieval and LLM calls, as an Experience.

    export AGENTGYM_BOOTSTRAP_SERVERS=127.0.0.1:9092 AGENTGYM_TENANT_ID=acme AGENTGYM_AGENT_ID=support-bot
    python examples/llamaindex/agent.py "Where is my order A17?"

The handler (``AgentGymHandler`` below) goes on ``Settings.callback_manager``, so every index
and query engine reports to it; copy it into your app. The query engine here runs on
LlamaIndex's ``MockLLM`` and ``MockEmbedding`` so that the example needs only
``llama-index-core``: set ``Settings.llm`` / ``Settings.embed_model`` to your own (e.g.
``llama_index.llms.openai.OpenAI``). Prints the run's trace id.
"""

from __future__ import annotations

import sys
import time
import uuid
from typing import Any

from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.callbacks import CallbackManager, CBEventType, EventPayload
from llama_index.core.callbacks.base_handler import BaseCallbackHandler
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.llms import MockLLM

from agentgym import AgentGym


class AgentGymHandler(BaseCallbackHandler):
    """One Experience per query: retrievals and LLM calls become steps (index building is not a run)."""

    def __init__(self, gym: AgentGym, model_name: str, model_version: str) -> None:
        super().__init__(event_starts_to_ignore=[], event_ends_to_ignore=[])
        self.gym, self.model_name, self.model_version = gym, model_name, model_version
        self.last_trace_id: str | None = None
        self._run: dict[str, Any] = {}
        self._started: dict[str, float] = {}

    def start_trace(self, trace_id: str | None = None) -> None:
        self._run = {"t0": time.perf_counter(), "input": "", "output": None, "steps": []}

    def on_event_start(self, event_type: CBEventType, payload: dict[str, Any] | None = None, event_id: str = "",
                       parent_id: str = "", **kwargs: Any) -> str:
        self._started[event_id] = time.perf_counter()
        if event_type is CBEventType.QUERY and payload:
            self._run["input"] = str(payload.get(EventPayload.QUERY_STR, ""))
        return event_id

    def on_event_end(self, event_type: CBEventType, payload: dict[str, Any] | None = None, event_id: str = "",
                     **kwargs: Any) -> None:
        payload = payload or {}
        latency_ms = (time.perf_counter() - self._started.pop(event_id, time.perf_counter())) * 1000.0
        if event_type is CBEventType.RETRIEVE:
            self._run["steps"].append({"name": "retrieve", "kind": "retrieval", "input": self._run["input"], "latency_ms": latency_ms,
                                       "output": [n.node.get_content() for n in payload.get(EventPayload.NODES, [])]})
        elif event_type is CBEventType.LLM:
            prompt = payload.get(EventPayload.PROMPT) or [str(m) for m in payload.get(EventPayload.MESSAGES, [])]
            answer = payload.get(EventPayload.COMPLETION) or payload.get(EventPayload.RESPONSE)
            self._run["steps"].append({"name": self.model_name, "kind": "llm", "input": prompt, "output": str(answer),
                                       "latency_ms": latency_ms})
        elif event_type is CBEventType.QUERY:
            self._run["output"] = str(payload.get(EventPayload.RESPONSE, ""))

    def end_trace(self, trace_id: str | None = None, trace_map: dict[str, list[str]] | None = None) -> None:
        if trace_id != "query":  # "index_construction" and the like are not agent runs
            return
        self.last_trace_id = self.gym.record_experience(
            trace_id=uuid.uuid4().hex, input=self._run["input"], output=self._run["output"], steps=self._run["steps"],
            model_name=self.model_name, model_version=self.model_version,
            latency_ms=(time.perf_counter() - self._run["t0"]) * 1000.0)


def main() -> None:
    question = " ".join(sys.argv[1:]) or "Where is my order A17?"
    with AgentGym() as gym:
        handler = AgentGymHandler(gym, model_name="mock-llm", model_version="rag-v1")
        Settings.callback_manager = CallbackManager([handler])
        Settings.llm, Settings.embed_model = MockLLM(max_tokens=8), MockEmbedding(embed_dim=8)  # your model here
        index = VectorStoreIndex.from_documents([Document(text="Order A17 ships tomorrow. Returns take 5 days.")])
        print(index.as_query_engine().query(question))
        gym.record_feedback(handler.last_trace_id, signal="task_completed")  # an implicit signal: the user went on
    print(f"trace_id={handler.last_trace_id}")


if __name__ == "__main__":
    main()
