"""``agentgym demo``: the main job on the embedded default.

Today it starts the local stack (a real Kafka broker in KRaft mode), runs simulated
agents that record experiences and feedback through the SDK, and reads back what
arrived. Later issues grow it into the closed loop (labelling, A/B test, fine-tune).
"""

from __future__ import annotations

import random
import signal
import sys
import time
from collections import Counter
from typing import Any

import click

from ops.exceptions import StackError
from ops.kafka.broker import KafkaBroker
from ops.settings import StackSettings

_TOOLS = {
    "weather": ("get_weather", "city"),
    "order": ("lookup_order", "order_id"),
    "refund": ("create_refund", "order_id"),
    "faq": ("search_faq", "query"),
}
_CITIES = ["Oslo", "Lisbon", "Nairobi", "Lima", "Osaka"]


def _simulate_run(gym: Any, rng: random.Random, i: int) -> str:
    """One simulated agent run: pick a tool for a request, maybe fail, answer."""
    intent = rng.choice(list(_TOOLS))
    tool, arg = _TOOLS[intent]
    value = rng.choice(_CITIES) if arg == "city" else str(rng.randint(1000, 9999))
    request = {"weather": f"What's the weather in {value}?", "order": f"Where is order {value}?",
               "refund": f"I want a refund for order {value}", "faq": f"How do I {value}?"}[intent]
    model_version = "base-v1"
    with gym.run(request, model_name="tiny-llama", model_version=model_version, user_id=f"user-{i % 50}") as run:
        with run.step("route", kind="llm", input=request) as s:
            s.output = {"tool": tool, arg: value}
            s.prompt_tokens, s.completion_tokens = rng.randint(40, 90), rng.randint(5, 20)
        with run.step(tool, kind="tool", input={arg: value}) as s:
            if rng.random() < 0.15:
                s.error = "TimeoutError: tool did not answer"
            else:
                s.output = {"ok": True}
        run.output = f"Done: {tool}({value})"
        run.cost_usd = 0.0001 * (1 + rng.random())
    return run.trace_id


@click.command()
@click.option("--events", "n_runs", type=int, default=500, show_default=True, help="simulated agent runs")
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--keep-running", is_flag=True, help="leave the local stack running afterwards")
def demo(n_runs: int, seed: int, keep_running: bool) -> None:
    """Start the local stack and send simulated agent traffic through the real pipeline."""
    from producers import AgentGym
    from ops.topics import ensure_topics
    from schemas import AvroCodec

    settings = StackSettings()
    broker = KafkaBroker.from_settings(settings)
    started_here = not broker.status().running

    def _stop(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    try:
        click.echo(f"[1/3] starting Kafka (KRaft) on {broker.bootstrap_servers} ...")
        t0 = time.monotonic()
        st = broker.start()
        ensure_topics(st.bootstrap_servers)
        click.echo(f"      kafka up in {time.monotonic() - t0:.1f}s (pid {st.pid}, data {st.data_dir})")

        click.echo(f"[2/3] {n_runs} simulated agent runs with feedback ...")
        rng = random.Random(seed)
        tenant = "demo"
        sent: Counter[str] = Counter()
        with AgentGym(st.bootstrap_servers, tenant_id=tenant, agent_id="router",
                      spool_dir=settings.home / "spool") as gym:
            with click.progressbar(range(n_runs), label="      runs") as bar:
                for i in bar:
                    trace = _simulate_run(gym, rng, i)
                    sent["gym-experiences-v1"] += 1
                    r = rng.random()
                    if r < 0.4:
                        gym.record_feedback(trace, thumbs_up=rng.random() < 0.7)
                        sent["gym-feedback-v1"] += 1
                    elif r < 0.5:
                        gym.record_feedback(trace, rating=float(rng.randint(1, 5)))
                        sent["gym-feedback-v1"] += 1
        click.echo("[3/3] reading back what arrived ...")
        arrived, sample = _read_back(st.bootstrap_servers, AvroCodec(), tenant, sent)
        click.echo(f"\n      {'topic':24} {'sent':>6} {'arrived':>8}")
        for topic in sent:
            click.echo(f"      {topic:24} {sent[topic]:>6} {arrived[topic]:>8}")
        if sample:
            click.echo(f"\n      a run as stored: trace {sample['trace_id'][:12]}…  model {sample['model_version']}  "
                       f"steps {[s['name'] for s in sample['steps']]}  latency {sample['latency_ms']:.2f} ms")
        if arrived != sent:
            click.echo("error: not everything arrived", err=True)
            sys.exit(1)
        click.echo("\nall events arrived. Next: `agentgym kafka status`, or see README for the SDK.")
    except StackError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("\ninterrupted: stopping what the demo started", err=True)
        sys.exit(130)
    finally:
        if started_here and not keep_running:
            broker.stop()
            click.echo("stopped the local Kafka broker (use --keep-running to leave it up)")


def _read_back(bootstrap: str, codec: Any, tenant: str, sent: Counter[str]) -> tuple[Counter[str], dict | None]:
    import uuid

    from confluent_kafka import Consumer

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"demo-{uuid.uuid4().hex}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe(list(sent))
    arrived: Counter[str] = Counter()
    seen: set[str] = set()
    sample = None
    deadline = time.monotonic() + 60
    try:
        while arrived != sent and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None or m.error():
                continue
            rec = codec.decode(m.value()).record
            if rec["tenant_id"] != tenant or rec["event_id"] in seen:
                continue
            seen.add(rec["event_id"])
            arrived[m.topic()] += 1
            if sample is None and m.topic() == "gym-experiences-v1":
                sample = rec
    finally:
        c.close()
    return arrived, sample
