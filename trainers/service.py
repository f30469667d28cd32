"""The trainer service: finished datasets in, candidate models out (``agentgym trainer run``).

It consumes ``gym-datasets-v1`` (consumer group ``AGENTGYM_TRAINER_GROUP``) and for
each DatasetReady applies its policy:

* the dataset's kind is one it trains on (``AGENTGYM_TRAINER_KINDS``), it holds at
  least ``AGENTGYM_TRAINER_MIN_EXAMPLES`` examples, and no job for it exists yet
  (a replayed announcement does not train twice) -- else the job is ``skipped``;
* the agent's last job started at least ``AGENTGYM_TRAINER_COOLDOWN_S`` ago, and no
  candidate of the agent is still in its A/B experiment (one experiment per agent at a
  time; the registry promoter or a rollback ends it) -- else the job is ``deferred``
  until then, and a newer dataset of the same agent supersedes it (datasets are
  cumulative, so the newest holds everything the older one did);
* after an experiment promoted the agent's champion, the dataset is the second one (or
  later) announced since the promotion -- else the job waits for a newer dataset. One
  that predates the champion holds none of the traffic it served alone, and the first
  one after may have been cut moments after the promotion; the second holds at least a
  full dataset interval (``AGENTGYM_DATASET_MIN_NEW_EXAMPLES`` labelled runs) of it. So
  the next round learns what the new champion gets wrong (e.g. a kind of request that
  appeared meanwhile). A *requested* job
  (the API's ``POST /v1/training-jobs``, :func:`~agentgym.trainers.jobs.request_job`) is
  never superseded and runs before the agent's automatic ones.

A job then trains on Ray (:func:`agentgym.trainers.training.launcher.launch`) -- from the
agent's champion: its adapter, trained further (``AGENTGYM_TRAIN_INIT_FROM=champion``, the
default; ``base``: a fresh LoRA every round; a champion that is the base model itself has
no adapter, so the first round is a fresh LoRA either way) --, goes through
the validation gate against the agent's champion, is registered as ``candidate`` or
``rejected`` on ``gym-models-v1``, and a candidate gets its A/B experiment. Every step
is written to the job record (:mod:`agentgym.trainers.jobs`). The offset of an announcement is
committed once its job record holds the policy's decision; a job that a crash
interrupted is found ``running`` at the next start and run again under the same job
id, so Ray Train resumes it from its latest checkpoint.

With ``AGENTGYM_TRAINER_AUTO_PROMOTE`` (default on), :meth:`TrainerService.run` also
runs the :class:`~agentgym.trainers.promoter.RegistryPromoter` in a thread of its own: it applies
the experiments' decisions to the registry (a winner becomes champion, a rolled-back
candidate retires) while a training job blocks the main loop for minutes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agentgym.processors.datasets.store import DatasetStore, Manifest
from agentgym.producers.kafka_security import librdkafka_security
from agentgym.schemas.codec import AvroCodec
from agentgym.schemas.exceptions import DecodeError
from agentgym.schemas.topics import TOPICS
from agentgym.trainers.exceptions import GateError, InitAdapterError, RegistryError
from agentgym.trainers.experiments import start_experiment
from agentgym.trainers.gate import ValidationGate
from agentgym.trainers.jobs import JobRecord, JobStore
from agentgym.trainers.promoter import RegistryPromoter
from agentgym.trainers.registry import ModelRegistry, ModelVersion, base_version_for
from agentgym.trainers.settings import GateSettings, TrainerServiceSettings, TrainSettings
from agentgym.trainers.training.job import TrainJob, new_job_id
from agentgym.trainers.training.launcher import cluster_has_gpus, ensure_ray, launch

__all__ = ["TrainerService", "JobOutcome"]

log = logging.getLogger("agentgym.trainer")

# training metrics kept in the registry
_KEPT_METRICS = ("train_loss_first", "train_loss_last", "train_loss", "eval_before_loss", "eval_loss", "steps",
                 "train_tokens_per_s", "train_runtime_s", "train_examples", "eval_examples")


@dataclass
class JobOutcome:
    """A finished job: its record, and the registry entry when it got that far."""

    record: JobRecord
    model: ModelVersion | None = None
    experiment_id: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)


class TrainerService:
    """Consumes finished datasets and turns them into registered model versions.

    Args:
        settings: consumer, policy, job records (default: from the environment).
        train_settings: the jobs' hyperparameters and stores.
        gate_settings: the gate's margins and the experiment's traffic share.
        evaluator: the gate's evaluator (overrides ``AGENTGYM_GATE_EVALUATOR``).
        clock: milliseconds since the epoch.
    """

    def __init__(
        self,
        settings: TrainerServiceSettings | None = None,
        train_settings: TrainSettings | None = None,
        gate_settings: GateSettings | None = None,
        evaluator: Any = None,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self.settings = settings or TrainerServiceSettings()
        self.train_settings = train_settings or TrainSettings()
        self.gate_settings = gate_settings or GateSettings()
        self.evaluator = evaluator
        self.jobs = JobStore(self.settings.trainer_jobs_dir)
        self.registry = ModelRegistry(self.settings.bootstrap_servers)
        self._clock = clock or (lambda: int(time.time() * 1000))
        self._consumer: Any = None
        self._recovered = False
        self._candidates: dict[tuple[str, str], str] | None = None
        # each agent's champion and when an experiment promoted it (0: not by an experiment), read with the candidates
        self._promoted: dict[tuple[str, str], tuple[str, int]] = {}
        self._candidates_read = 0.0
        self.promoter: RegistryPromoter | None = (
            RegistryPromoter(self.settings.bootstrap_servers, self.settings.trainer_promoter_group)
            if self.settings.trainer_auto_promote else None)
        self._promoting: threading.Thread | None = None

    # -- policy -----------------------------------------------------------------------
    def admit(self, ready: dict[str, Any]) -> JobRecord:
        """The policy's decision on one DatasetReady record (saved as a job record)."""
        now = self._clock()
        rec = JobRecord(
            job_id=new_job_id(now), dataset_id=ready["dataset_id"], tenant_id=ready["tenant_id"],
            agent_id=ready["agent_id"], kind=ready["kind"], status="deferred", dataset_uri=ready["uri"],
            num_examples=int(ready["num_examples"]), created_ms=now, updated_ms=now,
        )
        s = self.settings
        earlier = [r for r in self.jobs.for_dataset(rec.dataset_id) if r.status not in ("failed", "superseded")]
        if earlier:
            return self.jobs.save(rec.with_status("skipped", f"dataset already handled by {earlier[0].job_id} ({earlier[0].status})"))
        if rec.kind not in s.kinds:
            return self.jobs.save(rec.with_status("skipped", f"kind {rec.kind} is not trained on (trainer_kinds={s.trainer_kinds})"))
        if rec.num_examples < s.trainer_min_examples:
            return self.jobs.save(rec.with_status("skipped", f"{rec.num_examples} examples < trainer_min_examples={s.trainer_min_examples}"))
        for old in self._deferred(rec.tenant_id, rec.agent_id):
            if not old.requested:  # somebody asked for that one: it stays
                self.jobs.save(old.with_status("superseded", f"superseded by {rec.dataset_id}"))
        due = self.jobs.last_started_ms(rec.tenant_id, rec.agent_id) + int(s.trainer_cooldown_s * 1000)
        return self.jobs.save(rec.with_status("deferred", "waiting for the cool-down" if due > now else "due", due_ms=due))

    def _deferred(self, tenant_id: str | None = None, agent_id: str | None = None) -> list[JobRecord]:
        return [r for r in self.jobs.list() if r.status == "deferred"
                and (tenant_id is None or (r.tenant_id, r.agent_id) == (tenant_id, agent_id))]

    def recover(self) -> list[JobRecord]:
        """Jobs a crash left ``running``: deferred again, to resume under their own job id."""
        out = []
        for rec in self.jobs.list():
            if rec.status == "running":
                out.append(self.jobs.save(rec.with_status("deferred", "interrupted; resuming from its last checkpoint")))
        return out

    def run_due(self) -> list[JobOutcome]:
        """Runs every deferred job whose cool-down is over (requested ones first, then oldest first)."""
        out = []
        for rec in sorted(self._deferred(), key=lambda r: (not r.requested, r.created_ms)):
            # re-check: a job run just now restarts the agent's cool-down; an interrupted job resumes at once
            due = self.jobs.last_started_ms(rec.tenant_id, rec.agent_id) + int(self.settings.trainer_cooldown_s * 1000)
            if rec.started_ms == 0 and due > self._clock():
                if due != rec.due_ms:
                    self.jobs.save(rec.with_status("deferred", "waiting for the cool-down", due_ms=due))
                continue
            if rec.started_ms == 0:
                in_test = self._candidate_in_test(rec.tenant_id, rec.agent_id)
                reason = f"waiting for the experiment of candidate {in_test} to decide" if in_test else ""
                promoted = self._promoted.get((rec.tenant_id, rec.agent_id))
                if not reason and not rec.requested and promoted is not None and promoted[1] and \
                        self._datasets_since(rec.tenant_id, rec.agent_id, promoted[1], rec.created_ms) < 2:
                    # the first dataset after a promotion may have been cut moments after it: the second one
                    # holds at least a full dataset interval of the champion's own traffic (and its failures)
                    reason = f"waiting for a full dataset interval of champion {promoted[0]}'s own traffic"
                if reason:
                    if rec.reason != reason:
                        self.jobs.save(rec.with_status("deferred", reason))
                    continue
            out.append(self.run_job(rec))
        return out

    def _datasets_since(self, tenant_id: str, agent_id: str, since_ms: int, until_ms: int) -> int:
        """Datasets of the agent announced (admitted) in ``[since_ms, until_ms]``, superseded ones included."""
        return sum(1 for r in self.jobs.list() if (r.tenant_id, r.agent_id) == (tenant_id, agent_id)
                   and since_ms <= r.created_ms <= until_ms)

    def _candidate_in_test(self, tenant_id: str, agent_id: str) -> str | None:
        """The agent's candidate still in its A/B experiment, if any (the registry re-read at most every 5 s).

        One experiment per agent at a time: a second candidate would split the traffic
        of the first one's experiment and its decision would wait for both. An unreadable
        registry counts as "a candidate may be in test" (try again later).
        """
        now = time.monotonic()
        if self._candidates is None or now - self._candidates_read >= 5.0:
            try:
                versions = self.registry.versions()
                self._candidates = {(mv.tenant_id, mv.agent_id): mv.model_version for mv in versions if mv.status == "candidate"}
                self._promoted = {(mv.tenant_id, mv.agent_id): (mv.model_version, int(mv.metrics.get("promoted_ms") or 0))
                                  for mv in versions if mv.status == "champion"}
            except RegistryError as exc:
                log.warning("trainer: cannot read the registry (%s); jobs wait", exc)
                return "(registry unreadable)"
            self._candidates_read = now
        return self._candidates.get((tenant_id, agent_id))

    # -- one job ----------------------------------------------------------------------
    def init_adapter_for(self, champion: ModelVersion | None, base: str) -> str | None:
        """The adapter a job of the agent starts from: the champion's with ``train_init_from=champion``
        (the default), when the champion has one and is an adapter of ``base``; else None (a fresh LoRA)."""
        if self.train_settings.train_init_from != "champion" or champion is None or not champion.adapter_uri:
            return None
        if champion.base_model != base:
            log.warning("trainer: the champion %s is an adapter of %s, the job trains %s: a fresh LoRA",
                        champion.model_version, champion.base_model, base)
            return None
        return champion.adapter_uri

    def run_job(self, rec: JobRecord, base_model: str | None = None, *, init_adapter: str | None = None,
                **job_overrides: Any) -> JobOutcome:
        """Trains, gates, registers (and starts the experiment for) one admitted job.

        Args:
            rec: the job record (its ``job_id`` names the Ray run: the same id resumes).
            base_model: the base to fine-tune (default: the champion's base, else ``trainer_base_model``).
            init_adapter: the adapter to train further (any fsspec URL; recorded as ``init_from=adapter``);
                default: the champion's adapter when ``train_init_from`` is ``champion`` and it has one
                (:meth:`init_adapter_for`), else a fresh LoRA.
            job_overrides: :class:`TrainJob` fields to override (``max_steps``, ...).
        """
        try:
            manifest = DatasetStore.open(rec.dataset_uri)
            champion = self.registry.champion(rec.tenant_id, rec.agent_id)
            base = base_model or (champion.base_model if champion is not None else self.settings.trainer_base_model)
            init_from = "adapter" if init_adapter else "base"
            if not init_adapter:
                init_adapter = self.init_adapter_for(champion, base)
                init_from = "champion" if init_adapter else "base"
            ensure_ray(self.train_settings.train_ray_num_cpus, self.train_settings.train_ray_address or None)
            ts = self.train_settings
            use_gpu = ts.train_use_gpu == "yes" or (ts.train_use_gpu == "auto" and cluster_has_gpus(ts.train_num_workers))
            try:
                job = TrainJob.for_dataset(manifest, base, ts, job_id=rec.job_id, use_gpu=use_gpu,
                                           init_adapter=init_adapter, init_from=init_from, **job_overrides)
            except InitAdapterError as exc:
                if init_from != "champion" or champion is None:
                    raise
                raise InitAdapterError(f"the champion {champion.model_version}'s adapter cannot be trained further: {exc} "
                                       "(AGENTGYM_TRAIN_INIT_FROM=base trains a fresh LoRA)") from exc
            start = (f" from the champion {champion.model_version}" if init_from == "champion" and champion else
                     f" from the adapter {init_adapter}" if init_from == "adapter" else "")
            rec = self.jobs.save(rec.with_status("running", f"training {job.method} on Ray{start}", base_model=base,
                                                 model_version=job.model_version, started_ms=self._clock()))
            result = launch(job)
            rec = self.jobs.save(rec.with_status("running", "validation gate"))
            gate = ValidationGate(self.gate_settings, self.evaluator)
            eval_rows = DatasetStore(manifest.uri.rsplit("/", 1)[0]).read(manifest, "eval")
            metrics = {k: result.metrics[k] for k in _KEPT_METRICS if k in result.metrics}
            try:
                decision = gate.evaluate(
                    eval_rows, candidate_base=base, candidate_adapter=result.adapter_uri,
                    champion_base=champion.base_model if champion else base,
                    champion_adapter=champion.adapter_uri if champion else None,
                    use_gpu=use_gpu, max_length=job.max_length,
                )
                passed, reason = decision.passed, decision.reason
                metrics.update(decision.metrics())
            except GateError as exc:
                passed, reason = False, f"rejected: {exc}"
            hyper = {**job.hyperparameters(), "base_model": base, "job_id": job.job_id, "gate": reason[:500]}
            model = self.registry.register(ModelVersion(
                tenant_id=rec.tenant_id, model_version=job.model_version, agent_id=rec.agent_id, base_model=base,
                status="candidate" if passed else "rejected", adapter_uri=result.adapter_uri, dataset_id=rec.dataset_id,
                parent_version=champion.model_version if champion else None, hyperparameters=hyper, metrics=metrics,
            ))
            experiment_id = None
            if passed and self.gate_settings.experiment_auto_start:
                control = champion or self.registry.ensure_base_champion(rec.tenant_id, rec.agent_id, base)
                experiment_id = self._start_experiment(rec, control.model_version, model.model_version)
            verdict = "candidate" if passed else "rejected"
            rec = self.jobs.save(rec.with_status("succeeded", reason, verdict=verdict, metrics=metrics,
                                                 experiment_id=experiment_id or ""))
            log.info("trainer: %s -> %s %s (%s)", rec.job_id, verdict, model.model_version, reason)
            return JobOutcome(rec, model, experiment_id, metrics)
        except Exception as exc:
            log.exception("trainer: job %s failed", rec.job_id)
            rec = self.jobs.save(rec.with_status("failed", f"{type(exc).__name__}: {exc}"[:2000]))
            return JobOutcome(rec)

    def _start_experiment(self, rec: JobRecord, control_version: str, candidate_version: str) -> str:
        exp = start_experiment(self.settings.bootstrap_servers, rec.tenant_id, rec.agent_id, control_version,
                               candidate_version, self.gate_settings)
        return exp.experiment_id

    # -- consuming ---------------------------------------------------------------------
    def _consumer_for(self) -> Any:
        if self._consumer is None:
            from confluent_kafka import Consumer

            self._consumer = Consumer({
                "bootstrap.servers": self.settings.bootstrap_servers, "group.id": self.settings.trainer_group,
                "enable.auto.commit": False, "auto.offset.reset": "earliest",
                # a training job runs between two polls: allow a day (heartbeats still detect a dead process)
                "max.poll.interval.ms": 86_400_000, "logger": logging.getLogger("agentgym.kafka"),
                **librdkafka_security(self.settings),
            })
            self._consumer.subscribe([TOPICS["datasets"].name])
        return self._consumer

    def poll_once(self, timeout_s: float = 1.0) -> list[JobOutcome]:
        """Admits the announcements that arrived within ``timeout_s``, then runs the jobs that are due."""
        if not self._recovered:
            self.recover()
            self._recovered = True
        consumer = self._consumer_for()
        codec = AvroCodec()
        for m in consumer.consume(100, timeout_s):
            if m.error() is not None:
                continue
            try:
                ready = codec.decode(m.value(), "DatasetReady").record
            except DecodeError as exc:  # the sink dead-letters it; the trainer just moves on
                log.warning("trainer: skipping an undecodable DatasetReady at %d@%d: %s", m.partition(), m.offset(), exc)
            else:
                rec = self.admit(ready)
                log.info("trainer: dataset %s: job %s %s (%s)", rec.dataset_id, rec.job_id, rec.status, rec.reason)
            consumer.commit(message=m, asynchronous=False)
        return self.run_due()

    def run(self, stop: threading.Event | None = None, poll_s: float = 1.0) -> None:
        """Serves until ``stop`` is set (or forever); the promoter, when on, polls in its own thread.

        :meth:`poll_once` handles datasets and jobs only; the promoter's
        :meth:`~agentgym.trainers.promoter.RegistryPromoter.poll_once` can be called on its own.
        """
        stop = stop or threading.Event()
        if self.promoter is not None:
            self._promoting = threading.Thread(target=self.promoter.run, args=(stop, poll_s), name="agentgym-promoter",
                                               daemon=True)
            self._promoting.start()
        try:
            while not stop.is_set():
                self.poll_once(poll_s)
        finally:
            stop.set()  # the main loop ended (or raised): the promoter stops with it
            if self._promoting is not None:
                # a decision in progress finishes first (its reads and writes have timeouts of their own)
                self._promoting.join(120.0)

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
        if self.promoter is not None:
            if self._promoting is not None and self._promoting.is_alive():
                log.warning("trainer: the promoter is still applying a decision; its consumer is left to the process's exit")
            else:
                self.promoter.close()
        self.registry.close()
