"""``agentgym experiments ...``: create, list, change and watch A/B experiments.

Configurations are records on the compacted ``gym-experiments-v1`` topic (each
change a new ``config_version``); agents and the experiments processor follow them
live. ``watch`` streams the processor's snapshots from ``gym-experiment-stats-v1``.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import click

from agentgym.processors.experiments import TERMINAL, ExperimentConfig, ExperimentError, MetricSpec, VariantSpec
from agentgym.processors.experiments.admin import ExperimentAdmin
from agentgym.producers.kafka_security import client_security
from agentgym.schemas.codec import AvroCodec
from agentgym.schemas.exceptions import DecodeError
from agentgym.schemas.topics import TOPICS

__all__ = ["experiments", "render_snapshots", "parse_variant", "parse_guardrail"]

_BOOTSTRAP = click.option("--bootstrap-servers", envvar="AGENTGYM_BOOTSTRAP_SERVERS", default="127.0.0.1:9092",
                          show_default=True, help="Kafka [env AGENTGYM_BOOTSTRAP_SERVERS]")
_BY = click.option("--by", "by", default=lambda: os.environ.get("USER", "ops"), help="who makes the change (recorded)")


def _fail(exc: Exception) -> None:
    click.echo(f"error: {exc}", err=True)
    sys.exit(1)


def parse_variant(text: str) -> tuple[str, str, float]:
    """``NAME=MODEL_VERSION[:WEIGHT]`` -> (name, model version, weight; default 1)."""
    name, sep, rest = text.partition("=")
    if not sep or not name or not rest:
        raise click.BadParameter(f"{text!r}: expected NAME=MODEL_VERSION[:WEIGHT]", param_hint="--variant")
    model, _, weight = rest.partition(":")
    try:
        return name, model, float(weight) if weight else 1.0
    except ValueError:
        raise click.BadParameter(f"{text!r}: the weight {weight!r} is not a number", param_hint="--variant") from None


def parse_guardrail(text: str) -> dict[str, Any]:
    """``METRIC:LIMIT[:cap=X][:direction=increase|decrease]`` -> MetricSpec.of keyword arguments."""
    parts = text.split(":")
    if len(parts) < 2:
        raise click.BadParameter(f"{text!r}: expected METRIC:LIMIT[:cap=X][:direction=D]", param_hint="--guardrail")
    out: dict[str, Any] = {"name": parts[0]}
    try:
        out["limit"] = float(parts[1])
        for extra in parts[2:]:
            k, _, v = extra.partition("=")
            if k == "cap":
                out["cap"] = float(v)
            elif k == "direction" and v in ("increase", "decrease"):
                out["direction"] = v
            else:
                raise ValueError(extra)
    except ValueError as exc:
        raise click.BadParameter(f"{text!r}: cannot read {exc}", param_hint="--guardrail") from None
    return out


@click.group()
def experiments() -> None:
    """A/B experiments: variants (model versions) with weights, tested live, decided automatically."""


@experiments.command()
@click.argument("experiment_id")
@click.option("--agent", "agent_id", required=True, help="the agent whose traffic is split")
@click.option("--variant", "variants", multiple=True, required=True, metavar="NAME=MODEL_VERSION[:WEIGHT]",
              help="an arm (repeat; at least two); the first is the control unless --control says otherwise")
@click.option("--control", default=None, help="the control variant's name")
@click.option("--metric", default="success_rate", show_default=True, help="the primary metric")
@click.option("--direction", type=click.Choice(["increase", "decrease"]), default=None, help="which way is better (default: the metric's)")
@click.option("--cap", type=float, default=None, help="cap the primary metric's values (heavy tails)")
@click.option("--guardrail", "guardrails", multiple=True, metavar="METRIC:LIMIT[:cap=X]",
              help="a guardrail and its largest tolerated relative degradation, e.g. latency_ms:0.1:cap=30000 (repeat)")
@click.option("--alpha", type=float, default=0.05, show_default=True)
@click.option("--min-samples", "min_samples", type=int, default=100, show_default=True, help="minimum units per arm before any inference")
@click.option("--unit-type", type=click.Choice(["user", "session", "trace"]), default="user", show_default=True)
@click.option("--salt", default="", help="assignment salt (default: the experiment id)")
@click.option("--name", default="", help="a description")
@click.option("--tenant", "tenant_id", envvar="AGENTGYM_TENANT_ID", default="default", show_default=True, help="[env AGENTGYM_TENANT_ID]")
@click.option("--draft", is_flag=True, help="create it as a draft (start it later with `start`)")
@click.option("--audit-rate", "audit_rate", type=click.FloatRange(0.0, 1.0, max_open=True), default=0.0, show_default=True,
              help="fraction of units in the audit sample: reviewers' gold labels (annotation queue) correct success_rate")
@click.option("--cuped", "cuped_metrics", multiple=True, metavar="METRIC",
              help="adjust METRIC (one of the experiment's) with CUPED by each unit's pre-experiment mean (repeat)")
@click.option("--cuped-lookback-days", "cuped_lookback_days", type=click.IntRange(1, 120), default=28, show_default=True,
              help="CUPED's pre-experiment window, days")
@_BY
@_BOOTSTRAP
def create(experiment_id: str, agent_id: str, variants: tuple[str, ...], control: str | None, metric: str, direction: str | None,
           cap: float | None, guardrails: tuple[str, ...], alpha: float, min_samples: int, unit_type: str, salt: str, name: str,
           tenant_id: str, draft: bool, audit_rate: float, cuped_metrics: tuple[str, ...], cuped_lookback_days: int,
           by: str, bootstrap_servers: str) -> None:
    """Create EXPERIMENT_ID (running unless --draft)."""
    parsed = [parse_variant(v) for v in variants]
    control = control or parsed[0][0]
    try:
        config = ExperimentConfig(
            experiment_id=experiment_id, tenant_id=tenant_id, agent_id=agent_id,
            variants=tuple(VariantSpec(n, m, w, n == control) for n, m, w in parsed),
            primary_metric=MetricSpec.of(metric, direction=direction, cap=cap),
            guardrails=tuple(MetricSpec.of(**parse_guardrail(g)) for g in guardrails),
            alpha=alpha, min_samples_per_arm=min_samples, salt=salt, unit_type=unit_type,  # type: ignore[arg-type]
            name=name, status="draft" if draft else "running", updated_by=by,
            audit_rate=audit_rate, cuped_metrics=tuple(dict.fromkeys(cuped_metrics)), cuped_lookback_days=cuped_lookback_days,
        ).validate()
        with ExperimentAdmin(bootstrap_servers) as admin:
            admin.create(config)
    except (ExperimentError, ValueError) as exc:
        _fail(exc)
    extras = ([f"audit rate {config.audit_rate:g}"] if config.audit_rate else []) + (
        [f"CUPED on {', '.join(config.cuped_metrics)} ({config.cuped_lookback_days} days)"] if config.cuped_metrics else [])
    click.echo(f"created {experiment_id} ({config.status}, config v{config.config_version}{'; ' + '; '.join(extras) if extras else ''})")


def _change(verb: str, experiment_id: str, by: str, bootstrap_servers: str, fn: Callable[[Any], Any]) -> None:
    try:
        with ExperimentAdmin(bootstrap_servers) as admin:
            config = admin.change(experiment_id, fn)
    except ExperimentError as exc:
        _fail(exc)
    weights = ", ".join(f"{v.name} {v.weight:g}" for v in config.variants)
    click.echo(f"{verb} {experiment_id}: {config.status}, config v{config.config_version} (weights {weights})")


@experiments.command()
@click.argument("experiment_id")
@_BY
@_BOOTSTRAP
def start(experiment_id: str, by: str, bootstrap_servers: str) -> None:
    """Start a draft experiment."""
    _change("started", experiment_id, by, bootstrap_servers, lambda c: c.start(by))


@experiments.command()
@click.argument("experiment_id")
@_BY
@_BOOTSTRAP
def pause(experiment_id: str, by: str, bootstrap_servers: str) -> None:
    """Pause: everyone gets the control, no decisions, no new units counted."""
    _change("paused", experiment_id, by, bootstrap_servers, lambda c: c.pause(by))


@experiments.command()
@click.argument("experiment_id")
@_BY
@_BOOTSTRAP
def resume(experiment_id: str, by: str, bootstrap_servers: str) -> None:
    """Resume a paused experiment."""
    _change("resumed", experiment_id, by, bootstrap_servers, lambda c: c.resume(by))


@experiments.command()
@click.argument("experiment_id")
@_BY
@_BOOTSTRAP
def stop(experiment_id: str, by: str, bootstrap_servers: str) -> None:
    """Stop: agents serve their default model again; final."""
    _change("stopped", experiment_id, by, bootstrap_servers, lambda c: c.stop(by))


@experiments.command()
@click.argument("experiment_id")
@_BY
@_BOOTSTRAP
def rollback(experiment_id: str, by: str, bootstrap_servers: str) -> None:
    """Roll back: all traffic to the control; final."""
    _change("rolled back", experiment_id, by, bootstrap_servers, lambda c: c.rollback(by))


@experiments.command(name="list")
@click.option("--all", "show_all", is_flag=True, help="include stopped, rolled back and concluded experiments")
@click.option("--json", "as_json", is_flag=True, help="one JSON configuration per line")
@_BOOTSTRAP
def list_(show_all: bool, as_json: bool, bootstrap_servers: str) -> None:
    """List the experiments and their live configuration."""
    try:
        with ExperimentAdmin(bootstrap_servers) as admin:
            configs = admin.load_all()
    except ExperimentError as exc:
        _fail(exc)
    rows = sorted((c for c in configs.values() if show_all or c.status not in TERMINAL), key=lambda c: (c.tenant_id, c.experiment_id))
    if as_json:
        for c in rows:
            click.echo(json.dumps(c.to_record()))
        return
    if not rows:
        click.echo("no experiments" + ("" if show_all else " (running, paused or draft; --all shows the rest)"))
        return
    header = ("experiment", "tenant", "agent", "status", "v", "variants (model: weight)", "primary", "guardrails")
    table = [header] + [(
        c.experiment_id, c.tenant_id, c.agent_id, c.status, str(c.config_version),
        ", ".join(f"{v.name}{'*' if v.is_control else ''}={v.model_version}:{v.weight:g}" for v in c.variants),
        c.primary_metric.name, ", ".join(f"{g.name}<{g.limit:g}" for g in c.guardrails) or "-",
    ) for c in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for r in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())


# -- watch ---------------------------------------------------------------------------------

def _f(x: float | None, spec: str = "+.4g") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else ("±inf" if math.isinf(x) else format(x, spec))


def _pct(x: float | None) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{100 * x:+.1f}%"


def render_snapshots(snapshots: dict[str, dict[str, Any]]) -> str:
    """A terminal view of an experiment's latest snapshot per metric (primary first)."""
    if not snapshots:
        return "no statistics yet"
    ordered = sorted(snapshots.values(), key=lambda s: (s.get("role") != "primary", s["metric"]))
    first = ordered[0]
    details0 = json.loads(first.get("details_json") or "{}")
    lines = [
        f"{first['experiment_id']}  config v{first.get('config_version', 0)}  look {details0.get('look', '-')}  "
        f"status {first['status']}  SRM p {_f(first.get('srm_p_value'), '.3g')} (chi-square {_f(first.get('srm_chi_square_p_value'), '.3g')})  "
        f"alpha {_f(first.get('alpha'), 'g')}  rho {_f(first.get('mixing_rho'), '.3g')}  "
        f"at {time.strftime('%H:%M:%S', time.localtime(first['timestamp_ms'] / 1000))}"
    ]
    for s in ordered:
        all_details = json.loads(s.get("details_json") or "{}")
        details = all_details.get("comparisons", {})
        estimator = s.get("estimator") or "labelled"
        head = f"{s['metric']} ({s.get('role', 'primary')})  {s['status']}"
        if estimator != "labelled":
            head += f"  estimator {estimator}"
        if estimator == "prediction_powered":
            head += f"  audited units {s.get('audit_units', 0):,}"
        if s.get("variance_reduction") is not None:
            head += f"  variance reduction {_f(s['variance_reduction'], '.1%')}"
        lines.append(head)
        ppi = all_details.get("prediction_powered") or {}
        for arm in s["arms"]:
            mean = arm["sum"] / arm["n"] if arm["n"] else None
            line = f"  {arm['variant']:<16} n {arm['n']:>8,}  mean {_f(mean, '.4g')}"
            e = ppi.get(arm["variant"])
            if e:  # the labelled mean beside the corrected one
                line = (f"  {arm['variant']:<16} n {arm['n']:>8,}  labelled {_f(e.get('label_mean'), '.4g')}  "
                        f"corrected {_f(e.get('estimate'), '.4g')} (audited {e.get('m', 0):,}, correction {_f(e.get('correction'), '+.4g')})")
            lines.append(line)
        for c in s["comparisons"]:
            d = details.get(c["variant"], {})
            used = {"prediction_powered": "corrected: ", "cuped": "CUPED: "}.get(estimator, "")
            line = (f"  {used}{c['variant']} - {c['control']}: {_f(c['estimate'])} [{_f(c['ci_low'])}, {_f(c['ci_high'])}]  "
                    f"rel {_pct(c.get('relative_estimate'))} [{_pct(c.get('relative_ci_low'))}, {_pct(c.get('relative_ci_high'))}]  "
                    f"p {_f(c['p_value'], '.3g')} (adjusted {_f(d.get('adjusted_p_value'), '.3g')}, fixed-horizon {_f(c.get('fixed_horizon_p_value'), '.3g')})")
            if d.get("reason") not in (None, "ok"):
                line += f"  [{d['reason']}]"
            if "guardrail" in d:
                line += f"  guardrail {d['guardrail']['status']}"
            lines.append(line)
        if s.get("labelled_comparisons") and estimator != "labelled":
            plain = "labelled" if estimator == "prediction_powered" else "unadjusted"
            for c in s["labelled_comparisons"]:
                lines.append(f"  {plain}: {c['variant']} - {c['control']}: {_f(c['estimate'])} [{_f(c['ci_low'])}, {_f(c['ci_high'])}]  "
                             f"p {_f(c['p_value'], '.3g')}  (not decided on)")
        if s.get("role") == "primary" and s.get("message"):
            lines.append(f"  {s['message']}")
    return "\n".join(lines)


