"""``agentgym models list|show|promote|retire``: the model registry on ``gym-models-v1``.

``show VERSION`` adds the version's lineage (:mod:`agentgym.trainers.lineage`): parents down
to the base model, with datasets, jobs, experiments and decisions.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime, timezone
from typing import Any

import click

from agentgym.trainers.exceptions import RegistryError
from agentgym.trainers.lineage import load_lineage, render_lineage
from agentgym.trainers.registry import ModelRegistry
from agentgym.trainers.settings import TrainerServiceSettings

__all__ = ["models"]


def _registry(bootstrap: str | None) -> Any:
    return ModelRegistry(bootstrap or TrainerServiceSettings().bootstrap_servers)


_BOOTSTRAP = click.option("--bootstrap", default=None, help="Kafka [env AGENTGYM_BOOTSTRAP_SERVERS; 127.0.0.1:9092]")


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


@click.group()
def models() -> None:
    """The model registry: versions, their adapters, metrics and status."""


@models.command("list")
@_BOOTSTRAP
@click.option("--tenant", default=None)
@click.option("--agent", default=None)
@click.option("--status", type=click.Choice(["candidate", "champion", "retired", "rejected"]), default=None)
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
def list_(bootstrap: str | None, tenant: str | None, agent: str | None, status: str | None, as_json: bool) -> None:
    """List model versions, newest first."""
    registry = _registry(bootstrap)
    try:
        rows = [m for m in registry.versions(tenant, agent) if status is None or m.status == status]
    except RegistryError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        for m in rows:
            click.echo(json.dumps(asdict(m), default=dict))
        return
    if not rows:
        click.echo("no model versions")
        return
    click.echo(f"{'model_version':<40} {'status':<10} {'eval_loss':>9}  {'created (UTC)':<19}  tenant/agent  dataset")
    for m in rows:
        loss = m.metrics.get("gate_eval_loss", m.metrics.get("eval_loss"))
        click.echo(f"{m.model_version:<40} {m.status:<10} {'' if loss is None else f'{loss:.4f}':>9}  "
                   f"{_when(m.created_ms):<19}  {m.tenant_id}/{m.agent_id}  {m.dataset_id or '-'}")


def _one(bootstrap: str | None, action: str, version: str) -> None:
    registry = _registry(bootstrap)
    try:
        m = getattr(registry, action)(version)
    except RegistryError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        registry.close()
    if action == "get":
        click.echo(json.dumps(asdict(m), default=dict, indent=2, sort_keys=True))
    else:
        click.echo(f"{m.model_version}: {m.status}")


@models.command()
@click.argument("version")
@_BOOTSTRAP
@click.option("--jobs-dir", default=None, help="the trainer's job records [env AGENTGYM_TRAINER_JOBS_DIR]")
@click.option("--lineage", "as_lineage", is_flag=True,
              help="print only the lineage, as text: each generation down to the base model")
def show(version: str, bootstrap: str | None, jobs_dir: str | None, as_lineage: bool) -> None:
    """Show one version: base, adapter, dataset, hyperparameters, metrics, status, and its lineage.

    JSON (one object, as before, with a ``lineage`` list added: the chain of parents down
    to the base model, newest first, each with its dataset, training job, what training
    started from, and the experiments and decisions that promoted or retired it; and
    ``lineage_warnings`` when the job store, experiments or decisions could not be read);
    ``--lineage`` prints that chain as text.
    """
    settings = TrainerServiceSettings()
    bootstrap = bootstrap or settings.bootstrap_servers
    registry = _registry(bootstrap)
    warnings: list[str] = []
    try:
        versions = registry.versions()
        chain = load_lineage(bootstrap, version, jobs_dir or settings.trainer_jobs_dir, versions=versions,
                             on_error=warnings.append)
    except RegistryError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        registry.close()
    if as_lineage:
        for w in warnings:
            click.echo(f"warning: {w}", err=True)
        click.echo(f"lineage of {version} (newest first):")
        for line in render_lineage(chain):
            click.echo(f"  {line}")
        return
    m = next(mv for mv in versions if mv.model_version == version)
    shown: dict[str, object] = {**asdict(m), "lineage": [asdict(g) for g in chain]}
    if warnings:  # a source of the lineage that could not be read (the output stays one JSON object)
        shown["lineage_warnings"] = warnings
    click.echo(json.dumps(shown, default=dict, indent=2, sort_keys=True))


@models.command()
@click.argument("version")
@_BOOTSTRAP
def promote(version: str, bootstrap: str | None) -> None:
    """Make VERSION its agent's champion (the previous champion is retired)."""
    _one(bootstrap, "promote", version)


@models.command()
@click.argument("version")
@_BOOTSTRAP
def retire(version: str, bootstrap: str | None) -> None:
    """Retire VERSION."""
    _one(bootstrap, "retire", version)
