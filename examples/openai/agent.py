"""The OpenAI wrapper: every chat completion of the client becomes an Agent Gym Experience.

    export AGENTGYM_BOOTSTRAP_SERVERS=127.0.0.1:9092 AGENTGYM_TENANT_ID=acme AGENTGYM_AGENT_ID=support-bot
    export OPENAI_API_KEY=sk-...          # and OPENAI_BASE_URL for any OpenAI-compatible server
    python examples/openai/agent.py "Where is my order A17?"

The agent's code stays what it was; only the client is wrapped. Prints the run's trace id.
"""

from __future__ import annotations

import sys

from openai import OpenAI

from agentgym import AgentGym
from agentgym.producers.integrations.openai import wrap_openai


def main() -> None:
    question = " ".join(sys.argv[1:]) or "Where is my order A17?"
    with AgentGym() as gym:
        client = wrap_openai(OpenAI(), gym, model_version="prompt-v3")  # OPENAI_API_KEY / OPENAI_BASE_URL
        reply = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "system", "content": "You answer shipping questions."}, {"role": "user", "content": question}],
            agentgym_user_id="user-42",  # agentgym_* arguments go to the Experience, not to OpenAI
        )
        print(reply.choices[0].message.content)
        gym.record_feedback(client.last_trace_id, rating=4.5)  # the user rated the answer
    print(f"trace_id={client.last_trace_id}")


if __name__ == "__main__":
    main()
