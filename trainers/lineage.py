"""A model version's lineage: the chain of parents down to the base model, and what made each.

Each :class:`Generation` is one model version of the chain (newest first): its dataset,
the training job that made it (the job record, when the trainer's job store still has
it), what its weights started from (``init_from``: the champion's adapter, a fresh LoRA
on the base, or an adapter named by hand), and the experiments and decisions that
promoted or retired it (from ``gym-decisions-v1``; the registry's own note of why a
version has its status, ``status.reason`` and ``status.experiment_id``, when they do not tell). The chain follows ``parent_version`` (the agent's champion when
the job started); a version without a parent rests on its base model, shown as the
agent's registered base version (``<agent>-base-<hash>``) when the registry has one.

:func:`lineage` is pure (the registry, job records, experiment configurations and
decisions in, the chain out); :func:`load_lineage` reads them (``gym-models-v1``, the job
store, ``gym-experiments-v1``, ``gym-decisions-v1``); :func:`render_lineage` prints it
(``agentgym models show``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from agentgym.processors.experiments import ExperimentConfig
from agentgym.processors.experiments.admin import ExperimentAdmin
from agentgym.producers.records import read_topic
from agentgym.trainers.exceptions import ModelVersionNotFoundError
from agentgym.trainers.jobs import JobRecord, JobStore
from agentgym.trainers.registry import STATUS_EXPERIMENT, STATUS_REASON, ModelRegistry, ModelVersion, base_version_for

__all__ = ["Event", "Generation", "lineage", "load_lineage", "render_lineage"]


@dataclass(frozen=True)
class Event:
    """An experiment's decision about a version: ``effect`` is ``promoted``, ``retired`` or ``rolled_back``
    (retired by a rollback); ``running`` (no decision yet) and ``stopped`` carry the configuration's status."""

    experiment_id: str
    effect: str
    action: str = ""
    winner_version: str = ""
    reason: str = ""
    timestamp_ms: int = 0


@dataclass(frozen=True)
class Generation:
    """One version of the chain. ``model_version`` is empty for a base model the registry does not hold."""

    model_version: str
    status: str
    base_model: str
    adapter_uri: str | None = None
    dataset_id: str | None = None
    parent_version: str | None = None
    job_id: str = ""
    job_status: str = ""
    verdict: str = ""
    init_from: str = ""
    init_adapter: str = ""
    created_ms: int = 0
    status_reason: str = ""
    status_experiment_id: str = ""
    events: tuple[Event, ...] = field(default_factory=tuple)

    @property
    def is_base(self) -> bool:
        return not self.adapter_uri


def _events(version: str, experiments: Mapping[str, ExperimentConfig],
            decisions: Mapping[str, list[Mapping[str, Any]]]) -> tuple[Event, ...]:
    out: list[Event] = []
    for exp_id, cfg in sorted(experiments.items()):
        mine = [v for v in cfg.variants if v.model_version == version]
        if not mine:
            continue
        is_treatment = any(not v.is_control for v in mine)
        decided = [d for d in decisions.get(exp_id, []) if d.get("action") in ("promote_winner", "rollback")]
        for d in sorted(decided, key=lambda d: int(d.get("timestamp_ms") or 0)):
            winner = ""
            if d.get("action") == "promote_winner":
                try:
                    winner = cfg.variant(str(d.get("winner"))).model_version
                except (KeyError, StopIteration, ValueError):
                    winner = str(d.get("winner") or "")
                effect = "promoted" if winner == version else "retired"
            elif is_treatment:
                effect = "rolled_back"
            else:
                continue  # a rollback keeps the control: nothing happened to it
            out.append(Event(exp_id, effect, str(d.get("action")), winner, str(d.get("reason") or ""),
                             int(d.get("timestamp_ms") or 0)))
        if not decided and is_treatment:
            out.append(Event(exp_id, cfg.status))  # running, or stopped without a decision
    return tuple(out)


def _generation(mv: ModelVersion, jobs: Mapping[str, JobRecord], experiments: Mapping[str, ExperimentConfig],
                decisions: Mapping[str, list[Mapping[str, Any]]]) -> Generation:
    h = mv.hyperparameters
    job_id = h.get("job_id", "")
    job = jobs.get(job_id) if job_id else None
    init_from = h.get("init_from", "")
    if not mv.adapter_uri:
        init_from = ""  # the base model itself
    return Generation(
        model_version=mv.model_version, status=mv.status, base_model=mv.base_model, adapter_uri=mv.adapter_uri,
        dataset_id=mv.dataset_id, parent_version=mv.parent_version, job_id=job_id,
        job_status=job.status if job else "", verdict=job.verdict if job else "", init_from=init_from,
        init_adapter=h.get("init_adapter", ""), created_ms=mv.created_ms,
        status_reason=h.get(STATUS_REASON, ""), status_experiment_id=h.get(STATUS_EXPERIMENT, ""),
        events=_events(mv.model_version, experiments, decisions),
    )


