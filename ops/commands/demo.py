"""``agentgym demo``: the closed loop, end to end, on the embedded default.

Starts its own local stack (Kafka, the Faust worker with embedded ClickHouse, the
trainer service with Ray), runs LM-driven agents and simulated users, and lets the
real pipeline label, build datasets, fine-tune, gate, A/B test, decide and promote, in
three phases (improvement; drift and recovery; a bad candidate rolled back); then
measures each phase on held-out requests and writes an HTML report.
See :mod:`agentgym.ops.demo.loop`.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

import click

from agentgym.ops.demo.loop import DemoConfig, audit_shortfall, run_demo
from agentgym.ops.exceptions import StackError
from agentgym.ops.settings import StackSettings

TARGET_PP = 10.0  # each promotion's held-out gain the demo aims at


@click.command()
@click.option("--fast", is_flag=True, help="a smaller run (fewer users and labels, agents idle while a job trains; what CI runs)")
@click.option("--scale", type=float, default=1.0, show_default=True,
              help="multiply users, dataset size, samples per arm and held-out requests")
@click.option("--users", type=int, default=None,
              help="simulated users at the start, the experiment's units (default 1200, --fast 1000; with an audit sample at "
                   "least what it needs: 480 at the default rate); new users keep arriving (20% of the requests)")
@click.option("--rate", type=float, default=None, help="runs per second the agents aim at (default 25, --fast 40)")
@click.option("--timeout", "timeout_s", type=float, default=None, help="give up when the loop has not closed after this many seconds")
@click.option("--seed", type=int, default=None, help="seed of the traffic and the users (default 7)")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="where the HTML report goes (default <home>/demo/report.html)")
@click.option("--keep-running", is_flag=True, help="leave the demo's stack running afterwards (the next run stops it)")
@click.option("--audit-rate", "audit_rate", type=float, default=0.2, show_default=True,
              help="the experiment's audit sample: fraction of units simulated reviewers label (0: none, the decision "
                   "then tests the labeller's labels)")
@click.option("--review-error", "review_error", type=float, default=0.03, show_default=True,
              help="how often a simulated reviewer's label contradicts the truth (seeded)")
def demo(fast: bool, scale: float, users: int | None, rate: float | None, timeout_s: float | None, seed: int | None,
         report_path: Path | None, keep_running: bool, audit_rate: float, review_error: float) -> None:
    """The closed loop, in three phases: agents that keep improving from their own experience.

    Phase 1: the first fine-tuned model beats the base and is promoted. Phase 2: the
    traffic drifts (a new tool), the drift detector alerts, a candidate trained from the
    champion is promoted. Phase 3: the demo injects a broken dataset; its candidate is
    rolled back by the live A/B test and the champion keeps serving.

    Exit status 0 when all three phases did that, 1 when one did not (or the stack
    failed), 130 when interrupted.
    """
    def _stop(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    cfg = DemoConfig.preset(fast=fast, scale=scale, users=users, rate=rate, timeout_s=timeout_s, seed=seed,
                            audit_rate=audit_rate, review_error=review_error)
    problem = audit_shortfall(cfg)
    if problem:
        raise click.UsageError(problem)
    home = StackSettings().home
    try:
        result = run_demo(cfg, home, click.echo, report_path=report_path, keep_running=keep_running)
    except StackError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("\ninterrupted: stopped what the demo started", err=True)
        sys.exit(130)
    problems = phase_problems(result.phases)
    for line in problems:
        click.echo(f"\n{line}", err=True)
    gains = ", ".join(f"phase {p['phase']} {100 * p['heldout']['diff']:+.1f} pp" for p in result.phases if p.get("heldout"))
    click.echo(f"\nthree phases in {result.timings.get('total_s', 0):.0f}s: {gains} on held-out requests; champion "
               f"{result.final_champion or 'none'}")
    if problems:
        sys.exit(1)


def phase_problems(phases: list[dict[str, Any]]) -> list[str]:
    """What the run's phases failed to show (empty: all three did what the demo promises)."""
    by = {p["phase"]: p for p in reversed(phases)}
    out = []
    for n, what in ((1, "the first candidate was not promoted"), (2, "the candidate after the drift was not promoted")):
        p = by.get(n)
        if p is None or not p.get("promoted"):
            out.append(f"phase {n}: {what} ({p.get('decision') or p.get('status') if p else 'no experiment'})")
        elif p.get("heldout") and p["heldout"]["diff"] * 100 < TARGET_PP:
            out.append(f"phase {n}: promoted, but only {100 * p['heldout']['diff']:+.1f} pp on held-out requests "
                       f"(target {TARGET_PP:+.0f} pp)")
    bad = by.get(3)
    if bad is None or bad.get("status") != "rolled_back":
        out.append("phase 3: the bad candidate was not rolled back (" + (bad.get("decision") or bad.get("status") or "undecided"
                                                                          if bad else "never tested") + ")")
    return out
