"""``agentgym processors run``: the Faust worker (the same as ``faust -A agentgym.processors.app worker``)."""

from __future__ import annotations

import os
import sys

import click


@click.group()
def processors() -> None:
    """Agent Gym's stream processors (one Faust app)."""


@processors.command()
@click.option("--only", default=None, help="comma-separated processors to run (sink, labeller, experiments, datasets, otel) [env AGENTGYM_PROCESSORS]")
@click.option("--loglevel", "-l", default="info", show_default=True, type=click.Choice(["crit", "error", "warn", "info", "debug"]))
def run(only: str | None, loglevel: str) -> None:
    """Run a worker in the foreground; run more with the same AGENTGYM_APP_ID to share partitions."""
    if only:
        os.environ["AGENTGYM_PROCESSORS"] = only
    argv = [sys.executable, "-m", "faust", "-A", "agentgym.processors.app", "worker", "-l", loglevel]
    os.execv(sys.executable, argv)  # the worker owns the process: signals reach Faust directly
