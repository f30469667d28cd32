"""``agentgym tenants set|list|usage|plans``: tenant plans on ``gym-tenants-v1``, usage on ``gym-tenant-usage-v1``."""

from __future__ import annotations

import json

import click

from agentgym.gateway.exceptions import GatewayError
from agentgym.gateway.plans import PLANS, list_plans, set_plan
from agentgym.gateway.settings import GatewaySettings
from agentgym.gateway.usage import read_usage

__all__ = ["tenants"]

_BOOTSTRAP = click.option("--bootstrap", default=None, help="Kafka [env AGENTGYM_BOOTSTRAP_SERVERS; 127.0.0.1:9092]")


def _bootstrap(value: str | None) -> str:
    return value or GatewaySettings().bootstrap_servers


def _limit(v: object) -> str:
    return "unlimited" if v is None else f"{v:,}" if isinstance(v, int) else str(v)


@click.group()
def tenants() -> None:
    """Tenant plans: agents, runs per month and request rate; what each tenant used."""


@tenants.command("set")
@_BOOTSTRAP
@click.argument("tenant")
@click.option("--plan", required=True, help="free, pro, business, enterprise or custom")
@click.option("--max-agents", type=int, default=None, help="override the plan's agents")
@click.option("--max-runs", type=int, default=None, help="override the plan's runs per month")
@click.option("--rate", type=float, default=None, help="requests/s per API key (default: the gateway's)")
@click.option("--burst", type=float, default=None, help="token-bucket capacity per API key")
def set_(bootstrap: str | None, tenant: str, plan: str, max_agents: int | None, max_runs: int | None,
         rate: float | None, burst: float | None) -> None:
    """Set a tenant's plan (every gateway replica applies it within a second)."""
    try:
        r = set_plan(_bootstrap(bootstrap), tenant, plan, max_agents=max_agents, max_runs_per_month=max_runs,
                     rate_per_s=rate, burst=burst)
    except GatewayError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"tenant {tenant}: plan {r['plan']}, {_limit(r['max_agents'])} agents, "
               f"{_limit(r['max_runs_per_month'])} runs/month")


@tenants.command("list")
@_BOOTSTRAP
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
def list_(bootstrap: str | None, as_json: bool) -> None:
    """List tenants that have a plan record (others have the gateway's default plan)."""
    rows = list_plans(_bootstrap(bootstrap))
    if as_json:
        for r in rows:
            click.echo(json.dumps(r))
        return
    if not rows:
        click.echo("no tenant plans (every tenant has the gateway's default plan)")
        return
    click.echo(f"{'tenant':<24} {'plan':<12} {'agents':>10} {'runs/month':>12} {'rate/s':>8} {'burst':>8}")
    for r in rows:
        click.echo(f"{r['tenant_id']:<24} {r['plan']:<12} {_limit(r['max_agents']):>10} {_limit(r['max_runs_per_month']):>12} "
                   f"{_limit(r['rate_per_s']):>8} {_limit(r['burst']):>8}")


@tenants.command()
@_BOOTSTRAP
@click.option("--tenant", default=None)
@click.option("--month", default=None, help="YYYY-MM (UTC); default: every month")
def usage(bootstrap: str | None, tenant: str | None, month: str | None) -> None:
    """Runs and agents per tenant and month, as the gateways count them for the plan limits."""
    rows = read_usage(_bootstrap(bootstrap), tenant, month)
    if not rows:
        click.echo("no usage reported")
        return
    click.echo(f"{'tenant':<24} {'month':<8} {'runs':>10} {'agents':>7}  replicas")
    for r in rows:
        click.echo(f"{r['tenant_id']:<24} {r['month']:<8} {r['runs']:>10,} {len(r['agents']):>7}  {r['replicas']}")


@tenants.command()
def plans() -> None:
    """The built-in plans."""
    for p in PLANS.values():
        click.echo(f"{p.name:<12} {_limit(p.max_agents):>10} agents {_limit(p.max_runs_per_month):>12} runs/month")
