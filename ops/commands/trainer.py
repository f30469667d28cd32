"""``agentgym trainer run|jobs``: the trainer service and its job records."""

from __future__ import annotations

import json
import logging
import signal
import threading
from dataclasses import asdict
from datetime import datetime, timezone
from typing import Any

import click

from agentgym.processors.retention import RetentionSettings
from agentgym.trainers.jobs import JobStore
from agentgym.trainers.retention import FileRetentionLoop
from agentgym.trainers.service import TrainerService
from agentgym.trainers.settings import TrainSettings, TrainerServiceSettings

__all__ = ["trainer"]


@click.group()
def trainer() -> None:
    """The trainer service: finished datasets -> Ray Train jobs -> gated, registered models."""


@trainer.command()
@click.option("--bootstrap", default=None, help="Kafka [env AGENTGYM_BOOTSTRAP_SERVERS; 127.0.0.1:9092]")
@click.option("--poll-s", type=float, default=1.0, show_default=True, help="seconds per poll of gym-datasets-v1")
@click.option("--auto-promote/--no-auto-promote", default=None,
              help="apply experiment decisions to the model registry [env AGENTGYM_TRAINER_AUTO_PROMOTE; on]")
def run(bootstrap: str | None, poll_s: float, auto_promote: bool | None) -> None:
    """Consume gym-datasets-v1 and start jobs by the policy (min size, cool-down) until stopped.

    Alongside, unless --no-auto-promote, apply gym-decisions-v1 to the model registry:
    an experiment's winner becomes champion, a rolled-back candidate is retired.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    overrides: dict[str, Any] = {"bootstrap_servers": bootstrap} if bootstrap else {}
    if auto_promote is not None:
        overrides["trainer_auto_promote"] = auto_promote
    settings = TrainerServiceSettings(**overrides)
    service = TrainerService(settings)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    click.echo(f"trainer: consuming gym-datasets-v1 as {settings.trainer_group}; jobs in {settings.trainer_jobs_dir}")
    if settings.trainer_auto_promote:
        click.echo(f"trainer: applying gym-decisions-v1 to the model registry as {settings.trainer_promoter_group}")
    # expired dataset and model files of every tenant are deleted alongside (docs/privacy.md)
    retention = RetentionSettings(**({"bootstrap_servers": bootstrap} if bootstrap else {}))
    expiry = FileRetentionLoop(retention, TrainSettings().model_store, stop).start()
    try:
        service.run(stop, poll_s)
    finally:
        stop.set()
        service.close()
        expiry.join()


@trainer.command()
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line, with progress")
def jobs(as_json: bool) -> None:
    """List job records, newest first (status, reason, model version, latest progress)."""
    store = JobStore(TrainerServiceSettings().trainer_jobs_dir)
    storage = TrainSettings().train_checkpoint_store
    rows = store.list()
    if as_json:
        for r in rows:
            click.echo(json.dumps({**asdict(r), "progress": store.progress(r, storage)}))
        return
    if not rows:
        click.echo("no jobs")
        return
    for r in rows:
        when = datetime.fromtimestamp(r.created_ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        progress = store.progress(r, storage) if r.status == "running" else None
        step = f" step {progress['metrics'].get('step', 0):.0f} loss {progress['metrics'].get('loss', float('nan')):.4f}" if progress else ""
        click.echo(f"{r.job_id}  {when}  {r.status:<10} {r.verdict or '-':<9} {r.model_version or '-':<36} "
                   f"{r.dataset_id}  {r.reason[:80]}{step}")
