"""``agentgym tenants set|list|retention|masking|usage|plans``: tenant plans (and retention) on ``gym-tenants-v1``, usage on
``gym-tenant-usage-v1``."""

from __future__ import annotations

import json
from typing import Any

import click
from confluent_kafka import KafkaException

from agentgym.gateway.exceptions import GatewayError
from agentgym.gateway.masking import DEFAULT_POLICY, policy_record, set_masking, tenant_key
from agentgym.gateway.plans import PLANS, latest_plan, list_plans, set_plan, set_retention
from agentgym.gateway.settings import GatewaySettings
from agentgym.gateway.usage import read_usage
from agentgym.processors.retention import KINDS, Retention, RetentionSettings
from agentgym.producers.exceptions import BrokerError

__all__ = ["tenants"]

_BOOTSTRAP = click.option("--bootstrap", default=None, help="Kafka [env AGENTGYM_BOOTSTRAP_SERVERS; 127.0.0.1:9092]")


def _bootstrap(value: str | None) -> str:
    return value or GatewaySettings().bootstrap_servers


def _limit(v: object) -> str:
    return "unlimited" if v is None else f"{v:,}" if isinstance(v, int) else str(v)


@click.group()
def tenants() -> None:
    """Tenant plans: agents, runs per month, request rate and retention; what each tenant used."""


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
    click.echo(f"{'tenant':<24} {'plan':<12} {'agents':>10} {'runs/month':>12} {'rate/s':>8} {'burst':>8}  retention (days)")
    for r in rows:
        click.echo(f"{r['tenant_id']:<24} {r['plan']:<12} {_limit(r['max_agents']):>10} {_limit(r['max_runs_per_month']):>12} "
                   f"{_limit(r['rate_per_s']):>8} {_limit(r['burst']):>8}  {_retention_summary(r.get('retention'))}")


def _retention_summary(retention: dict[str, int | None] | None) -> str:
    own = {k: v for k, v in (retention or {}).items() if v is not None}
    return " ".join(f"{k.removesuffix('_days')}={v}" for k, v in own.items()) or "default"


@tenants.command()
@_BOOTSTRAP
@click.argument("tenant")
@click.option("--events-days", type=int, default=None, help="raw events in ClickHouse (experiences, feedback, dead letters)")
@click.option("--outcomes-days", type=int, default=None, help="outcomes (labels) in ClickHouse")
@click.option("--stats-days", type=int, default=None, help="experiment statistics snapshots in ClickHouse")
@click.option("--datasets-days", type=int, default=None, help="dataset files and their ClickHouse rows")
@click.option("--models-days", type=int, default=None, help="adapter files of models neither champion nor candidate")
@click.option("--reset", is_flag=True, help="back to the platform's defaults (before the days given, if any)")
@click.option("--json", "as_json", is_flag=True, help="print the effective retention as JSON")
def retention(bootstrap: str | None, tenant: str, events_days: int | None, outcomes_days: int | None,
              stats_days: int | None, datasets_days: int | None, models_days: int | None, reset: bool,
              as_json: bool) -> None:
    """Show a tenant's retention, or set it with the options (days; the rest of its plan is kept).

    The worker applies a change to ClickHouse within AGENTGYM_RETENTION_INTERVAL_S, the trainer
    service to dataset and model files; the defaults are AGENTGYM_RETENTION_*_DAYS (docs/privacy.md).
    """
    days = {"events_days": events_days, "outcomes_days": outcomes_days, "stats_days": stats_days,
            "datasets_days": datasets_days, "models_days": models_days}
    servers = _bootstrap(bootstrap)
    try:
        if reset or any(v is not None for v in days.values()):
            record = set_retention(servers, tenant, GatewaySettings().default_plan, reset=reset, **days)
        else:
            record = latest_plan(servers, tenant)
        own = Retention(**((record or {}).get("retention") or {}))
    except (GatewayError, ValueError, BrokerError) as exc:
        raise click.ClickException(str(exc)) from None
    except KafkaException as exc:
        raise click.ClickException(f"Kafka at {servers}: {exc.args[0].str() if exc.args else exc}") from None
    defaults = RetentionSettings().defaults
    effective = own.over(defaults)
    if as_json:
        click.echo(json.dumps({"tenant_id": tenant, **effective.record(),
                               "own": {k: v for k, v in own.record().items() if v is not None}}))
        return
    click.echo(f"tenant {tenant}: retention in days")
    for kind in KINDS:
        source = "tenant" if own.days(kind) is not None else "default"
        click.echo(f"  {kind:<10} {effective.days(kind):>6}  ({source})")


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


