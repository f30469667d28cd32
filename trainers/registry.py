"""The model registry: ModelVersion records on the compacted ``gym-models-v1`` topic.

The topic is the registry's source of truth: compaction keeps the latest record per
``model_version`` (the key), so reading it from the beginning gives the registry's
current state; the ClickHouse sink materialises the same records into
``model_versions`` (``v_model_versions`` for analysts). Every change is a new record
with a later ``updated_ms``.

Statuses: ``candidate`` (passed the gate, in an A/B experiment), ``champion`` (what the
agent serves; at most one per tenant and agent -- promoting one retires the previous),
``retired``, ``rejected`` (failed the gate; kept with its metrics).
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from agentgym.producers.exceptions import BrokerError
from agentgym.producers.records import RecordProducer, read_topic
from agentgym.trainers.exceptions import ModelVersionNotFoundError, RegistryError
from agentgym.schemas.ids import validate_id

__all__ = ["Status", "STATUSES", "ModelVersion", "ModelRegistry", "base_version_for", "DELETED_DATA_FLAG", "STATUS_REASON",
           "STATUS_EXPERIMENT"]

Status = Literal["candidate", "champion", "retired", "rejected"]
STATUSES: tuple[Status, ...] = ("candidate", "champion", "retired", "rejected")
DELETED_DATA_FLAG = "privacy.trained_on_deleted_data"
# why a version has its status (a rollback's decision, a replacement) and the experiment that decided it
STATUS_REASON = "status.reason"
STATUS_EXPERIMENT = "status.experiment_id"
"""``hyperparameters`` key of a version trained on data a user's deletion later removed: the deletion ids."""


def base_version_for(agent_id: str, base_model: str) -> str:
    """The model version of a base model served without an adapter: ``<agent>-base-<hash>``."""
    slug = re.sub(r"[^a-z0-9]+", "-", agent_id.lower()).strip("-")[:24] or "x"
    return f"{slug}-base-{hashlib.sha256(base_model.encode()).hexdigest()[:8]}"


@dataclass(frozen=True)
class ModelVersion:
    """One registry entry (the ModelVersion Avro record, snake_case as on the wire)."""

    tenant_id: str
    model_version: str
    agent_id: str
    base_model: str
    status: Status
    adapter_uri: str | None = None
    dataset_id: str | None = None
    parent_version: str | None = None
    hyperparameters: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    created_ms: int = 0
    updated_ms: int = 0

    def record(self) -> dict[str, Any]:
        return {
            "event_id": f"model:{self.model_version}:{self.status}:{self.updated_ms}",
            "tenant_id": self.tenant_id, "model_version": self.model_version, "agent_id": self.agent_id,
            "base_model": self.base_model, "adapter_uri": self.adapter_uri, "dataset_id": self.dataset_id,
            "parent_version": self.parent_version, "hyperparameters": dict(self.hyperparameters),
            "metrics": {k: float(v) for k, v in self.metrics.items()}, "status": self.status,
            "created_ms": self.created_ms, "updated_ms": self.updated_ms,
        }

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> "ModelVersion":
        return cls(
            tenant_id=r["tenant_id"], model_version=r["model_version"], agent_id=r["agent_id"],
            base_model=r["base_model"], status=r["status"], adapter_uri=r.get("adapter_uri"),
            dataset_id=r.get("dataset_id"), parent_version=r.get("parent_version"),
            hyperparameters=dict(r.get("hyperparameters") or {}), metrics=dict(r.get("metrics") or {}),
            created_ms=int(r.get("created_ms", 0)), updated_ms=int(r.get("updated_ms", 0)),
        )


