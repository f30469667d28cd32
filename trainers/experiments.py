"""The A/B experiment a new candidate gets: candidate against champion, small traffic share.

Created through the experiments module (:class:`agentgym.processors.experiments.admin.ExperimentAdmin`),
which validates the configuration and writes it to the compacted
``gym-experiments-v1`` topic; agents follow it live and the experiments processor
evaluates it, decides, and promotes or rolls back. The trainer only starts it.
"""

from __future__ import annotations

from dataclasses import dataclass

from agentgym.processors.experiments import ExperimentConfig, ExperimentConfigError, MetricSpec, VariantSpec
from agentgym.processors.experiments.admin import ExperimentAdmin
from agentgym.trainers.settings import GateSettings

__all__ = ["CandidateExperiment", "candidate_experiment", "start_experiment"]


@dataclass(frozen=True)
class CandidateExperiment:
    """What was started: the experiment id and its two variants."""

    experiment_id: str
    control_version: str
    treatment_version: str
    treatment_weight: float


def candidate_experiment(tenant_id: str, agent_id: str, champion_version: str, candidate_version: str,
                         settings: GateSettings) -> "ExperimentConfig":
    """The experiment's configuration (a running :class:`agentgym.processors.experiments.ExperimentConfig`).

    Control: the champion; treatment: the candidate with ``experiment_treatment_weight``
    of the traffic. Primary metric: success rate (the labeller's outcomes); guardrails:
    latency and cost may not degrade by more than 20 %. With ``experiment_audit_rate`` > 0
    the experiment has an audit sample (reviewers' gold labels correct success rate).
    """
    w = settings.experiment_treatment_weight
    experiment_id = f"exp-{candidate_version}"
    return ExperimentConfig(
        experiment_id=experiment_id, tenant_id=tenant_id, agent_id=agent_id,
        name=f"{candidate_version} vs {champion_version}",
        variants=(VariantSpec("control", champion_version, 1.0 - w, is_control=True),
                  VariantSpec("treatment", candidate_version, w)),
        primary_metric=MetricSpec.of("success_rate"),
        guardrails=(MetricSpec.of("latency_ms", limit=0.2), MetricSpec.of("cost_usd", limit=0.2)),
        alpha=settings.experiment_alpha, min_samples_per_arm=settings.experiment_min_samples_per_arm,
        audit_rate=settings.experiment_audit_rate, status="running", updated_by="agentgym-trainer",
    ).validate()


def start_experiment(bootstrap_servers: str, tenant_id: str, agent_id: str, champion_version: str,
                     candidate_version: str, settings: GateSettings | None = None) -> CandidateExperiment:
    """Creates the candidate's experiment (running); an experiment that exists already is left as it is."""
    s = settings or GateSettings()
    config = candidate_experiment(tenant_id, agent_id, champion_version, candidate_version, s)
    with ExperimentAdmin(bootstrap_servers) as admin:
        try:
            admin.create(config)
        except ExperimentConfigError:
            admin.get(config.experiment_id)  # exists already (a replayed job): keep it; raises if it does not
    return CandidateExperiment(config.experiment_id, champion_version, candidate_version, s.experiment_treatment_weight)
