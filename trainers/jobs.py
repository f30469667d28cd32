"""Training job records: what the trainer service decided about each dataset, and how it went.

One JSON file per job under ``AGENTGYM_TRAINER_JOBS_DIR`` (any fsspec URL), written
whole on every change. Statuses:

* ``deferred``: waiting for the agent's cool-down to end (a newer dataset of the same
  agent supersedes it, unless the job was *requested*: see :func:`request_job`);
* ``running``, then ``succeeded`` (with the model version and the gate's verdict) or
  ``failed`` (with the error);
* ``skipped``: the policy said no (kind, size, already trained), with the reason;
* ``superseded``: a newer dataset of the same agent replaced it while it waited.
"""

from __future__ import annotations

import builtins
import json
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from agentgym.trainers.exceptions import TrainersError
from agentgym.trainers.fsutil import read_json, write_json
from agentgym.trainers.training.job import new_job_id
from agentgym.schemas.ids import validate_id

__all__ = ["JobStatus", "JobRecord", "JobStore", "JobRequestError", "request_job"]

JobStatus = Literal["deferred", "running", "succeeded", "failed", "skipped", "superseded"]


class JobRequestError(TrainersError, ValueError):
    """A job request the policy refuses: ``code`` is ``not_trainable`` or ``conflict``."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


@dataclass(frozen=True)
class JobRecord:
    job_id: str
    dataset_id: str
    tenant_id: str
    agent_id: str
    kind: str
    status: JobStatus
    reason: str = ""
    dataset_uri: str = ""
    num_examples: int = 0
    base_model: str = ""
    model_version: str = ""
    verdict: str = ""  # candidate or rejected, once the gate decided
    experiment_id: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    created_ms: int = 0
    updated_ms: int = 0
    started_ms: int = 0
    due_ms: int = 0  # deferred: when the cool-down ends
    # asked for explicitly (the API's POST /v1/training-jobs, an operator): runs before the automatic
    # jobs of its agent and is never superseded by a newer automatic dataset
    requested: bool = False

    def with_status(self, status: JobStatus, reason: str = "", **changes: Any) -> "JobRecord":
        return replace(self, status=status, reason=reason, updated_ms=int(time.time() * 1000), **changes)


class JobStore:
    """Job records under one fsspec URL (a local directory by default)."""

    def __init__(self, url: str) -> None:
        import fsspec

        self.url = url
        self.fs, self.root = fsspec.core.url_to_fs(url)
        self.root = self.root.rstrip("/")

    def _path(self, job_id: str) -> str:
        return f"{self.root}/{validate_id(job_id, 'job_id')}.json"

    def save(self, record: JobRecord) -> JobRecord:
        write_json(str(self.fs.unstrip_protocol(self._path(record.job_id))), asdict(record))
        return record

    def get(self, job_id: str) -> JobRecord | None:
        try:
            return JobRecord(**json.loads(self.fs.cat_file(self._path(job_id))))
        except FileNotFoundError:
            return None

    def list(self) -> list[JobRecord]:
        """Every job, newest first."""
        try:
            paths = self.fs.glob(f"{self.root}/*.json")
        except FileNotFoundError:
            return []
        out = []
        for p in paths:
            try:
                out.append(JobRecord(**json.loads(self.fs.cat_file(p))))
            except (ValueError, TypeError):
                continue
        return sorted(out, key=lambda r: (r.created_ms, r.job_id), reverse=True)

    def for_dataset(self, dataset_id: str) -> builtins.list[JobRecord]:
        return [r for r in self.list() if r.dataset_id == dataset_id]

    def last_started_ms(self, tenant_id: str, agent_id: str) -> int:
        """When the agent's most recent job started (0: never)."""
        return max((r.started_ms for r in self.list() if r.tenant_id == tenant_id and r.agent_id == agent_id), default=0)

    def progress(self, record: JobRecord, storage_path: str) -> dict[str, Any] | None:
        """The latest progress the job's Ray Train controller wrote, if any."""
        return read_json(f"{storage_path.rstrip('/')}/{validate_id(record.job_id, 'job_id')}/agentgym-progress.json")


def request_job(store: JobStore, manifest: Any, *, kinds: frozenset[str] | set[str], min_examples: int,
                cooldown_s: float, reason: str = "requested", now_ms: int | None = None) -> JobRecord:
    """Records an explicitly requested job for ``manifest`` (deferred; the trainer service runs it).

    A requested job runs before the automatic jobs of its agent (still after the agent's
    cool-down, and after the experiment of a candidate in test) and a newer automatic
    dataset does not supersede it.

    Raises:
        JobRequestError: the dataset's kind is not trained on, it is too small, or a job for it exists.
    """
    if manifest.kind not in kinds:
        raise JobRequestError("not_trainable", f"kind {manifest.kind} is not trained on (AGENTGYM_TRAINER_KINDS={','.join(sorted(kinds))})")
    if manifest.num_examples < min_examples:
        raise JobRequestError("not_trainable", f"{manifest.num_examples} examples < AGENTGYM_TRAINER_MIN_EXAMPLES={min_examples}")
    earlier = [r for r in store.for_dataset(manifest.dataset_id) if r.status not in ("failed", "superseded")]
    if earlier:
        raise JobRequestError("conflict", f"dataset already handled by job {earlier[0].job_id} ({earlier[0].status})")
    now = int(time.time() * 1000) if now_ms is None else now_ms
    due = store.last_started_ms(manifest.tenant_id, manifest.agent_id) + int(cooldown_s * 1000)
    rec = JobRecord(job_id=new_job_id(now), dataset_id=manifest.dataset_id, tenant_id=manifest.tenant_id,
                    agent_id=manifest.agent_id, kind=manifest.kind, status="deferred",
                    reason=f"{reason}; " + ("waiting for the cool-down" if due > now else "due"),
                    dataset_uri=manifest.uri, num_examples=manifest.num_examples, created_ms=now, updated_ms=now,
                    due_ms=due, requested=True)
    return store.save(rec)
