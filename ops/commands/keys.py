"""``agentgym keys create|list|revoke``: the gateway's API keys on ``gym-api-keys-v1``."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import click

from agentgym.gateway.exceptions import GatewayError, KeyNotFoundError
from agentgym.gateway.keys import create_key, list_keys, revoke_key
from agentgym.gateway.settings import GatewaySettings

__all__ = ["keys"]

_BOOTSTRAP = click.option("--bootstrap", default=None, help="Kafka [env AGENTGYM_BOOTSTRAP_SERVERS; 127.0.0.1:9092]")


def _bootstrap(value: str | None) -> str:
    return value or GatewaySettings().bootstrap_servers


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


@click.group()
def keys() -> None:
    """API keys: shown once, stored only as hashes, revocable on every replica within seconds."""


@keys.command()
@_BOOTSTRAP
@click.option("--tenant", required=True, help="the tenant the key acts as")
@click.option("--scopes", default="ingest", show_default=True, help="comma-separated: ingest, read, admin, annotate (reviewers of audit samples)")
@click.option("--name", default=None, help="a label for people")
def create(bootstrap: str | None, tenant: str, scopes: str, name: str | None) -> None:
    """Create a key; it is printed once, as the last line."""
    try:
        key, record = create_key(_bootstrap(bootstrap), tenant, [s.strip() for s in scopes.split(",") if s.strip()], name)
    except GatewayError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"key {record['key_id']} for tenant {tenant} (scopes {','.join(record['scopes'])}); "
               "store it now, it is not shown again:")
    click.echo(key)


@keys.command("list")
@_BOOTSTRAP
@click.option("--tenant", default=None)
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
def list_(bootstrap: str | None, tenant: str | None, as_json: bool) -> None:
    """List keys (never their secrets)."""
    rows = list_keys(_bootstrap(bootstrap), tenant)
    if as_json:
        for r in rows:
            click.echo(json.dumps(r))
        return
    if not rows:
        click.echo("no API keys")
        return
    click.echo(f"{'key_id':<14} {'tenant':<24} {'scopes':<20} {'status':<8} {'created (UTC)':<19}  name")
    for r in rows:
        click.echo(f"{r['key_id']:<14} {r['tenant_id']:<24} {','.join(r['scopes']):<20} {r['status']:<8} "
                   f"{_when(r['created_ms']):<19}  {r['name'] or ''}")


@keys.command()
@_BOOTSTRAP
@click.argument("key_id")
def revoke(bootstrap: str | None, key_id: str) -> None:
    """Revoke a key (by its id, the part after agk_)."""
    try:
        record = revoke_key(_bootstrap(bootstrap), key_id)
    except KeyNotFoundError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"revoked key {record['key_id']} of tenant {record['tenant_id']}")
