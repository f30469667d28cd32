"""``agentgym labeller replay``: relabel history from the topics with new rules (docs/labelling.md).

The command resolves its arguments and prints; the work is
:class:`agentgym.processors.relabel.LogReplay` (Kafka) over
:mod:`agentgym.processors.labelling.replay` (the decisions and the revision scheme).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from agentgym.processors.labelling.engine import LabellingEngine
from agentgym.processors.labelling.exceptions import RulesConfigError
from agentgym.processors.labelling.replay import Relabel, ReplayError, parse_time
from agentgym.processors.labelling.rules import RuleBook
from agentgym.processors.labelling.settings import LabellerSettings
from agentgym.processors.relabel import LogReplay, ReplayProgress, ReplayRequest
from agentgym.processors.settings import ProcessorSettings
from agentgym.producers.exceptions import BrokerError
from agentgym.schemas.exceptions import InvalidIdError
from agentgym.schemas.ids import validate_id

__all__ = ["labeller"]


@click.group()
def labeller() -> None:
    """The outcome labeller: relabel past runs from the log (replay)."""


def _when(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000)) + "Z"


def _print_progress(p: ReplayProgress) -> None:
    c = p.counts
    where = "done" if p.phase == "done" else f"reading {p.phase}"
    click.echo(f"partition {p.partition} ({p.partitions_done}/{p.partitions} done, {where}): {p.scanned:,} records read, "
               f"{c.traces:,} traces decided, {c.relabelled:,} relabelled, {p.rate:,.0f} records/s", err=True)


@labeller.command()
@click.option("--since", required=True, help="start of the window: ISO 8601 (2026-12-03T08:00:00Z), epoch ms, or a duration ago (2h, 7d)")
@click.option("--until", default=None, help="end of the window, same forms [default: now]")
@click.option("--rules", "rules_path", default=None, type=click.Path(dir_okay=False),
              help="YAML rules file, the labeller's format [env AGENTGYM_LABELLER_RULES_PATH; built-in defaults]")
@click.option("--tenant", default=None, help="only this tenant's runs")
@click.option("--agent", default=None, help="only this agent's runs (with --tenant)")
@click.option("--model/--no-model", "use_model", default=True, show_default=True,
              help="label what no rule decides with the live labeller's checkpointed model (--app-id); "
              "--no-model: rules and fallback only")
@click.option("--app-id", default=None, help="the live labeller's Faust app id, whose changelog holds the model "
              "[env AGENTGYM_APP_ID; agentgym]")
@click.option("--bootstrap-servers", default=None, help="Kafka [env AGENTGYM_BOOTSTRAP_SERVERS; 127.0.0.1:9092]")
@click.option("--dry-run", is_flag=True, help="decide and count what would change; emit nothing")
@click.option("--show", type=click.IntRange(min=0), default=0, show_default=True,
              help="print the first N relabelled runs: trace, old label, new label")
@click.option("--json", "as_json", is_flag=True, help="print the summary as one JSON object")
def replay(since: str, until: str | None, rules_path: str | None, tenant: str | None, agent: str | None, use_model: bool,
           app_id: str | None, bootstrap_servers: str | None, dry_run: bool, show: int, as_json: bool) -> None:
    """Relabel past runs: re-read experiences and feedback of a time window from Kafka, label
    them with the given rules (and the live labeller's model), and emit new outcome revisions
    where the label changed. The views and datasets built afterwards show the new labels.

    A second replay with the same rules emits nothing. An interrupted replay continues when
    started again with the same arguments (checkpoint under AGENTGYM_HOME/replay).
    """
    if agent is not None and tenant is None:
        raise click.UsageError("--agent needs --tenant (an agent id is only unique within its tenant)")
    try:
        for value, kind, option in ((tenant, "tenant_id", "--tenant"), (agent, "agent_id", "--agent")):
            if value is not None:
                try:
                    validate_id(value, kind)  # type: ignore[arg-type]
                except InvalidIdError as exc:
                    raise click.BadParameter(str(exc), param_hint=option) from None
        now = int(time.time() * 1000)
        since_ms = parse_time(since, "--since", now)
        until_ms = parse_time(until, "--until", now) if until is not None else now
    except ReplayError as exc:
        raise click.UsageError(str(exc)) from None
    if since_ms > now:
        raise click.UsageError(f"--since: {_when(since_ms)} is in the future")
    if since_ms >= until_ms:
        raise click.UsageError(f"--since ({_when(since_ms)}) must be before --until ({_when(until_ms)})")
    settings = LabellerSettings(**({"rules_path": rules_path} if rules_path else {}))
    try:
        book = RuleBook.from_yaml(settings.rules_path) if settings.rules_path else RuleBook()
    except RulesConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--rules" if rules_path else "AGENTGYM_LABELLER_RULES_PATH") from None
    proc = ProcessorSettings()
    request = ReplayRequest(since_ms, until_ms, since, until or "now", tenant, agent,
                            str(settings.rules_path) if settings.rules_path else None,
                            (app_id or proc.app_id) if use_model else None)
    bootstrap = bootstrap_servers or proc.bootstrap_servers
    shown = [0]

    def print_relabel(item: Relabel) -> None:
        if shown[0] >= show:
            return
        shown[0] += 1
        before = item.previous
        old = f"{before['label']} ({before['labeller']}, revision {before['revision']})" if before else "no outcome"
        new = item.outcome or {}
        click.echo(f"  {item.tenant_id}/{item.agent_id} {item.trace_id}: {old} -> {new.get('label')} "
                   f"({new.get('labeller')}, revision {new.get('revision')})", err=True)

    job = LogReplay(bootstrap, LabellingEngine(book, settings), request, proc.home, progress=_print_progress, dry_run=dry_run,
                    on_relabel=print_relabel if show else None)
    click.echo(f"replay {_when(since_ms)} .. {_when(until_ms)}"
               f"{f' tenant {tenant}' if tenant else ''}{f' agent {agent}' if agent else ''}: rules "
               f"{settings.rules_path or 'built-in defaults'} (version {book.version}), "
               f"model {'from ' + request.app_id + '-labeller-learners-changelog' if request.app_id else 'none'}"
               f"{' (dry run)' if dry_run else ''}", err=True)
    try:
        result = job.run()
    except KeyboardInterrupt:
        click.echo(f"interrupted: run the same command again to continue (checkpoint {job.checkpoint_path})", err=True)
        sys.exit(130)
    except (ReplayError, BrokerError) as exc:
        raise click.ClickException(str(exc)) from None
    c = result.counts
    summary: dict[str, Any] = {
        "since_ms": result.since_ms, "until_ms": result.until_ms, "partitions": result.partitions,
        "resumed_partitions": result.resumed, "records_read": result.scanned, "records_of_the_window": c.records,
        "experiences": c.experiences,
        "feedback": c.feedback, "outcomes_read": c.outcomes, "traces": c.traces, "relabelled": c.relabelled,
        "unchanged": c.unchanged, "skipped_deleted": c.skipped_deleted, "skipped_invalid": c.skipped_invalid,
        "feedback_without_experience": c.skipped_no_experience, "models": result.models,
        "rules_version": book.version, "elapsed_s": round(result.elapsed_s, 3), "dry_run": dry_run,
    }
    if as_json:
        click.echo(json.dumps(summary, sort_keys=True))
        return
    if result.resumed:
        click.echo(f"resumed: partitions {', '.join(map(str, result.resumed))} were done by an earlier run")
    models = ", ".join(f"{k} {v}" for k, v in result.models.items()) or "none checkpointed (rules only)"
    verb = "would be relabelled" if dry_run else "relabelled (new revisions emitted)"
    click.echo(f"{c.traces:,} traces decided: {c.relabelled:,} {verb}, {c.unchanged:,} unchanged; "
               f"{result.scanned:,} records read in {result.elapsed_s:.1f} s "
               f"({result.scanned / result.elapsed_s if result.elapsed_s > 0 else 0:,.0f} records/s), "
               f"{c.records:,} of them the window's runs' experiences, feedback and outcomes")
    click.echo(f"skipped: {c.skipped_deleted:,} deleted, {c.skipped_invalid:,} invalid, "
               f"{c.skipped_no_experience:,} feedback without an experience in the window; model: {models}")
