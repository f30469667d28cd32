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
from pathlib import Path
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


def _simulate_run(gym: Any, rng: random.Random, i: int, demo_run: str) -> str:
    """One simulated agent run: pick a tool for a request, maybe fail, answer."""
    intent = rng.choice(list(_TOOLS))
    tool, arg = _TOOLS[intent]
    value = rng.choice(_CITIES) if arg == "city" else str(rng.randint(1000, 9999))
    request = {"weather": f"What's the weather in {value}?", "order": f"Where is order {value}?",
               "refund": f"I want a refund for order {value}", "faq": f"How do I {value}?"}[intent]
    model_version = "base-v1"
    with gym.run(request, model_name="tiny-llama", model_version=model_version, user_id=f"user-{i % 50}",
                 metadata={"demo_run": demo_run}) as run:
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


def _start_processors(settings: StackSettings, bootstrap: str, processors: str) -> tuple[Any, int, Path]:
    """The Faust worker (sink and labeller) as a child process; returns it, its HTTP read port, its log."""
    import os
    import subprocess

    from ops.kafka.broker import free_port

    log_path = settings.home / "logs" / "processors.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    port = int(os.environ.get("AGENTGYM_HTTP_PORT", "8123"))
    import socket

    with socket.socket() as s_:
        if s_.connect_ex(("127.0.0.1", port)) == 0:
            port = free_port()  # something else (a ClickHouse server?) has 8123
    env = dict(os.environ, AGENTGYM_BOOTSTRAP_SERVERS=bootstrap, AGENTGYM_PROCESSORS=processors,
               AGENTGYM_HTTP_PORT=str(port), AGENTGYM_HOME=str(settings.home),
               AGENTGYM_FAUST_WEB_PORT=os.environ.get("AGENTGYM_FAUST_WEB_PORT", str(free_port())))
    env.setdefault("AGENTGYM_CLICKHOUSE_URL", f"chdb://{settings.home / 'clickhouse'}")
    env.setdefault("AGENTGYM_LABELLER_QUIET_PERIOD_S", "3")  # label a demo run 3 s after its last event
    with open(log_path, "ab") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "faust", "-A", "processors.app", "worker", "-l", "info"],
                                env=env, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return proc, port, log_path


def _query(port: int, sql: str) -> list[tuple[Any, ...]]:
    import clickhouse_connect

    client = clickhouse_connect.get_client(host="127.0.0.1", port=port)
    try:
        return [tuple(r) for r in client.query(sql).result_rows]
    finally:
        client.close()


def _wait(cond: Any, timeout_s: float, proc: Any, log_path: Path) -> Any:
    import logging

    # polling a server that is still starting: its connection errors are expected here
    for name in ("clickhouse_connect", "urllib3"):
        logging.getLogger(name).setLevel(logging.ERROR)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StackError(f"the processors worker exited ({proc.returncode}); see {log_path}")
        try:
            value = cond()
            if value:
                return value
        except Exception:
            pass
        time.sleep(0.5)
    raise StackError(f"timed out after {timeout_s:.0f}s; see {log_path}")


@click.command()
@click.option("--events", "n_runs", type=int, default=500, show_default=True, help="simulated agent runs")
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--keep-running", is_flag=True, help="leave the local stack running afterwards")
def demo(n_runs: int, seed: int, keep_running: bool) -> None:
    """Start the local stack and send simulated agent traffic through the real pipeline."""
    import uuid

    from producers import AgentGym
    from ops.topics import ensure_topics

    settings = StackSettings()
    broker = KafkaBroker.from_settings(settings)
    started_here = not broker.status().running
    worker = None

    def _stop(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    demo_run = uuid.uuid4().hex[:8]  # each demo run counts only its own events: re-runs are independent
    try:
        click.echo(f"[1/4] starting Kafka (KRaft) on {broker.bootstrap_servers} ...")
        t0 = time.monotonic()
        st = broker.start()
        ensure_topics(st.bootstrap_servers)
        click.echo(f"      kafka up in {time.monotonic() - t0:.1f}s (pid {st.pid}, data {st.data_dir})")

        click.echo("[2/4] starting the stream processors (Faust worker: ClickHouse sink, labeller) ...")
        worker, port, log_path = _start_processors(settings, st.bootstrap_servers, "sink,labeller")
        _wait(lambda: _query(port, "SELECT 1"), 120, worker, log_path)
        click.echo(f"      embedded ClickHouse serving reads on http://127.0.0.1:{port} (log: {log_path})")

        click.echo(f"[3/4] {n_runs} simulated agent runs with feedback ...")
        rng = random.Random(seed)
        tenant = "demo"
        sent: Counter[str] = Counter()
        with AgentGym(st.bootstrap_servers, tenant_id=tenant, agent_id="router",
                      spool_dir=settings.home / "spool") as gym:
            with click.progressbar(range(n_runs), label="      runs") as bar:
                for i in bar:
                    trace = _simulate_run(gym, rng, i, demo_run)
                    sent["experiences"] += 1
                    r = rng.random()
                    if r < 0.4:
                        gym.record_feedback(trace, thumbs_up=rng.random() < 0.7, metadata={"demo_run": demo_run})
                        sent["feedback"] += 1
                    elif r < 0.5:
                        gym.record_feedback(trace, rating=float(rng.randint(1, 5)), metadata={"demo_run": demo_run})
                        sent["feedback"] += 1

        click.echo("[4/4] waiting until ClickHouse shows every event and every run's outcome ...")
        where = f"tenant_id = 'demo' AND metadata['demo_run'] = '{demo_run}'"

        def stored() -> Counter[str]:
            return Counter({t: _query(port, f"SELECT count() FROM agentgym.v_{t} WHERE {where}")[0][0] for t in sent})

        t0 = time.monotonic()
        _wait(lambda: stored() == sent, 120, worker, log_path)
        got = stored()
        labelled_sql = (f"SELECT count() FROM agentgym.v_outcomes_latest WHERE tenant_id = 'demo' AND trace_id IN "
                        f"(SELECT trace_id FROM agentgym.v_experiences WHERE {where})")
        _wait(lambda: _query(port, labelled_sql)[0][0] >= sent["experiences"], 180, worker, log_path)
        click.echo(f"      all in ClickHouse {time.monotonic() - t0:.1f}s after the last run\n")
        click.echo(f"      {'table':12} {'sent':>6} {'stored':>7}")
        for t in sent:
            click.echo(f"      {t:12} {sent[t]:>6} {got[t]:>7}")
        rows = _query(port, f"SELECT label, labeller_kind, count() FROM (SELECT label, splitByChar(':', labeller)[1] AS labeller_kind "
                            f"FROM agentgym.v_outcomes_latest WHERE tenant_id = 'demo' AND trace_id IN "
                            f"(SELECT trace_id FROM agentgym.v_experiences WHERE {where})) GROUP BY label, labeller_kind ORDER BY label, labeller_kind")
        click.echo(f"\n      {'outcome':8} {'decided by':12} {'runs':>5}")
        for label, by, n in rows:
            click.echo(f"      {label:8} {by:12} {n:>5}")
        click.echo("\nquery it yourself while the stack runs (--keep-running):  agentgym sql \"SELECT * FROM v_runs LIMIT 5\"")
    except StackError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("\ninterrupted: stopping what the demo started", err=True)
        sys.exit(130)
    finally:
        if worker is not None and not keep_running:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(60)
            except Exception:
                worker.kill()
            click.echo("stopped the processors worker")
        if started_here and not keep_running:
            broker.stop()
            click.echo("stopped the local Kafka broker (use --keep-running to leave it up)")
