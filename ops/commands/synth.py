"""``agentgym synth``: synthetic scenarios generated from an agent's real interactions.

``agentgym synth generate --agent A --n N`` mines the agent's runs from ClickHouse,
generates variations, failure-seeded variants and edge cases (plus whatever ``--spec``
and ``--generator`` add), validates the batch, prints its quality report, writes the
scenarios to the dataset store as a ``synthetic`` dataset, publishes one ScenarioLineage
record per scenario and source trace on ``gym-scenario-lineage-v1`` and announces the
dataset on ``gym-datasets-v1`` (the ClickHouse sink records them in
``synthetic_scenarios`` and ``datasets``).
``agentgym synth report DATASET_ID`` prints the stored report of a synthetic dataset.
``agentgym synth serve`` runs the generation jobs queued through the HTTP API
(``POST /v1/synthetic-jobs``, records in ``AGENTGYM_SYNTH_JOBS_DIR``) the same way.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path

import click

from agentgym.processors.datasets.exceptions import DatasetError
from agentgym.processors.datasets.settings import DatasetSettings
from agentgym.processors.datasets.store import DatasetStore
from agentgym.processors.store import StoreError, StoreSettings, open_reader
from agentgym.producers.exceptions import BrokerError
from agentgym.producers.records import RecordProducer
from agentgym.trainers.exceptions import TrainersError
from agentgym.trainers.synth.jobs import SynthJobStore, recover, run_queued
from agentgym.trainers.synth.report import QualityReport
from agentgym.trainers.synth.service import DEFAULT_GENERATORS, SynthRequest, SynthService
from agentgym.trainers.synth.settings import SynthSettings

__all__ = ["synth", "generate", "report", "serve"]


@click.group()
def synth() -> None:
    """Synthetic scenarios from real interactions: variations, failure-seeded cases, edge cases."""


@synth.command()
@click.option("--agent", "agent_id", required=True, help="the agent whose runs are mined")
@click.option("--n", "n", type=click.IntRange(min=1), required=True, help="scenarios to generate")
@click.option("--tenant", "tenant_id", default=None, help="tenant [env AGENTGYM_TENANT_ID; default]")
@click.option("--seed", type=int, default=0, show_default=True, help="same seed and inputs, same scenarios")
@click.option("--spec", "specs", multiple=True, metavar="YAML",
              help="a domain spec: a path, or a spec shipped with Agent Gym (tool_routing); repeatable")
@click.option("--generator", "generators", multiple=True, metavar="REF",
              help="generators instead of the built-ins (paraphrase, failure, edge): a built-in name, a YAML path, "
                   "package.module:attr or an agentgym.synth_generators entry point; repeatable")
@click.option("--paraphraser", default=None, metavar="MODEL_VERSION",
              help="paraphrase with this model version of the registry (default: rule-based)")
@click.option("--eval-dataset", "eval_datasets", multiple=True, metavar="DATASET_ID",
              help="hold out this dataset's eval prompts (default: every non-synthetic dataset of the agent); repeatable")
@click.option("--eval-prompts", "eval_prompt_files", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="more held-out prompts: .jsonl, .json or one prompt a line; repeatable")
@click.option("--url", default=None, help="ClickHouse store URL [env AGENTGYM_CLICKHOUSE_URL]")
@click.option("--dataset-store", default=None, help="dataset store URL or path [env AGENTGYM_DATASET_STORE]")
@click.option("--bootstrap-servers", default=None, help="Kafka [env AGENTGYM_BOOTSTRAP_SERVERS]")
@click.option("--announce/--no-announce", default=True, show_default=True, help="announce the dataset on gym-datasets-v1 and its per-scenario lineage on gym-scenario-lineage-v1")
@click.option("--dry-run", is_flag=True, help="generate and report only: write and announce nothing")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, writable=True), default=None,
              help="also write the quality report (JSON) here")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON instead of text")
def generate(agent_id: str, n: int, tenant_id: str | None, seed: int, specs: tuple[str, ...], generators: tuple[str, ...],
             paraphraser: str | None, eval_datasets: tuple[str, ...], eval_prompt_files: tuple[str, ...], url: str | None,
             dataset_store: str | None, bootstrap_servers: str | None, announce: bool, dry_run: bool,
             report_path: str | None, as_json: bool) -> None:
    """Generate N scenarios for AGENT from its real runs, validate them, store them as a synthetic dataset."""
    overrides = {"bootstrap_servers": bootstrap_servers} if bootstrap_servers else {}
    try:
        settings = SynthSettings(**overrides)  # type: ignore[arg-type]
        dataset_settings = DatasetSettings(**({"dataset_store": dataset_store} if dataset_store else {}))  # type: ignore[arg-type]
        store_settings = StoreSettings(**({"clickhouse_url": url} if url else {}))  # type: ignore[arg-type]
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    try:
        store = open_reader(settings=store_settings)
    except StoreError as exc:
        raise click.ClickException(f"cannot read the ClickHouse store: {exc}") from None
    producer = None
    try:
        announcer = lineage_publisher = None
        if announce and not dry_run:
            producer = RecordProducer(settings.bootstrap_servers)

            def announcer(manifest):  # type: ignore[no-untyped-def]
                producer.send("datasets", manifest.announcement())

            def lineage_publisher(records):  # type: ignore[no-untyped-def]
                producer.send_many("scenario-lineage", records)

        service = SynthService(store, DatasetStore(dataset_settings.dataset_store), settings, dataset_settings,
                               announce=announcer, publish_lineage=lineage_publisher)
        request = SynthRequest(
            agent_id=agent_id, n=n, tenant_id=tenant_id or settings.tenant_id, seed=seed,
            generators=generators or DEFAULT_GENERATORS, specs=specs, paraphraser=paraphraser,
            eval_datasets=eval_datasets, eval_prompt_files=eval_prompt_files, write=not dry_run,
        )
        try:
            outcome = service.run(request)
        except (TrainersError, DatasetError, StoreError, BrokerError) as exc:
            raise click.ClickException(str(exc)) from None
    finally:
        store.close()
        if producer is not None:
            producer.close()
    report_ = outcome.report
    click.echo(report_.to_json() if as_json else report_.format_text())
    if report_path:
        Path(report_path).write_text(report_.to_json() + "\n", encoding="utf-8")
    for note in outcome.notes:
        click.echo(f"note: {note}", err=True)
    if outcome.manifest is not None:
        m = outcome.manifest
        click.echo(f"dataset {m.dataset_id} ({m.kind}): {m.splits.get('train', 0)} train, {m.splits.get('eval', 0)} eval "
                   f"at {m.uri}" + ("; announced on gym-datasets-v1" if outcome.announced else ""), err=as_json)
        if outcome.lineage_published is not None:
            click.echo(f"lineage: {outcome.lineage_published} records on gym-scenario-lineage-v1", err=as_json)
    if not outcome.scenarios or outcome.announce_error is not None:
        sys.exit(1)


@synth.command()
@click.option("--poll-s", type=float, default=2.0, show_default=True, help="seconds between looks at the job queue")
@click.option("--once", is_flag=True, help="run the queued jobs once and exit")
def serve(poll_s: float, once: bool) -> None:
    """Run the synthetic generation jobs queued through the HTTP API (AGENTGYM_SYNTH_JOBS_DIR) until stopped."""
    settings, dataset_settings = SynthSettings(), DatasetSettings()
    try:
        store = open_reader(settings=StoreSettings())
    except StoreError as exc:
        raise click.ClickException(f"cannot read the ClickHouse store: {exc}") from None
    producer = RecordProducer(settings.bootstrap_servers)
    service = SynthService(store, DatasetStore(dataset_settings.dataset_store), settings, dataset_settings,
                           announce=lambda m: producer.send("datasets", m.announcement()),
                           publish_lineage=lambda records: producer.send_many("scenario-lineage", records))
    jobs = SynthJobStore(settings.jobs_dir)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    click.echo(f"synth: running the jobs queued in {settings.jobs_dir}")
    try:
        recover(jobs)
        while not stop.is_set():
            for job in run_queued(jobs, service):
                click.echo(f"{job.job_id} {job.status} {job.dataset_id or '-'} {job.reason[:120]}")
            if once:
                break
            stop.wait(poll_s)
    finally:
        store.close()
        producer.close()


@synth.command()
@click.argument("dataset_id")
@click.option("--dataset-store", default=None, help="dataset store URL or path [env AGENTGYM_DATASET_STORE]")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
def report(dataset_id: str, dataset_store: str | None, as_json: bool) -> None:
    """Print the quality report stored with a synthetic dataset."""
    settings = DatasetSettings(**({"dataset_store": dataset_store} if dataset_store else {}))  # type: ignore[arg-type]
    try:
        manifest = DatasetStore(settings.dataset_store).manifest(dataset_id)
    except DatasetError as exc:
        raise click.ClickException(str(exc)) from None
    quality = manifest.counts.get("quality")
    if manifest.kind != "synthetic" or not isinstance(quality, dict):
        raise click.ClickException(f"{dataset_id} is a {manifest.kind} dataset without a synthetic quality report")
    if as_json:
        click.echo(json.dumps(quality, indent=2, sort_keys=True, ensure_ascii=False))
        return
    fields = {k: v for k, v in quality.items() if k in QualityReport.__dataclass_fields__}
    click.echo(QualityReport(**fields).format_text())
    click.echo(f"dataset {manifest.dataset_id}: {manifest.splits} at {manifest.uri}")
