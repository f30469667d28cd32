"""``agentgym demo``: the closed loop, end to end, on the embedded default.

Starts its own local stack (Kafka, the Faust worker with embedded ClickHouse, the
trainer service with Ray), runs LM-driven agents and simulated users, and lets the
real pipeline label, build a dataset, fine-tune, gate, A/B test, decide and promote;
then measures base against promoted on held-out requests and writes an HTML report.
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

TARGET_PP = 20.0


@click.command()
@click.option("--fast", is_flag=True, help="a smaller run (fewer users and labels; what CI runs)")
@click.option("--scale", type=float, default=1.0, show_default=True,
              help="multiply users, dataset size, samples per arm and held-out requests")
@click.option("--users", type=int, default=None,
              help="simulated users, the experiment's units (default 240, --fast 160; with an audit sample at least "
                   "what it needs: 480 at the default rate)")
@click.option("--rate", type=float, default=None, help="runs per second the agents aim at (default 25)")
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
    """The closed loop: agents that measurably improve from their own experience.

    Exit status 0 when a fine-tuned model was promoted by the experiment's decision,
    1 when the loop did not close (or the stack failed), 130 when interrupted.
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
    if not result.promoted:
        click.echo("\nthe loop did not close: no fine-tuned model was promoted (see the report and the logs)", err=True)
        sys.exit(1)
    pp = 100 * result.improvement
    verdict = "meets" if pp >= TARGET_PP else "falls short of"
    click.echo(f"\nclosed loop in {result.timings.get('total_s', 0):.0f}s: {result.winner_version} promoted, "
               f"{pp:+.1f} pp on held-out requests ({verdict} the {TARGET_PP:.0f} pp target)")
