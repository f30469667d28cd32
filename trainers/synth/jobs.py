"""Synthetic generation jobs: requests queued as records, run by ``agentgym synth serve``.

The HTTP API queues a job (one JSON record per job under ``AGENTGYM_SYNTH_JOBS_DIR``, any
fsspec URL, like the trainer's job records); ``agentgym synth serve`` runs the queued ones
oldest first through the same :class:`~agentgym.trainers.synth.service.SynthService` as
``agentgym synth generate`` (mine, generate, validate, write, publish lineage, announce)
and writes the outcome back. Statuses: ``queued``, ``running``, then ``succeeded`` (with
the dataset id and the number of scenarios) or ``failed`` (with the error). A job a crash
left ``running`` is queued again at the next start (a run writes the same dataset id for
the same request, so running it again replaces, not duplicates).
"""

from __future__ import annotations

import builtins
import json
import logging
import secrets
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Literal

from agentgym.schemas.ids import validate_id
from agentgym.trainers.fsutil import write_json
from agentgym.trainers.synth.service import DEFAULT_GENERATORS, SynthRequest, SynthService

__all__ = ["SynthJobStatus", "SynthJob", "SynthJobStore", "new_synth_job_id", "run_queued", "recover"]

log = logging.getLogger("agentgym.synth")

SynthJobStatus = Literal["queued", "running", "succeeded", "failed"]


def new_synth_job_id(now_ms: int | None = None) -> str:
    """``synth-<UTC time>-<random>``."""
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    return f"synth-{datetime.fromtimestamp(now / 1000, tz=timezone.utc).strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class SynthJob:
    """One requested generation run and how it went."""

    job_id: str
    tenant_id: str
    agent_id: str
    n: int
    seed: int = 0
    generators: tuple[str, ...] = DEFAULT_GENERATORS
    specs: tuple[str, ...] = ()
    status: SynthJobStatus = "queued"
    reason: str = ""
    dataset_id: str = ""
    scenarios: int = 0
    splits: dict[str, int] = field(default_factory=dict)
    created_ms: int = 0
    updated_ms: int = 0
    started_ms: int = 0

    def with_status(self, status: SynthJobStatus, reason: str = "", **changes: Any) -> "SynthJob":
        return replace(self, status=status, reason=reason, updated_ms=int(time.time() * 1000), **changes)

    def request(self) -> SynthRequest:
        return SynthRequest(agent_id=self.agent_id, n=self.n, tenant_id=self.tenant_id, seed=self.seed,
                            generators=tuple(self.generators), specs=tuple(self.specs))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SynthJob":
        return cls(**{**d, "generators": tuple(d.get("generators", DEFAULT_GENERATORS)), "specs": tuple(d.get("specs", ()))})


class SynthJobStore:
    """Synthetic job records under one fsspec URL (a local directory by default)."""

    def __init__(self, url: str) -> None:
        import fsspec

        self.url = url
        self.fs, self.root = fsspec.core.url_to_fs(url)
        self.root = self.root.rstrip("/")

    def _path(self, job_id: str) -> str:
        return f"{self.root}/{validate_id(job_id, 'job_id')}.json"

    def save(self, job: SynthJob) -> SynthJob:
        write_json(str(self.fs.unstrip_protocol(self._path(job.job_id))), asdict(job))
        return job

    def get(self, job_id: str) -> SynthJob | None:
        try:
            return SynthJob.from_dict(json.loads(self.fs.cat_file(self._path(job_id))))
        except FileNotFoundError:
            return None

    def list(self) -> builtins.list[SynthJob]:
        """Every job, newest first."""
        try:
            paths = self.fs.glob(f"{self.root}/*.json")
        except FileNotFoundError:
            return []
        out = []
        for p in paths:
            try:
                out.append(SynthJob.from_dict(json.loads(self.fs.cat_file(p))))
            except (ValueError, TypeError):
                continue
        return sorted(out, key=lambda j: (j.created_ms, j.job_id), reverse=True)


def recover(store: SynthJobStore) -> builtins.list[SynthJob]:
    """Jobs a crash left ``running``: queued again."""
    return [store.save(j.with_status("queued", "interrupted; queued again")) for j in store.list() if j.status == "running"]


def run_queued(store: SynthJobStore, service: SynthService, limit: int | None = None) -> builtins.list[SynthJob]:
    """Runs the queued jobs, oldest first (at most ``limit``); returns their final records."""
    done: builtins.list[SynthJob] = []
    for job in sorted((j for j in store.list() if j.status == "queued"), key=lambda j: (j.created_ms, j.job_id)):
        if limit is not None and len(done) >= limit:
            break
        job = store.save(job.with_status("running", "generating", started_ms=int(time.time() * 1000)))
        try:
            outcome = service.run(job.request())
        except Exception as exc:  # a job's failure is its record's, not the server's
            log.warning("synth: job %s failed: %s", job.job_id, exc)
            done.append(store.save(job.with_status("failed", f"{type(exc).__name__}: {exc}"[:2000])))
            continue
        if outcome.manifest is None:
            done.append(store.save(job.with_status("failed", "; ".join(outcome.notes)[:2000] or "nothing written")))
            continue
        m = outcome.manifest
        reason = "written" + ("" if outcome.announce_error is None else f", not announced: {outcome.announce_error}")
        done.append(store.save(job.with_status("succeeded", reason[:2000], dataset_id=m.dataset_id, scenarios=len(outcome.scenarios),
                                               splits=dict(m.splits))))
    return done
