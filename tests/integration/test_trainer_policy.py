"""The trainer's one-experiment-per-agent policy on the real broker (``gym-models-v1``).

A due job of an agent whose candidate is still in its A/B experiment stays ``deferred``
until the registry no longer holds that candidate. No job here trains: each dataset
URI points at a directory that does not exist, so a job that is run fails at once
(``failed`` proves it was attempted rather than held back).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentgym.trainers.registry import ModelRegistry, ModelVersion
from agentgym.trainers.service import TrainerService
from agentgym.trainers.settings import TrainerServiceSettings

pytestmark = pytest.mark.integration

AGENT = "bot"


@pytest.fixture
def service(bootstrap: str, tmp_path: Path, unique: str) -> Iterator[TrainerService]:
    settings = TrainerServiceSettings(home=tmp_path, bootstrap_servers=bootstrap, trainer_jobs_dir=str(tmp_path / "jobs"),
                                      trainer_group=f"trainer-{unique}", trainer_min_examples=10, trainer_cooldown_s=0,
                                      trainer_kinds="sft", trainer_auto_promote=False)
    s = TrainerService(settings)
    yield s
    s.close()


def _candidate(registry: ModelRegistry, tenant: str, agent: str, version: str) -> ModelVersion:
    return registry.register(ModelVersion(tenant_id=tenant, model_version=version, agent_id=agent, base_model="tiny:llama",
                                          status="candidate", adapter_uri=f"/models/{version}"))


def _ready(tmp_path: Path, tenant: str, agent: str, dataset_id: str) -> dict[str, Any]:
    """A DatasetReady as the builder announces it, for a dataset that is not on disk."""
    return {"dataset_id": dataset_id, "tenant_id": tenant, "agent_id": agent, "kind": "sft",
            "uri": f"file://{tmp_path / 'missing' / dataset_id}", "num_examples": 40}


def test_a_candidate_in_its_experiment_holds_the_agents_next_job_until_it_is_retired(
        registry: ModelRegistry, service: TrainerService, tmp_path: Path, unique: str) -> None:
    tenant, version = f"t-{unique}", f"{unique}-v2"
    _candidate(registry, tenant, AGENT, version)
    admitted = service.admit(_ready(tmp_path, tenant, AGENT, f"ds-{unique}"))
    assert (admitted.status, admitted.reason) == ("deferred", "due")

    assert service.run_due() == []
    held = service.jobs.get(admitted.job_id)
    assert held is not None
    assert (held.status, held.reason) == ("deferred", f"waiting for the experiment of candidate {version} to decide")
    assert held.started_ms == 0

    # still held on the next pass; the record is not rewritten when nothing changed
    assert service.run_due() == []
    again = service.jobs.get(admitted.job_id)
    assert again is not None and again.updated_ms == held.updated_ms and again.status == "deferred"

    # the experiment ended (a rollback retires the candidate): the job runs at the next re-read
    registry.retire(version)
    service._candidates = None  # the 5 s cache, reset instead of waiting
    [outcome] = service.run_due()
    assert outcome.record.job_id == admitted.job_id
    # attempted: it got as far as opening the dataset, which is missing
    assert outcome.record.status == "failed" and outcome.record.reason.startswith("DatasetNotFoundError"), outcome.record.reason
    assert outcome.model is None
    assert service.jobs.get(admitted.job_id).status == "failed"  # type: ignore[union-attr]


def test_a_candidate_of_another_agent_does_not_hold_the_job(registry: ModelRegistry, service: TrainerService,
                                                           tmp_path: Path, unique: str) -> None:
    tenant = f"t-{unique}"
    _candidate(registry, tenant, "other-bot", f"{unique}-other-v2")
    _candidate(registry, f"t-other-{unique}", AGENT, f"{unique}-elsewhere-v2")  # same agent id, another tenant
    admitted = service.admit(_ready(tmp_path, tenant, AGENT, f"ds-{unique}"))

    [outcome] = service.run_due()
    assert outcome.record.job_id == admitted.job_id
    assert outcome.record.status == "failed" and outcome.record.reason.startswith("DatasetNotFoundError"), outcome.record.reason


def test_a_requested_job_is_not_superseded_and_runs_before_the_automatic_one(service: TrainerService, tmp_path: Path,
                                                                           unique: str) -> None:
    from agentgym.processors.datasets.store import Manifest
    from agentgym.trainers.jobs import JobRequestError, request_job

    tenant = f"t-{unique}"
    first = service.admit(_ready(tmp_path, tenant, AGENT, f"ds-{unique}-1"))  # automatic, waiting
    ready = _ready(tmp_path, tenant, AGENT, f"ds-{unique}-asked")
    manifest = Manifest(dataset_id=ready["dataset_id"], tenant_id=tenant, agent_id=AGENT, kind="sft", created_ms=1,
                        splits={"train": 40, "eval": 0}, shards={}, checksum="", uri=ready["uri"])
    s = service.settings
    asked = request_job(service.jobs, manifest, kinds=s.kinds, min_examples=s.trainer_min_examples,
                        cooldown_s=s.trainer_cooldown_s, reason="requested by a test")
    assert asked.requested and asked.status == "deferred" and asked.reason.startswith("requested by a test")
    with pytest.raises(JobRequestError) as again:
        request_job(service.jobs, manifest, kinds=s.kinds, min_examples=s.trainer_min_examples, cooldown_s=0)
    assert again.value.code == "conflict" and asked.job_id in again.value.reason

    newer = service.admit(_ready(tmp_path, tenant, AGENT, f"ds-{unique}-2"))  # a newer automatic dataset
    status = {j.job_id: j.status for j in service.jobs.list() if j.tenant_id == tenant}
    assert status == {first.job_id: "superseded", asked.job_id: "deferred", newer.job_id: "deferred"}

    outcomes = service.run_due()  # both are due; the requested one goes first (datasets missing: both fail fast)
    assert [o.record.job_id for o in outcomes] == [asked.job_id, newer.job_id]


def test_after_a_promotion_the_next_job_waits_for_a_full_dataset_interval_of_the_champions_traffic(
        registry: ModelRegistry, service: TrainerService, tmp_path: Path, unique: str) -> None:
    tenant = f"t-{unique}"
    old = service.admit(_ready(tmp_path, tenant, AGENT, f"ds-{unique}-old"))  # announced before the promotion
    champion = registry.register(ModelVersion(tenant_id=tenant, model_version=f"{unique}-v1", agent_id=AGENT,
                                              base_model="tiny:llama", status="champion", adapter_uri=f"/models/{unique}-v1",
                                              metrics={"promoted_ms": float(old.created_ms + 1)}))
    waiting_reason = f"waiting for a full dataset interval of champion {champion.model_version}'s own traffic"
    assert service.run_due() == []
    waiting = service.jobs.get(old.job_id)
    assert waiting is not None and waiting.status == "deferred" and waiting.started_ms == 0
    assert waiting.reason == waiting_reason

    # the first dataset after the promotion may hold moments of its traffic: it waits too
    service._clock = lambda: old.created_ms + 10  # type: ignore[method-assign]
    first = service.admit(_ready(tmp_path, tenant, AGENT, f"ds-{unique}-first"))
    assert service.jobs.get(old.job_id).status == "superseded"  # type: ignore[union-attr]
    assert service.run_due() == []
    assert service.jobs.get(first.job_id).reason == waiting_reason  # type: ignore[union-attr]

    # the second one holds a full interval of it: it runs
    service._clock = lambda: old.created_ms + 20  # type: ignore[method-assign]
    second = service.admit(_ready(tmp_path, tenant, AGENT, f"ds-{unique}-second"))
    [outcome] = service.run_due()
    assert outcome.record.job_id == second.job_id and outcome.record.status == "failed"  # the dataset is not on disk
