"""The demo's task: route a customer request to the right tool with the right argument.

Four intents, each with one tool that takes one argument copied from the request::

    "Is it raining in Oslo today?"            -> get_weather(Oslo)
    "Has order 48213 shipped yet?"            -> track_order(48213)
    "Please refund order 48213"               -> create_refund(48213)
    "How do I change my password settings?"   -> search_faq(password)

The agent's model answers with the call as text; :func:`parse_call` reads it back and
:func:`execute` runs the (simulated) tool: an unknown tool or a malformed call is a
tool error the labeller's rules see. :func:`is_correct` is the simulator's ground
truth: it drives the simulated users and the held-out measurement, never a label or a
decision.

The base model is "pre-trained before the refund and FAQ tools existed": it routes
weather and order requests right, sends refunds to ``track_order`` and FAQ questions
to ``escalate`` (no such tool). Only the agents' own experience -- users' corrections
and thumbs -- can teach it the two new tools.

**Drift.** Mid-run the demo launches a fifth tool, ``cancel_order`` (:data:`NEW_INTENTS`),
and the traffic changes to :data:`DRIFT_MIX`: a share of the requests now ask to
cancel an order, which no model has learnt (they go to ``track_order`` or
``create_refund``). :func:`sample_task` draws from a mix of intents; without one it
draws from the original four exactly as before, so the base model's pre-training
(which uses it) is unchanged.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

__all__ = ["INTENTS", "NEW_INTENTS", "ALL_INTENTS", "DRIFT_MIX", "Task", "sample_task", "sample_tasks",
           "messages_for", "parse_call", "execute", "is_correct", "base_answer", "mix_label"]

# intent -> (tool, request templates); {arg} is the argument the call must carry
INTENTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "weather": ("get_weather", (
        "What's the weather in {arg}?", "Is it raining in {arg} today?", "{arg} forecast please",
        "Do I need an umbrella in {arg}?", "How hot is it in {arg} right now?", "Weather for {arg} this weekend?",
    )),
    "order": ("track_order", (
        "Where is my order {arg}?", "Track order {arg}", "Has order {arg} shipped yet?",
        "When will order {arg} arrive?", "Status of order {arg}?", "My package {arg} is late, where is it?",
    )),
    "refund": ("create_refund", (
        "I want a refund for order {arg}", "Please refund order {arg}", "Order {arg} arrived broken, money back please",
        "Can I return order {arg} for a refund?", "Refund {arg} now", "I was charged twice for order {arg}, refund it",
    )),
    "faq": ("search_faq", (
        "How do I change my {arg} settings?", "Help with {arg}", "Question about {arg}",
        "Where can I read about {arg}?", "I need help with {arg}", "Explain your {arg} policy",
    )),
}
# launched mid-run (the drift): no model has seen these requests
NEW_INTENTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "cancel": ("cancel_order", (
        "Cancel order {arg}", "Please cancel my order {arg}", "I changed my mind, cancel order {arg}",
        "Stop order {arg} before it ships", "Can you cancel order {arg}?", "I no longer want order {arg}, cancel it",
    )),
}
ALL_INTENTS: dict[str, tuple[str, tuple[str, ...]]] = {**INTENTS, **NEW_INTENTS}
# the traffic after the drift: intent -> weight (the four original ones share the rest evenly)
DRIFT_MIX: dict[str, float] = {"cancel": 0.4, "weather": 0.15, "order": 0.15, "refund": 0.15, "faq": 0.15}
_CITIES = ("Oslo", "Lisbon", "Nairobi", "Lima", "Osaka", "Denver", "Cairo", "Hanoi", "Quito", "Perth", "Dublin",
           "Seoul", "Austin", "Milan", "Accra", "Bergen", "Tunis", "Leeds", "Porto", "Kyoto", "Delhi", "Dakar",
           "Malmo", "Riga")
_TOPICS = ("password", "shipping", "returns", "invoices", "account", "warranty", "delivery", "privacy", "billing",
           "coupons", "gift cards", "newsletter")
# the base model's blind spots: the tools it was trained before
_BASE_TOOL = {"weather": "get_weather", "order": "track_order", "refund": "track_order", "faq": "escalate"}
KNOWN_TOOLS = frozenset(tool for tool, _ in ALL_INTENTS.values())
_CALL = re.compile(r"^\s*([a-z_]+)\((.*)\)\s*$")


@dataclass(frozen=True)
class Task:
    """One request with its ground truth (the simulator's, never the pipeline's)."""

    intent: str
    request: str
    arg: str

    @property
    def expected(self) -> str:
        """The right call."""
        return f"{ALL_INTENTS[self.intent][0]}({self.arg})"


def _arg(intent: str, rng: random.Random) -> str:
    if intent == "weather":
        return rng.choice(_CITIES)
    if intent == "faq":
        return rng.choice(_TOPICS)
    return str(rng.randint(10000, 99999))


def sample_task(rng: random.Random, mix: dict[str, float] | None = None) -> Task:
    """One request: uniform over the original four intents, or drawn from ``mix`` (intent -> weight)."""
    if mix is None:
        intent = rng.choice(list(INTENTS))
    else:
        intent = rng.choices(list(mix), weights=list(mix.values()))[0]
    arg = _arg(intent, rng)
    return Task(intent, rng.choice(ALL_INTENTS[intent][1]).format(arg=arg), arg)


def sample_tasks(n: int, seed: int, exclude: set[str] | frozenset[str] = frozenset(),
                 mix: dict[str, float] | None = None) -> list[Task]:
    """``n`` tasks from ``seed`` (and ``mix``) whose requests are not in ``exclude`` (held-out sets exclude what agents saw)."""
    rng = random.Random(seed)
    out: list[Task] = []
    seen = set(exclude)
    while len(out) < n:
        t = sample_task(rng, mix)
        if t.request not in seen:
            seen.add(t.request)
            out.append(t)
    return out


def messages_for(request: str) -> list[dict[str, str]]:
    """The chat the agent sends its model (and records as the run's input).

    No system prompt: at byte level every character is a token, and the tiny model
    needs none to know its one job.
    """
    return [{"role": "user", "content": request}]


def parse_call(text: str) -> tuple[str, str] | None:
    """``(tool, argument)`` of a call like ``track_order(48213)``; None when malformed."""
    m = _CALL.match(text or "")
    return (m.group(1), m.group(2).strip()) if m else None


def execute(call: tuple[str, str] | None) -> str | None:
    """Runs the simulated tool: None on success, else the error the tool step records."""
    if call is None:
        return "ParseError: the model's output is not a tool call"
    if call[0] not in KNOWN_TOOLS:
        return f"UnknownTool: no tool named {call[0]!r}"
    if not call[1]:
        return "ValueError: missing argument"
    return None


def is_correct(task: Task, output: str) -> bool:
    """Ground truth: the right tool with the right argument."""
    call = parse_call(output)
    return call is not None and call == (ALL_INTENTS[task.intent][0], task.arg)


def base_answer(task: Task) -> str:
    """What the base model was pre-trained to answer (right for weather and orders only)."""
    return f"{_BASE_TOOL[task.intent]}({task.arg})"



def mix_label(mix: dict[str, float] | None) -> str:
    """``"weather 25%, order 25%, ..."``: a mix as the demo prints it."""
    if mix is None:
        return ", ".join(f"{i} {1 / len(INTENTS):.0%}" for i in INTENTS)
    total = sum(mix.values())
    return ", ".join(f"{i} {w / total:.0%}" for i, w in mix.items())