class ModelRegistry:
    """Reads and changes the registry on ``gym-models-v1``.

    Args:
        bootstrap_servers: Kafka.
        clock: milliseconds since the epoch.
    """

    def __init__(self, bootstrap_servers: str, clock: Any = None) -> None:
        self.bootstrap_servers = bootstrap_servers
        self._clock = clock or (lambda: int(time.time() * 1000))
        self._producer: RecordProducer | None = None

    def _now(self) -> int:
        return int(self._clock())

    def _send(self, mv: ModelVersion) -> ModelVersion:
        if self._producer is None:
            self._producer = RecordProducer(self.bootstrap_servers)
        try:
            self._producer.send("models", mv.record())
        except BrokerError as exc:  # the record was not acknowledged
            raise RegistryError(f"cannot write the model registry: {exc}") from exc
        return mv

    # -- reading -------------------------------------------------------------------
    def versions(self, tenant_id: str | None = None, agent_id: str | None = None) -> list[ModelVersion]:
        """The latest state of every version (optionally of one tenant / agent), newest first."""
        latest: dict[str, ModelVersion] = {}
        try:
            records = read_topic(self.bootstrap_servers, "models")
        except BrokerError as exc:
            raise RegistryError(f"cannot read the model registry: {exc}") from exc
        for r in records:
            mv = ModelVersion.from_record(r)
            cur = latest.get(mv.model_version)
            if cur is None or mv.updated_ms >= cur.updated_ms:
                latest[mv.model_version] = mv
        out = [mv for mv in latest.values()
               if (tenant_id is None or mv.tenant_id == tenant_id) and (agent_id is None or mv.agent_id == agent_id)]
        return sorted(out, key=lambda m: (m.created_ms, m.model_version), reverse=True)

    def get(self, model_version: str) -> ModelVersion:
        """One version's latest state.

        Raises:
            ModelVersionNotFoundError: no such version.
        """
        for mv in self.versions():
            if mv.model_version == model_version:
                return mv
        raise ModelVersionNotFoundError(f"no model version {model_version!r} in the registry")

    def champion(self, tenant_id: str, agent_id: str) -> ModelVersion | None:
        """The agent's champion, if it has one."""
        champs = [mv for mv in self.versions(tenant_id, agent_id) if mv.status == "champion"]
        return max(champs, key=lambda m: m.updated_ms) if champs else None

    # -- writing -------------------------------------------------------------------
    def register(self, mv: ModelVersion) -> ModelVersion:
        """Adds a version (``created_ms``/``updated_ms`` default to now).

        Raises:
            RegistryError: Kafka did not acknowledge the record.
        """
        for kind in ("model_version", "tenant_id", "agent_id"):
            validate_id(getattr(mv, kind), kind)  # model versions name adapter directories
        now = self._now()
        mv = replace(mv, created_ms=mv.created_ms or now, updated_ms=mv.updated_ms or now)
        return self._send(mv)

    def set_status(self, model_version: str, status: Status, metrics: Mapping[str, float] | None = None,
                   reason: str | None = None, experiment_id: str | None = None) -> ModelVersion:
        """Changes a version's status (and merges ``metrics``).

        ``reason`` (why: a rollback's decision, a replacement) and ``experiment_id`` (the
        experiment that decided) are kept in ``hyperparameters`` under :data:`STATUS_REASON`
        and :data:`STATUS_EXPERIMENT`, so ``agentgym models show`` says why a version is retired.

        Raises:
            ModelVersionNotFoundError: no such version.
            RegistryError: an unknown status, or the registry could not be read or written.
        """
        if status not in STATUSES:
            raise RegistryError(f"unknown status {status!r}; expected one of {', '.join(STATUSES)}")
        mv = self.get(model_version)
        merged = {**mv.metrics, **(metrics or {})}
        hyper = dict(mv.hyperparameters)
        if reason is not None:
            hyper[STATUS_REASON] = reason[:500]
        if experiment_id is not None:
            hyper[STATUS_EXPERIMENT] = experiment_id
        return self._send(replace(mv, status=status, metrics=merged, hyperparameters=hyper,
                                  updated_ms=max(self._now(), mv.updated_ms + 1)))

    def flag_deleted_data(self, tenant_id: str, dataset_ids: Sequence[str], deletion_id: str) -> list[ModelVersion]:
        """Flags the tenant's versions trained on any of ``dataset_ids`` (a user's data was deleted from them),
        and the versions fine-tuned from a flagged one, under :data:`DELETED_DATA_FLAG` in ``hyperparameters``
        (the deletion ids, comma-separated). Idempotent: a version already flagged for ``deletion_id`` is not rewritten.

        Returns:
            The versions flagged by this deletion (newly or before).

        Raises:
            RegistryError: the registry could not be read or written.
        """
        versions = self.versions(tenant_id)
        tainted = {mv.model_version for mv in versions if mv.dataset_id and mv.dataset_id in set(dataset_ids)}
        grew = True
        while grew:  # an adapter trained from a tainted parent carries its weights
            more = {mv.model_version for mv in versions if mv.parent_version in tainted} - tainted
            tainted |= more
            grew = bool(more)
        out = []
        for mv in versions:
            if mv.model_version not in tainted:
                continue
            ids = [x for x in mv.hyperparameters.get(DELETED_DATA_FLAG, "").split(",") if x]
            if deletion_id not in ids:
                mv = self._send(replace(mv, hyperparameters={**mv.hyperparameters, DELETED_DATA_FLAG: ",".join([*ids, deletion_id])},
                                        updated_ms=max(self._now(), mv.updated_ms + 1)))
            out.append(mv)
        return out

    def promote(self, model_version: str) -> ModelVersion:
        """Makes a version the champion of its agent, retiring the previous champion."""
        mv = self.get(model_version)
        if mv.status == "rejected":
            raise RegistryError(f"{model_version} was rejected by the gate; it cannot be promoted")
        previous = self.champion(mv.tenant_id, mv.agent_id)
        promoted = self.set_status(model_version, "champion")
        if previous is not None and previous.model_version != model_version:
            self.set_status(previous.model_version, "retired")
        return promoted

    def retire(self, model_version: str) -> ModelVersion:
        return self.set_status(model_version, "retired")

    def reject(self, model_version: str) -> ModelVersion:
        return self.set_status(model_version, "rejected")

    def ensure_base_champion(self, tenant_id: str, agent_id: str, base_model: str) -> ModelVersion:
        """The agent's champion; when it has none, registers the base model (no adapter) as its champion.

        An agent that has never been fine-tuned serves its base model; registering that
        as the first champion gives the gate its baseline and the first experiment its
        control variant.
        """
        current = self.champion(tenant_id, agent_id)
        if current is not None:
            return current
        return self.register(ModelVersion(
            tenant_id=tenant_id, model_version=base_version_for(agent_id, base_model), agent_id=agent_id,
            base_model=base_model, status="champion", hyperparameters={"bootstrap": "base model without an adapter"},
        ))

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close()