def _policy_summary(p: dict[str, Any] | None) -> str:
    if p is None:
        return "defaults (built-in detectors on the default fields, plain placeholders)"
    if not p.get("enabled", True):
        return "off"
    det = ",".join(p["detectors"]) if p.get("detectors") is not None else "default detectors"
    fields = ",".join(p["fields"]) if p.get("fields") is not None else "default fields"
    pats = f", patterns {', '.join(sorted(p['patterns']))}" if p.get("patterns") else ""
    return f"on: {det} on {fields}{pats}{', hashed placeholders' if p.get('hash') else ''}"


@tenants.command()
@_BOOTSTRAP
@click.argument("tenant")
@click.option("--agent", default=None, help="set this agent's own policy (it replaces the tenant's for the agent)")
@click.option("--on/--off", "enabled", default=None, help="masking on or off")
@click.option("--detectors", default=None, help="comma-separated built-in detectors: email, phone, api_key, credit_card, ip_address ('' none)")
@click.option("--fields", default=None, help="comma-separated fields: input, output, steps, error, comment, correction, metadata")
@click.option("--pattern", "patterns", multiple=True, metavar="NAME=REGEX", help="a custom detector (repeatable; replaces the current ones)")
@click.option("--hash/--no-hash", "hashed", default=None, help="placeholders with a keyed hash (<EMAIL:3f9a1c2b>; needs AGENTGYM_GATEWAY_MASK_SECRET)")
@click.option("--reset", is_flag=True, help="remove the policy (the tenant: the gateway's defaults; an agent: the tenant's)")
def masking(bootstrap: str | None, tenant: str, agent: str | None, enabled: bool | None, detectors: str | None,
            fields: str | None, patterns: tuple[str, ...], hashed: bool | None, reset: bool) -> None:
    """Show or set a tenant's (or agent's) masking at ingestion in the API (docs/privacy.md).

    Without options it shows the policy; options change only what they name."""
    server = _bootstrap(bootstrap)
    current = (latest_plan(server, tenant) or {}).get("masking")
    changes = enabled is not None or detectors is not None or fields is not None or patterns or hashed is not None
    if not changes and not reset:
        click.echo(f"tenant {tenant}: {_policy_summary(current)}")
        for name, p in sorted(((current or {}).get("agents") or {}).items()):
            click.echo(f"  agent {name}: {_policy_summary(p)}")
        return
    try:
        if reset:
            policy = None
        else:
            base = dict(((current or {}).get("agents") or {}).get(agent) or current or DEFAULT_POLICY) if agent else dict(current or DEFAULT_POLICY)
            base.pop("agents", None)
            if patterns:
                pairs = [p.split("=", 1) for p in patterns]
                bad = [p for p, pair in zip(patterns, pairs) if len(pair) != 2 or not pair[0]]
                if bad:
                    raise click.BadParameter(f"{bad[0]!r} is not NAME=REGEX", param_hint="--pattern")
                base["patterns"] = dict(pairs)  # type: ignore[arg-type]
            policy = policy_record(enabled=base["enabled"] if enabled is None else enabled,
                                   detectors=base["detectors"] if detectors is None else detectors,
                                   fields=base["fields"] if fields is None else fields,
                                   patterns=base["patterns"], hash=base["hash"] if hashed is None else hashed)
        r = set_masking(server, tenant, policy, agent_id=agent, default_plan=GatewaySettings().default_plan)
    except GatewayError as exc:
        raise click.ClickException(str(exc)) from None
    written = r["masking"]
    shown = ((written or {}).get("agents") or {}).get(agent) if agent else written
    click.echo(f"tenant {tenant}{f' agent {agent}' if agent else ''}: "
               f"{_policy_summary(shown) if shown is not None or not agent else 'the tenant policy'}")


@tenants.command("masking-key")
@click.argument("tenant")
def masking_key(tenant: str) -> None:
    """Print the tenant's masking hash key (from AGENTGYM_GATEWAY_MASK_SECRET), for its SDKs' AGENTGYM_MASK_HASH_KEY,
    so placeholders hashed by the SDK and by the API join."""
    secret = GatewaySettings().mask_secret.get_secret_value()
    if not secret:
        raise click.ClickException("AGENTGYM_GATEWAY_MASK_SECRET is unset: there is no key to derive")
    click.echo(tenant_key(secret, tenant).decode())
