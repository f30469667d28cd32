"""``agentgym up|status|down|logs``: the local stack in the background (see :mod:`agentgym.ops.stack`)."""

from __future__ import annotations

import json
import os

import click

from agentgym.ops.exceptions import StackError
from agentgym.ops.stack import COMPONENTS, LocalStack

__all__ = ["down", "logs", "status", "up"]


def _echo(line: str) -> None:
    click.echo(line, err=True)


@click.command()
@click.option("--timeout-s", type=float, default=180.0, show_default=True, help="seconds to wait for each component")
def up(timeout_s: float) -> None:
    """Start the broker, the processors, the trainer and the API in the background."""
    stack = LocalStack(log=_echo)
    try:
        result = stack.up(timeout_s=timeout_s)
    except StackError as exc:
        raise click.ClickException(str(exc)) from None
    if not result["started"]:
        click.echo(f"the stack under {stack.root} is already up; nothing changed (`agentgym status`, `agentgym down`)")
    else:
        click.echo(f"the stack is up (state and logs under {stack.root}):")
    for name, where in stack.endpoints().items():
        click.echo(f"  {name:<11} {where}")
    if result["admin_key"]:
        click.echo("admin API key of tenant 'default' (scopes admin,read,ingest); store it now, it is not shown again:")
        click.echo(result["admin_key"])
    elif result["started"]:
        click.echo(f"admin API key: the one printed at the first start (key id {result['admin_key_id']}; "
                   "`agentgym keys create` makes more)")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="one JSON object")
@click.option("--sample-s", type=float, default=1.0, show_default=True, help="seconds between the two samples of events/s")
def status(as_json: bool, sample_s: float) -> None:
    """Each component (up/down, pid, port), consumer lag per topic, events/s, the last event, the spool.

    Exits 0 when every component is up, 3 otherwise (as ``systemctl status`` does).
    """
    st = LocalStack().status(sample_s=sample_s)
    code = 0 if all(c["up"] for c in st["components"].values()) else 3
    if as_json:
        click.echo(json.dumps(st))
        raise SystemExit(code)
    click.echo(f"{'component':<11} {'state':<5} {'pid':>8} {'port':>6}  log")
    for name, c in st["components"].items():
        click.echo(f"{name:<11} {'up' if c['up'] else 'down':<5} {c['pid'] or '-':>8} {c['port'] or '-':>6}  {c['log']}")
    for group, topics in st["lag"].items():
        click.echo(f"lag of {group}: " + (", ".join(f"{t}={n}" for t, n in topics.items()) or "(no committed offsets)"))
    eps = st["events_per_s"]
    click.echo(f"events/s: {'-' if eps is None else eps}   last event: {st['last_event'] or '-'}")
    for name, sp in st["spool"].items():
        click.echo(f"{name} spool: {sp['files']} file(s), {sp['bytes']} bytes in {sp['dir']}")
    for key in ("kafka_error", "clickhouse_error"):
        if key in st:
            click.echo(f"{key.replace('_', ' ')}: {st[key]}")
    raise SystemExit(code)


@click.command()
def down() -> None:
    """Stop everything `agentgym up` started."""
    stopped = LocalStack(log=_echo).down()
    click.echo(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@click.command()
@click.argument("component", required=False, type=click.Choice(COMPONENTS))
@click.option("-f", "--follow", is_flag=True, help="keep printing new lines")
@click.option("-n", "--lines", type=int, default=50, show_default=True)
def logs(component: str | None, follow: bool, lines: int) -> None:
    """Print (or follow) the logs of one component or of all."""
    stack = LocalStack()
    files = [str(stack.log_file(c)) for c in ([component] if component else COMPONENTS) if stack.log_file(c).exists()]
    if not files:
        raise click.ClickException(f"no logs under {stack.logs_dir}; start the stack with `agentgym up`")
    os.execvp("tail", ["tail", "-n", str(lines), *(["-F"] if follow else []), *files])
