"""``agentgym datasets list|show|export|build``: the finished datasets in the dataset store."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from typing import Any

import click

from agentgym.processors.datasets.builder import DatasetBuilder
from agentgym.processors.datasets.exceptions import DatasetError
from agentgym.processors.datasets.settings import DatasetSettings
from agentgym.processors.datasets.store import DatasetStore
from agentgym.processors.store import StoreError, open_reader
from agentgym.producers.records import RecordProducer

__all__ = ["datasets"]


def _store(store_url: str | None) -> Any:
    overrides: dict[str, Any] = {"dataset_store": store_url} if store_url else {}
    return DatasetStore(DatasetSettings(**overrides).dataset_store)


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


_STORE_OPTION = click.option("--store", "store_url", default=None,
                             help="dataset store URL [env AGENTGYM_DATASET_STORE; <AGENTGYM_HOME>/datasets]")


@click.group()
def datasets() -> None:
    """Finished fine-tuning datasets (Parquet shards + manifest in the dataset store)."""


@datasets.command("list")
@_STORE_OPTION
@click.option("--tenant", default=None, help="only this tenant")
@click.option("--agent", default=None, help="only this agent")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
def list_(store_url: str | None, tenant: str | None, agent: str | None, as_json: bool) -> None:
    """List datasets, newest first."""
    rows = [m for m in _store(store_url).list()
            if (tenant is None or m.tenant_id == tenant) and (agent is None or m.agent_id == agent)]
    if as_json:
        for m in rows:
            click.echo(json.dumps(m.announcement()))
        return
    if not rows:
        click.echo("no datasets")
        return
    click.echo(f"{'dataset_id':<64} {'kind':<10} {'train':>7} {'eval':>6}  {'watermark (UTC)':<19}  tenant/agent")
    for m in rows:
        click.echo(f"{m.dataset_id:<64} {m.kind:<10} {m.splits.get('train', 0):>7} {m.splits.get('eval', 0):>6}  "
                   f"{_when(m.created_ms):<19}  {m.tenant_id}/{m.agent_id}")


@datasets.command()
@click.argument("dataset_id")
@_STORE_OPTION
@click.option("--lineage", is_flag=True, help="include every trace id")
@click.option("--verify/--no-verify", default=True, show_default=True, help="re-hash the shards against the checksum")
def show(dataset_id: str, store_url: str | None, lineage: bool, verify: bool) -> None:
    """Show a dataset's manifest (counts, splits, checksum, lineage)."""
    store = _store(store_url)
    try:
        m = store.manifest(dataset_id)
        if verify:
            store.verify(m)
    except DatasetError as exc:
        raise click.ClickException(str(exc)) from None
    d = json.loads(m.to_json())
    d["uri"] = m.uri
    if not lineage:
        ids = d["lineage"].pop("trace_ids", [])
        d["lineage"]["trace_ids_sample"] = ids[:5]
    if verify:
        d["verified"] = True
    click.echo(json.dumps(d, indent=2, sort_keys=True))


@datasets.command()
@click.argument("dataset_id")
@_STORE_OPTION
@click.option("--split", "splits", multiple=True, type=click.Choice(["train", "eval"]),
              help="splits to export (repeatable; default both)")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), default="-", show_default=True,
              help="JSONL file ('-': stdout)")
def export(dataset_id: str, store_url: str | None, splits: tuple[str, ...], output: str) -> None:
    """Export a dataset as JSON lines (one example per line, with its split)."""
    store = _store(store_url)
    try:
        m = store.manifest(dataset_id)
        store.verify(m)
        if output == "-":
            n = store.export_jsonl(m, sys.stdout, splits or ("train", "eval"))
        else:
            with open(output, "w", encoding="utf-8") as fh:
                n = store.export_jsonl(m, fh, splits or ("train", "eval"))
    except DatasetError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"exported {n} examples of {dataset_id}", err=True)


@datasets.command()
@_STORE_OPTION
@click.option("--tenant", default=None, help="build this tenant's agent now, whatever the thresholds say")
@click.option("--agent", default=None, help="... and this agent (with --tenant)")
@click.option("--announce/--no-announce", default=True, show_default=True, help="announce on gym-datasets-v1")
def build(store_url: str | None, tenant: str | None, agent: str | None, announce: bool) -> None:
    """Build the finished datasets now (what the datasets processor does on its timer)."""
    if (tenant is None) != (agent is None):
        raise click.UsageError("--tenant and --agent go together")
    overrides: dict[str, Any] = {"dataset_store": store_url} if store_url else {}
    settings = DatasetSettings(**overrides)
    try:
        store = open_reader()
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    producer = RecordProducer(settings.bootstrap_servers) if announce else None
    try:
        builder = DatasetBuilder(store, settings, announce=(lambda m: producer.send("datasets", m.announcement())) if producer else None)
        manifests = builder.build(tenant, agent) if tenant and agent else builder.run_once()
    finally:
        store.close()
        if producer is not None:
            producer.close()
    for m in manifests:
        click.echo(f"{m.dataset_id}  {m.kind}  train={m.splits['train']} eval={m.splits['eval']}  {m.uri}")
    if not manifests:
        click.echo("no dataset finished")
