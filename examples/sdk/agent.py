"""The Python SDK by hand: record one agent run with its steps, then the user's feedback.

    export AGENTGYM_BOOTSTRAP_SERVERS=127.0.0.1:9092 AGENTGYM_TENANT_ID=acme AGENTGYM_AGENT_ID=support-bot
    python examples/sdk/agent.py "Where is my order A17?"

``AgentGym()`` reads its settings from those ``AGENTGYM_*`` variables (docs/configuration.md).
Events go straight to Kafka; the call never blocks the agent (a broker that is away means
the events wait in a local spool). Prints the run's trace id.
"""

from __future__ import annotations

import sys

from agentgym import AgentGym


def lookup_order(order_id: str) -> dict[str, str]:
    return {"order_id": order_id, "status": "ships tomorrow"}


def main() -> None:
    question = " ".join(sys.argv[1:]) or "Where is my order A17?"
    with AgentGym() as gym:  # close() flushes what is still queued
        with gym.run(question, model_name="llama-3.2-1b", model_version="v3", user_id="user-42") as run:
            with run.step("lookup_order", kind="tool", input={"order_id": "A17"}) as step:
                step.output = lookup_order("A17")
            with run.step("answer", kind="llm", input=question) as step:
                step.output = "Your order A17 ships tomorrow."
                step.prompt_tokens, step.completion_tokens = 42, 9
            run.output = step.output
        # later, the user liked the answer: feedback refers to the run's trace id
        gym.record_feedback(run.trace_id, thumbs_up=True, comment="quick and right")
    print(f"trace_id={run.trace_id}")


if __name__ == "__main__":
    main()
