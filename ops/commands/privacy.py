"""``agentgym privacy delete|deletions``: delete a user's data (docs/privacy.md, "Deleting a user's data").

``delete`` records the request on the compacted ``gym-deletions-v1``
(:mod:`agentgym.processors.deletions`), waits until the ClickHouse sink (the only process
that may write the embedded store) has applied it, flags the models trained on the
datasets it rewrote, and records both steps in the audit log (``gym-audit-v1``, action
``privacy.delete``, key ``cli:<login>``).
"""

from __future__ import annotations

import getpass
import json
from typing import Any

import click

from agentgym.gateway.audit import audit_record
from agentgym.gateway.exceptions import InvalidIdError
from agentgym.gateway.ids import check_id
from agentgym.gateway.settings import GatewaySettings
from agentgym.processors.deletions import DeletionLog, deletion_request, send_request, wait_applied
from agentgym.producers.exceptions import BrokerError
from agentgym.producers.records import RecordProducer
from agentgym.trainers.exceptions import RegistryError
from agentgym.trainers.registry import ModelRegistry

__all__ = ["privacy"]

_BOOTSTRAP = click.option("--bootstrap", default=None, help="Kafka [env AGENTGYM_BOOTSTRAP_SERVERS; 127.0.0.1:9092]")


def _bootstrap(value: str | None) -> str:
    return value or GatewaySettings().bootstrap_servers


def _audit(bootstrap: str, tenant: str, action: str, target: str, detail: str, outcome: str = "ok") -> None:
    producer = RecordProducer(bootstrap, linger_ms=0)
    try:
        producer.send("audit", audit_record(tenant_id=tenant, key_id=f"cli:{getpass.getuser()}", action=action,
                                            target=target, outcome=outcome, detail=detail))
    finally:
        producer.close()


@click.group()
def privacy() -> None:
    """Privacy: delete a user's data everywhere it is kept."""


@privacy.command()
@_BOOTSTRAP
@click.option("--tenant", required=True, help="the tenant the user belongs to")
@click.option("--user", "user_id", required=True, help="the user id the agents recorded (Experience/Feedback user_id)")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="wait until the processors applied it, then flag the models trained on the user's data")
@click.option("--timeout", type=float, default=120.0, show_default=True, help="seconds to wait")
@click.option("--json", "as_json", is_flag=True, help="print the deletion record as JSON")
def delete(bootstrap: str | None, tenant: str, user_id: str, wait: bool, timeout: float, as_json: bool) -> None:
    """Delete a user's experiences, feedback, outcomes and annotations: ClickHouse rows, datasets, and every replay."""
    bs = _bootstrap(bootstrap)
    try:
        check_id("tenant", tenant)
        record = deletion_request(tenant, user_id, f"cli:{getpass.getuser()}")
    except (InvalidIdError, ValueError) as exc:
        raise click.BadParameter(str(exc)) from None
    try:
        send_request(bs, record)
        _audit(bs, tenant, "privacy.delete", record["event_id"], f"requested for user subject {record['subject']}")
    except BrokerError as exc:
        raise click.ClickException(f"the deletion was not recorded: {exc}") from None
    if not wait:
        click.echo(json.dumps(record) if as_json else f"deletion {record['event_id']} requested for user {user_id!r} of tenant {tenant}")
        return
    applied = wait_applied(bs, record, timeout)
    if applied is None:
        raise click.ClickException(
            f"deletion {record['event_id']} is recorded but was not applied within {timeout:g}s: is the Faust worker with the "
            "sink running (agentgym up / agentgym processors run)? It applies the request when it starts, and every reader "
            "already skips the user's data")
    flagged = _flag_models(bs, applied)
    _audit(bs, tenant, "privacy.delete.applied", record["event_id"],
           f"rows {applied['deleted_rows']}; datasets {applied['datasets']}; models flagged {flagged}")
    if as_json:
        click.echo(json.dumps({**applied, "models_flagged": flagged}))
        return
    click.echo(f"deletion {record['event_id']} applied: {len(applied['trace_ids'])} trace(s); rows deleted: "
               + ", ".join(f"{t} {n}" for t, n in sorted(applied["deleted_rows"].items())))
    click.echo(f"datasets rewritten: {', '.join(applied['datasets']) or 'none'}; models flagged: {', '.join(flagged) or 'none'}")


def _flag_models(bootstrap: str, applied: dict[str, Any]) -> list[str]:
    if not applied["datasets"]:
        return []
    try:
        return [mv.model_version for mv in ModelRegistry(bootstrap).flag_deleted_data(applied["tenant_id"], applied["datasets"], applied["event_id"])]
    except RegistryError as exc:
        raise click.ClickException(f"the deletion was applied but the models could not be flagged: {exc}") from None


@privacy.command("deletions")
@_BOOTSTRAP
@click.option("--tenant", default=None, help="only this tenant's")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
def deletions(bootstrap: str | None, tenant: str | None, as_json: bool) -> None:
    """List the recorded deletions (the latest per user) and their status."""
    log = DeletionLog(_bootstrap(bootstrap))
    try:
        log.catch_up(to_end=True)
    except TimeoutError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        log.close()
    rows = sorted((r for r in log.records.values() if tenant is None or r["tenant_id"] == tenant), key=lambda r: r["requested_ms"])
    for r in rows:
        if as_json:
            click.echo(json.dumps(r))
        else:
            click.echo(f"{r['event_id']}  {r['tenant_id']:<20} {r['status']:<9} traces {len(r['trace_ids']):>5}  "
                       f"datasets {len(r['datasets'])}  by {r['requested_by']}")
    if not rows and not as_json:
        click.echo("no deletions recorded")