def lineage(version: str, versions: Mapping[str, ModelVersion], jobs: Mapping[str, JobRecord] | None = None,
            experiments: Mapping[str, ExperimentConfig] | None = None,
            decisions: Iterable[Mapping[str, Any]] = ()) -> list[Generation]:
    """The chain from ``version`` down to its base model, newest first. Pure.

    Args:
        version: the model version to start from.
        versions: the registry's latest state, by model version.
        jobs: job records by job id (missing ones leave ``job_status`` empty).
        experiments: experiment configurations by id.
        decisions: decoded ``Decision`` records.

    Raises:
        KeyError: ``version`` is not in ``versions``.
    """
    jobs, experiments = jobs or {}, experiments or {}
    by_exp: dict[str, list[Mapping[str, Any]]] = {}
    for d in decisions:
        by_exp.setdefault(str(d.get("experiment_id") or ""), []).append(d)
    mv = versions[version]
    chain: list[Generation] = []
    seen: set[str] = set()
    current: ModelVersion | None = mv
    last = mv
    while current is not None and current.model_version not in seen:
        seen.add(current.model_version)
        chain.append(_generation(current, jobs, experiments, by_exp))
        last = current
        parent = current.parent_version
        if parent and parent not in versions:  # a parent the registry no longer holds: named, not followed
            chain.append(Generation(model_version=parent, status="unknown", base_model=current.base_model))
            return chain
        current = versions.get(parent) if parent else None
    if last.adapter_uri:  # a fine-tuned root: it rests on its base model
        base_id = base_version_for(last.agent_id, last.base_model)
        base = versions.get(base_id)
        if base is not None and (base.tenant_id, base.agent_id) == (last.tenant_id, last.agent_id) \
                and base.model_version not in seen:
            chain.append(_generation(base, jobs, experiments, by_exp))
        else:
            chain.append(Generation(model_version="", status="base", base_model=last.base_model))
    return chain


def load_lineage(bootstrap_servers: str, version: str, jobs_dir: str | None = None,
                 *, versions: Iterable[ModelVersion] | None = None,
                 on_error: Callable[[str], None] | None = None) -> list[Generation]:
    """:func:`lineage` of ``version`` read from Kafka and the job store.

    The experiments and decisions topics, and the job store, are optional sources: one
    that cannot be read is reported to ``on_error`` and left out.

    Raises:
        ModelVersionNotFoundError: no such version.
        RegistryError: the registry could not be read.
    """
    report = on_error or (lambda _msg: None)
    if versions is None:
        registry = ModelRegistry(bootstrap_servers)
        try:
            versions = registry.versions()
        finally:
            registry.close()
    by_version = {mv.model_version: mv for mv in versions}
    if version not in by_version:
        raise ModelVersionNotFoundError(f"no model version {version!r} in the registry")
    jobs: dict[str, JobRecord] = {}
    if jobs_dir:
        try:
            store = JobStore(jobs_dir)
            wanted = {mv.hyperparameters.get("job_id", "") for mv in by_version.values()} - {""}
            for job_id in wanted:
                rec = store.get(job_id)
                if rec is not None:
                    jobs[job_id] = rec
        except Exception as exc:  # job records are extra detail; the registry's lineage stands without them
            report(f"job records in {jobs_dir} not read: {exc}")
    experiments: dict[str, ExperimentConfig] = {}
    try:
        with ExperimentAdmin(bootstrap_servers, timeout_s=10.0) as admin:
            experiments = admin.load_all()
    except Exception as exc:
        report(f"experiments not read: {exc}")
    tenant = by_version[version].tenant_id
    experiments = {k: c for k, c in experiments.items() if c.tenant_id == tenant}
    decisions: list[dict[str, Any]] = []
    if experiments:
        try:
            decisions = read_topic(bootstrap_servers, "decisions",
                                   match=lambda r: r.get("experiment_id") in experiments and r.get("tenant_id") == tenant)
        except Exception as exc:
            report(f"decisions not read: {exc}")
    return lineage(version, by_version, jobs, experiments, decisions)


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if ms else "?"


def render_lineage(chain: list[Generation]) -> list[str]:
    """Text lines: one block per generation, newest first, ending at the base model."""
    lines: list[str] = []
    for depth, g in enumerate(chain):
        pad = "  " * depth
        arrow = "" if depth == 0 else "└─ "
        if not g.model_version:
            lines.append(f"{pad}{arrow}base model {g.base_model} (not in the registry)")
            continue
        if g.status == "unknown":
            lines.append(f"{pad}{arrow}{g.model_version} (no longer in the registry)")
            continue
        if g.is_base:
            lines.append(f"{pad}{arrow}{g.model_version} [{g.status}] base model {g.base_model}, no adapter")
        else:
            start = {"champion": f"from its parent's adapter ({g.parent_version})" if g.parent_version else "from an adapter",
                     "adapter": f"from the adapter {g.init_adapter}",
                     "base": f"fresh LoRA on {g.base_model}"}.get(g.init_from, f"on {g.base_model}")
            lines.append(f"{pad}{arrow}{g.model_version} [{g.status}] {start}")
            job = g.job_id or "-"
            if g.job_status:
                job += f" ({g.job_status}{', ' + g.verdict if g.verdict else ''})"
            lines.append(f"{pad}   dataset {g.dataset_id or '-'}  job {job}  created {_when(g.created_ms)}")
        for e in g.events:
            if e.effect == "promoted":
                text = f"promoted by {e.experiment_id} at {_when(e.timestamp_ms)}: {e.reason}"
            elif e.effect == "retired":
                text = f"retired by {e.experiment_id} at {_when(e.timestamp_ms)} ({e.winner_version} won): {e.reason}"
            elif e.effect == "rolled_back":
                text = f"rolled back by {e.experiment_id} at {_when(e.timestamp_ms)}: {e.reason}"
            else:
                text = f"in experiment {e.experiment_id} ({e.effect}, no decision yet)"
            lines.append(f"{pad}   {text}")
        if g.status_reason and not any(e.experiment_id == g.status_experiment_id for e in g.events):
            # the registry's own note (the promoter's), when the decisions topic did not tell
            by = f" by {g.status_experiment_id}" if g.status_experiment_id else ""
            lines.append(f"{pad}   {g.status}{by}: {g.status_reason}")
    return lines
