"""LangChain: a callback handler records each chain run, with its model calls, as an Experience.

    export AGENTGYM_BOOTSTRAP_SERVERS=127.0.0.1:9092 AGENTGYM_TENANT_ID=acme AGENTGYM_AGENT_ID=support-bot
    export OPENAI_API_KEY=sk-...          # and OPENAI_BASE_URL for any OpenAI-compatible server
    python examples/langchain/agent.py "Where is my order A17?"

Any LangChain runnable works the same way (``pip install langchain-openai`` for ``ChatOpenAI``).
Prints the run's trace id (LangChain's run id).
"""

from __future__ import annotations

import sys

from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_openai import ChatOpenAI

from agentgym import AgentGym
from agentgym.producers.integrations.langchain import AgentGymCallbackHandler


def main() -> None:
    question = " ".join(sys.argv[1:]) or "Where is my order A17?"
    prompt = ChatPromptTemplate.from_messages([("system", "You answer shipping questions."), ("human", "{question}")])
    chain = prompt | ChatOpenAI(model="gpt-4o-mini") | StrOutputParser()
    with AgentGym() as gym:
        handler = AgentGymCallbackHandler(gym, model_version="prompt-v3")
        answer = chain.invoke({"question": question}, config={"callbacks": [handler], "metadata": {"user_id": "user-42"}})
        print(answer)
        gym.record_feedback(handler.last_trace_id, thumbs_up=True)
    print(f"trace_id={handler.last_trace_id}")


if __name__ == "__main__":
    main()