@experiments.command()
@click.argument("experiment_id")
@click.option("--once", is_flag=True, help="print the latest statistics and exit")
@click.option("--timeout", "timeout_s", type=float, default=None, help="stop after this many seconds")
@_BOOTSTRAP
def watch(experiment_id: str, once: bool, timeout_s: float | None, bootstrap_servers: str) -> None:
    """Stream EXPERIMENT_ID's live statistics (estimates, intervals, p-values, n, status)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    topic = TOPICS["experiment-stats"].name
    codec = AvroCodec()
    consumer = Consumer({"bootstrap.servers": bootstrap_servers, "group.id": f"agentgym-watch-{os.urandom(4).hex()}",
                         "enable.auto.commit": False, "enable.partition.eof": True,
                         **client_security(None)})  # AGENTGYM_KAFKA_* from the environment
    try:
        md = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if md is None or md.error is not None:
            _fail(RuntimeError(f"topic {topic} is not available"))
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in md.partitions])
        pending = set(md.partitions)
        latest: dict[str, dict[str, Any]] = {}
        caught_up = False
        changed = False
        deadline = time.monotonic() + timeout_s if timeout_s else None
        while deadline is None or time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            err = msg.error() if msg is not None else None
            if msg is not None and err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    pending.discard(msg.partition())
                    if not pending and not caught_up:
                        caught_up = True
                        if once:
                            break
                        click.echo(render_snapshots(latest) + "\n")
                        changed = False
                continue
            if msg is None:
                if caught_up and changed:
                    click.echo(render_snapshots(latest) + "\n")
                    changed = False
                continue
            if (msg.key() or b"").decode(errors="replace") != experiment_id:
                continue
            try:
                rec = codec.decode(msg.value(), expected="StatsSnapshot").record
            except DecodeError:
                continue
            latest[rec["metric"]] = rec
            changed = True
        if once:
            click.echo(render_snapshots(latest))
            if not latest:
                sys.exit(1)
    finally:
        consumer.close()
