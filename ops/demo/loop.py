"""The closed loop, end to end: what ``agentgym demo`` runs.

1. **Stack**: a Kafka broker (KRaft), the Faust worker (ClickHouse sink, labeller,
   experiments processor, dataset builder; embedded ClickHouse) and the trainer
   service (Ray Train, the validation gate, the registry promoter), each a process of
   its own (:mod:`agentgym.ops.demo.stack`).
2. **Base model**: a tiny byte-level Llama pre-trained on the routing format, with two
   blind spots (:mod:`agentgym.ops.demo.base`), cached after the first run.
3. **Traffic**: agents serve requests with the model version the live experiment
   assigns (else the registry's champion) and record every run through the SDK;
   simulated users give noisy feedback (:mod:`agentgym.ops.demo.agents`).
4. From there the **real pipeline** does everything: the labeller labels runs; the
   dataset builder finishes a dataset once enough labelled runs wait; the trainer
   service fine-tunes a LoRA adapter on Ray, gates it against the champion on held-out
   examples and starts an A/B experiment; the experiments processor's sequential test
   decides; the configuration switches all traffic to the winner (the agents follow it
   live) and the promoter makes the winner the registry's champion.
5. **Measurement**: the base and the promoted version answer the same held-out
   requests (none seen during the run); success rates with Wilson intervals, and the
   paired difference with a normal interval. The simulator's ground truth is used only
   here, by the simulated users and by the simulated reviewers -- never by a label or a
   decision directly.

**Audit sample.** The trainer creates the experiment with ``audit_rate`` (``--audit-rate``,
default 0.2); simulated reviewers (:mod:`agentgym.ops.demo.reviewers`) label the runs of
the audit sample the annotation queue would offer with the truth, wrong ``review_error``
of the time. Their gold labels are what the experiments processor's prediction-powered
estimate corrects the labeller's labels with, and the decision uses that corrected
estimate. The report shows the experiment's labelled and corrected estimates beside the
truth over the experiment's units and the held-out measurement.

**Three phases**, each driven only by the real pipeline:

1. *Improvement*: the first fine-tuned model (trained on the base's failures and the
   users' corrections) beats the base in the A/B test and is promoted.
2. *Drift and recovery*: once the first experiment has decided and its winner has served
   ``drift_after_runs`` (400) requests, so its drift detector has a before, the traffic changes
   (:data:`~agentgym.ops.demo.task.DRIFT_MIX`: a new tool, ``cancel_order``, that no
   model has learnt, takes 40% of the requests). Success drops, the labeller's drift
   detector (ADWIN per model version) raises an alert, the dataset builder collects the
   new failures and corrections (the trainer waits for a full dataset interval of the
   new champion's own traffic), the next candidate trains
   *from the current champion* (its adapter, trained further), and the A/B test
   promotes it.
3. *A bad candidate, rolled back*: when the second experiment starts, the demo injects
   a deliberately broken dataset (the newest real dataset with every tool name rotated
   to the next tool) and requests a training job on it, as an operator would through the
   API. It trains from the champion, passes the gate (its loss on its own broken
   held-out split is lower than the champion's: the gate cannot know), and the live A/B
   test rolls it back; the champion keeps serving and the registry retires the version
   with the reason.

The loop only watches (registry, experiment configuration, ClickHouse, job records)
and prints what happens; it decides nothing. Held-out success is then measured per
phase: base against the first promotion on the original traffic, the first against the
second promotion on the traffic after the drift (and on the new kind of request alone),
the champion against the bad candidate on the same.
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click

from agentgym.ops.demo.agents import ModelPool, RouterAgent, RunResult, SimulatedUsers
from agentgym.ops.demo.base import DEFAULT_STEPS, base_model_dir, pretrain_base
from agentgym.ops.demo.report import (AuditArm, AuditFigures, CsPoint, DemoReport, ExperimentView, HeldOut, RatePoint,
                                     wilson, write)
from agentgym.ops.demo.reviewers import SimulatedReviewers
from agentgym.ops.demo.stack import DemoStack
from agentgym.ops.demo.task import ALL_INTENTS, DRIFT_MIX, NEW_INTENTS, is_correct, mix_label, sample_task, sample_tasks
from agentgym.ops.exceptions import StackError
from agentgym.processors.datasets.store import DatasetStore
from agentgym.processors.experiments.config import ExperimentConfig
from agentgym.producers import AgentGym
from agentgym.trainers.jobs import JobStore, request_job
from agentgym.trainers.registry import STATUS_REASON, ModelRegistry, base_version_for

__all__ = ["DemoConfig", "DemoResult", "Round", "run_demo", "audit_shortfall", "broken_rows"]

TENANT, AGENT = "demo", "router"
TREATMENT_WEIGHT = 0.5  # the candidate's share of the experiment's traffic
# the experiments engine makes no corrected inference below min(30, min_samples_per_arm)
# audited units per arm (processors/experiments/engine.py, _MIN_AUDIT)
_ENGINE_MIN_AUDIT = 30
_AUDIT_HEADROOM = 1.6  # users enough for this many times the minimum audited units per arm


@dataclass(frozen=True)
class DemoConfig:
    """Sizes and pace of one demo run (``--fast`` and ``--scale`` pick them)."""

    users: int = 1200  # the users at the start (the experiments' units)
    # the share of requests that come from a user never seen before (who then returns like the others):
    # the experiments count a unit by its first run, so with a closed population an experiment whose
    # evidence was still short once every user had been seen froze -- new users keep it going
    new_user_share: float = 0.2
    batch: int = 16
    rate: float = 25.0  # runs per second the agents aim at
    dataset_min_new: int = 700  # labelled runs that finish the first dataset (and each later one)
    min_samples_per_arm: int = 40
    heldout: int = 300
    settle_s: float = 20.0  # traffic after the switch, so the plots show it
    base_steps: int = DEFAULT_STEPS
    train_epochs: float = 4.0
    train_max_steps: int = 240  # per round (datasets are cumulative: later rounds would take ever longer)
    gate_max_eval: int = 200  # held-out examples the gate scores each version on
    timeout_s: float = 1500.0  # the loop (after start-up) gives up after this long (a bound, not a wait)
    seed: int = 7
    audit_rate: float = 0.2  # the experiment's audit sample (0: none)
    review_error: float = 0.03  # the simulated reviewers' error rate
    # the first winner's runs (its experiment's included) before the traffic changes: the labeller's drift
    # detector needs a "before" -- it counts runs with the users' feedback (~40% of them); with ~70 such runs
    # ADWIN missed a 0.82 -> 0.45 drop 13 times in 30 simulations (once in the full suite), with 130+ never
    drift_after_runs: int = 400
    # the agents wait while a training job trains or is gated and no experiment runs, so the job has the CPU
    # (--fast: on two cores the traffic's inference and pipeline slowed each job 2-3x: 104-133 s a job on
    # 2026-12-04's slow host). The full run keeps serving, as agents in production do
    idle_while_training: bool = False

    @classmethod
    def preset(cls, fast: bool = False, scale: float = 1.0, **overrides: Any) -> "DemoConfig":
        """The sizes of ``--fast`` / ``--scale``, then ``overrides`` (None: keep).

        With an audit sample and no ``users`` override, the users (the experiment's units)
        are raised to what the audit sample needs, before and after scaling: about 1.6
        times the engine's minimum of audited units per arm (:func:`audit_users`).
        """
        # --fast: a quicker pace, so that the datasets fill and each experiment meets its units (a unit
        # counts with its first run; new users keep arriving, new_user_share) in seconds. Its loop took
        # 543 s on 2026-12-04's slow two-core host: 900 s is a bound, not a wait
        base = (cls(users=1000, rate=40.0, dataset_min_new=500, min_samples_per_arm=30, heldout=200, settle_s=4.0,
                    train_max_steps=200, gate_max_eval=100, timeout_s=900.0, idle_while_training=True) if fast else cls())
        audit_rate = overrides.get("audit_rate")
        base = replace(base, audit_rate=base.audit_rate if audit_rate is None else audit_rate)
        base = replace(base, users=max(base.users, audit_users(base)))  # scaled below like the rest
        if scale != 1.0:
            base = replace(base, users=max(20, round(base.users * scale)),
                           dataset_min_new=max(100, round(base.dataset_min_new * scale)),
                           min_samples_per_arm=max(10, round(base.min_samples_per_arm * scale)),
                           heldout=max(50, round(base.heldout * scale)), timeout_s=base.timeout_s * max(1.0, scale))
        cfg = replace(base, **{k: v for k, v in overrides.items() if v is not None})
        if overrides.get("users") is None and cfg.audit_rate > 0:
            cfg = replace(cfg, users=max(cfg.users, audit_users(cfg)))
        return cfg

    def min_audit(self) -> int:
        """Audited units per arm before the engine's corrected estimate makes an inference."""
        return max(2, min(_ENGINE_MIN_AUDIT, self.min_samples_per_arm))


def audit_users(cfg: DemoConfig) -> int:
    """Users (units) whose audit sample holds about 1.6 times the engine's minimum per arm."""
    if cfg.audit_rate <= 0:
        return 0
    return math.ceil(_AUDIT_HEADROOM * cfg.min_audit() / (cfg.audit_rate * min(TREATMENT_WEIGHT, 1 - TREATMENT_WEIGHT)))


def audit_shortfall(cfg: DemoConfig) -> str | None:
    """Why the configuration's audit sample cannot let the experiment decide, or None when it can.

    Each arm's audit sample is about ``users x weight x audit_rate`` units; the engine needs
    ``min_audit`` of them per arm (with some headroom: the sample is random) before the
    corrected test infers anything, so with fewer the experiment would never decide.
    """
    if not 0.0 <= cfg.audit_rate < 1.0:
        return f"--audit-rate: must be in [0, 1), got {cfg.audit_rate:g}"
    if not 0.0 <= cfg.review_error < 0.5:
        return f"--review-error: must be in [0, 0.5), got {cfg.review_error:g}"
    if cfg.audit_rate <= 0:
        return None
    per_arm = cfg.users * TREATMENT_WEIGHT * cfg.audit_rate
    if per_arm < 1.25 * cfg.min_audit():
        return (f"--users {cfg.users} with --audit-rate {cfg.audit_rate:g}: about {per_arm:.0f} audited units per arm, but the "
                f"corrected test needs {cfg.min_audit()} per arm before it decides; use at least --users {audit_users(cfg)}, "
                "a higher --audit-rate, or --audit-rate 0")
    return None


@dataclass
class DemoResult:
    """What one run achieved (also in the report)."""

    promoted: bool = False
    decision: str = ""
    winner_version: str = ""
    base_version: str = ""
    base_rate: float = 0.0
    promoted_rate: float = 0.0
    improvement: float = 0.0
    improvement_ci: tuple[float, float] = (0.0, 0.0)
    heldout_n: int = 0
    runs: int = 0
    stored_experiences: int = 0
    audit_rate: float = 0.0
    review_error: float = 0.0
    # the audit sample: reviews posted and stored, the experiment's labelled and corrected
    # estimates beside the simulator's truth over the experiment's units (AuditFigures.to_dict)
    audit: dict[str, Any] = field(default_factory=dict)
    report_path: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)
    # the three phases (Round.to_dict each), the drift and the final champion
    phases: list[dict[str, Any]] = field(default_factory=list)
    drift: dict[str, Any] = field(default_factory=dict)
    final_champion: str = ""


PHASES = {1: "improvement", 2: "drift and recovery", 3: "a bad candidate, rolled back"}


@dataclass
class Round:
    """One fine-tuning round as the demo saw it: dataset -> job -> model -> experiment -> decision."""

    phase: int
    experiment_id: str = ""
    control_version: str = ""
    candidate_version: str = ""
    started_s: float | None = None
    decided_s: float | None = None
    status: str = ""  # the experiment's: concluded, rolled_back
    decision: str = ""  # "action winner: reason", from gym-decisions-v1
    winner_version: str = ""
    promoted: bool = False
    # the lineage, from the job record and the registry
    dataset_id: str = ""
    num_examples: int = 0
    job_id: str = ""
    parent_version: str = ""
    init_from: str = ""
    registry_status: str = ""
    registry_reason: str = ""
    injected: str = ""  # what the demo injected (phase 3), else empty
    cs: list[CsPoint] = field(default_factory=list)
    heldout: dict[str, Any] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return f"phase {self.phase}: {PHASES.get(self.phase, '')}"

    def to_dict(self) -> dict[str, Any]:
        doc = {k: v for k, v in self.__dict__.items() if k != "cs"}
        doc["title"] = self.title
        doc["looks"] = len(self.cs)
        return doc


class _Registry:
    """The registry, re-read in the background every ``every_s`` (reading it scans the compacted topic)."""

    def __init__(self, bootstrap: str, every_s: float = 2.0) -> None:
        self.registry = ModelRegistry(bootstrap)
        self.versions: dict[str, Any] = {}
        self._every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-registry", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.versions = {mv.model_version: mv for mv in self.registry.versions(TENANT, AGENT)}
            except Exception:
                pass
            self._stop.wait(self._every_s)

    def champion(self) -> str | None:
        champs = [mv for mv in self.versions.values() if mv.status == "champion"]
        return max(champs, key=lambda m: m.updated_ms).model_version if champs else None

    def get(self, version: str) -> Any:
        mv = self.versions.get(version)
        return mv if mv is not None else self.registry.get(version)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.registry.close()


def _bar(done: float, total: float, width: int = 20) -> str:
    frac = 0.0 if total <= 0 else max(0.0, min(1.0, done / total))
    return "[" + "#" * round(frac * width) + "." * (width - round(frac * width)) + "]"


class _DemoRun:
    """One demo run, advanced phase by phase by :func:`run_demo`.

    The phases share the stack, the registry view, the SDK client, the agents and the
    account of what happened (``result``, ``events``), so each phase is a method of one
    object that holds them. :meth:`close` stops what the phases started.
    """

    def __init__(self, cfg: DemoConfig, home: Path, echo: Callable[[str], None]) -> None:
        self.cfg = cfg
        self.home = home
        self.echo = echo
        self.t_start = time.monotonic()
        self.started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.result = DemoResult()
        self.events: list[tuple[float, str]] = []
        self.stack = DemoStack(home, echo)
        self.registry: _Registry | None = None
        self.gym: Any = None
        # set by the phases, in order
        self.bootstrap = ""
        self.pretrain_target = Path()
        self.base_dir = Path()
        self.base_version = ""
        self.pool: Any = None
        self.agent: Any = None
        self.users: Any = None
        self.rng = random.Random(cfg.seed)
        self.user_ids: list[str] = []
        self.history: list[RunResult] = []
        self.seen: set[str] = set()  # every request the agents served: held-out requests exclude them
        self.truth: dict[str, bool] = {}  # trace id -> the run was right (the simulator's; reviewers only)
        self.reviewers: SimulatedReviewers | None = None
        self.last_review = 0.0
        # what the traffic loop has seen of the experiments (one Round each, in order)
        self.phase = "collect"
        self.experiment_id = ""  # the newest experiment's
        self.rounds: list[Round] = []
        self.reported: set[str] = set()
        self.job_seen = ""
        # phase 2: the traffic's mix of intents (None: the original four) and the drift detector's alerts
        self.mix: dict[str, float] | None = None
        self.drift_started: float | None = None
        self.drift_champion: str | None = None  # the first winner, whose runs are counted until the drift
        self.champion_runs = 0
        self.champion_scan = 0  # history counted so far
        self.drift_alerts: list[dict[str, Any]] = []
        self.last_drift_check = 0.0
        # phase 3: the job the demo requested on a broken dataset
        self.injected_job = ""
        self.injected_dataset = ""
        self.done_at: float | None = None
        # --fast: the agents wait while a job trains (cfg.idle_while_training); checked once a second
        self.idle = False
        self.idle_checked = 0.0

    def elapsed(self) -> float:
        """Seconds since the run started."""
        return time.monotonic() - self.t_start

    def say(self, msg: str, mark: str | None = None) -> None:
        """Prints ``msg`` with the elapsed time; ``mark`` also records it as an event of the report."""
        self.echo(f"[{self.elapsed():5.0f}s] {msg}")
        if mark:
            self.events.append((self.elapsed(), mark))

    # -- 1/5 ---------------------------------------------------------------------------
    def start_stack(self) -> None:
        """Phase 1: stops what an earlier run left, then starts Kafka, the Faust worker and the trainer service."""
        cfg, stack = self.cfg, self.stack
        self.say("1/5 starting the local stack (state in " + str(stack.root) + ")")
        stack.reset()
        self.bootstrap = stack.start_kafka()
        self.say(f"      Kafka 4.1 (KRaft) on {self.bootstrap}")
        self.pretrain_target = base_model_dir(self.home, cfg.base_steps)
        port = stack.start_worker(
            AGENTGYM_PROCESSORS="sink,labeller,experiments,datasets", AGENTGYM_LABELLER_QUIET_PERIOD_S="2",
            AGENTGYM_DATASET_INTERVAL_S="3", AGENTGYM_DATASET_MIN_NEW_EXAMPLES=str(cfg.dataset_min_new),
            AGENTGYM_DATASET_MIN_EXAMPLES="50",
            # templated requests: "Track order 12345" and "Track order 54321" are near duplicates by
            # MinHash, yet different lessons; drop exact duplicates only
            AGENTGYM_DATASET_NEAR_DUPLICATE_THRESHOLD="1.0",
            AGENTGYM_EXPERIMENTS_SNAPSHOT_INTERVAL_S="3",
        )
        self.say(f"      Faust worker up: sink, labeller, experiments, datasets; ClickHouse reads on http://127.0.0.1:{port}")
        stack.start_trainer(
            AGENTGYM_TRAINER_BASE_MODEL=str(self.pretrain_target), AGENTGYM_TRAINER_MIN_EXAMPLES="50",
            AGENTGYM_TRAINER_COOLDOWN_S="45", AGENTGYM_TRAINER_KINDS="sft",
            AGENTGYM_TRAIN_LEARNING_RATE="3e-3", AGENTGYM_TRAIN_EPOCHS=str(cfg.train_epochs),
            AGENTGYM_TRAIN_MAX_STEPS=str(cfg.train_max_steps), AGENTGYM_TRAIN_INIT_FROM="champion",
            AGENTGYM_TRAIN_MAX_LENGTH="256", AGENTGYM_TRAIN_BATCH_SIZE="8", AGENTGYM_TRAIN_LOGGING_STEPS="5",
            AGENTGYM_TRAIN_SAVE_STEPS="50", AGENTGYM_TRAIN_RAY_NUM_CPUS="2",
            # the gate on held-out loss alone: exact match against the dataset's references would
            # reward imitating the label noise (a refund "successfully" sent to track_order); the
            # A/B test on live traffic is the judge of task success
            AGENTGYM_GATE_EVALUATOR="", AGENTGYM_GATE_MAX_EVAL_EXAMPLES=str(cfg.gate_max_eval),
            AGENTGYM_EXPERIMENT_TREATMENT_WEIGHT=str(TREATMENT_WEIGHT),
            AGENTGYM_EXPERIMENT_MIN_SAMPLES_PER_ARM=str(cfg.min_samples_per_arm),
            AGENTGYM_EXPERIMENT_AUDIT_RATE=str(cfg.audit_rate),
        )
        self.say("      trainer service up: gym-datasets-v1 -> Ray Train -> gate -> registry; decisions -> promotion")
        self.result.audit_rate, self.result.review_error = cfg.audit_rate, cfg.review_error
        self.result.timings["stack_s"] = self.elapsed()

    # -- 2/5 ---------------------------------------------------------------------------
    def prepare_base_model(self) -> None:
        """Phase 2: the base model, pre-trained here with a progress bar the first time, else from the cache."""
        cfg = self.cfg
        self.say("2/5 the base model (tiny byte-level Llama, pre-trained on the routing format)")
        t0 = time.monotonic()
        if not (self.pretrain_target / "config.json").is_file():
            with click.progressbar(length=cfg.base_steps, label="      pre-training", show_eta=True,
                                   file=None) as bar:
                last = [0]

                def progress(step: int, loss: float) -> None:
                    bar.update(step - last[0])
                    last[0] = step

                self.base_dir = pretrain_base(self.home, cfg.base_steps, progress)
        else:
            self.base_dir = pretrain_base(self.home, cfg.base_steps)
        self.say(f"      {self.base_dir.name} ready in {time.monotonic() - t0:.0f}s (cached for later runs)")
        self.result.timings["base_s"] = time.monotonic() - t0

    # -- 3/5 ---------------------------------------------------------------------------
    def start_agents(self) -> None:
        """Builds what serves the traffic: the registry view, the model pool, the SDK client
        following the live experiments, the router agent and the simulated users."""
        cfg = self.cfg
        self.base_version = base_version_for(AGENT, str(self.base_dir))
        self.result.base_version = self.base_version
        self.registry = registry = _Registry(self.bootstrap)
        base_version, base_dir = self.base_version, self.base_dir

        def describe(version: str) -> tuple[str, str | None]:
            if version == base_version:
                return str(base_dir), None
            mv = registry.get(version)
            return mv.base_model, mv.adapter_uri

        self.pool = ModelPool(describe)
        self.gym = AgentGym(self.bootstrap, tenant_id=TENANT, agent_id=AGENT, spool_dir=self.stack.root / "spool")
        self.gym.follow_experiments(wait_s=10)
        self.agent = RouterAgent(self.gym, self.pool, base_version, registry.champion, seed=cfg.seed)
        self.users = SimulatedUsers(self.gym, seed=cfg.seed + 1)
        self.user_ids = [f"user-{i:05d}" for i in range(cfg.users)]
        if cfg.audit_rate > 0:
            self.reviewers = SimulatedReviewers(self.gym, self.stack.query, cfg.review_error, seed=cfg.seed + 2)

    def serve_until_settled(self) -> None:
        """Phases 3 and 4 of the run, the demo's three phases: traffic, while the pipeline labels,
        builds datasets, trains, gates, runs the experiments and decides; the demo changes the
        traffic (phase 2) and injects a broken dataset (phase 3). Returns once the bad
        candidate's experiment has ended and its outcome is in the registry.

        Raises:
            StackError: a process died, or the loop did not close within ``cfg.timeout_s``.
        """
        cfg = self.cfg
        self.say(f"3/5 {cfg.users} users send requests, and new users arrive ({cfg.new_user_share:.0%} of the requests) "
                 f"({mix_label(None)}); agents serve {self.base_version} (the base) ...",
                 mark="traffic starts")
        self.say("      phase 1 (improvement): the base's failures and the users' corrections become the first dataset")
        deadline = time.monotonic() + cfg.timeout_s
        last_status = 0.0
        while True:
            now = time.monotonic()
            if now > deadline:
                raise StackError(f"the loop did not close within {cfg.timeout_s:.0f}s (stuck in '{self.phase}'); "
                                 f"logs in {self.stack.root / 'logs'}")
            self.stack.check()
            if self._idle():
                time.sleep(0.25)
            else:
                self._serve_batch(now)
            self._follow_experiment()
            self._review()
            self._read_decision()
            self._maybe_start_drift()
            self._watch_drift()
            if self._settled():
                break
            if time.monotonic() - last_status >= 3.0:
                last_status = time.monotonic()
                audit = f" | audit labels {self.reviewers.posted}" if self.reviewers is not None and self.experiment_id else ""
                self.job_seen = _status(self.stack, self.say, cfg, self.phase, self.history, self.experiment_id,
                                        self.job_seen, audit)
        self.result.runs = len(self.history)
        self.result.timings["loop_s"] = self.elapsed()

    def _idle(self) -> bool:
        """With ``cfg.idle_while_training``: whether the agents wait, because a training job trains (or is
        gated) and no experiment runs. Nothing waits on the traffic then: the job trains on a dataset
        already cut, and the gate scores held-out examples."""
        if not self.cfg.idle_while_training or any(r.decided_s is None for r in self.rounds):
            self.idle = False
            return False
        now = time.monotonic()
        if now - self.idle_checked >= 1.0:
            self.idle_checked = now
            job = _safe(lambda: _latest_job(self.stack))
            idle = job is not None and job.status == "running"
            if idle and not self.idle:
                self.say(f"      agents idle while {job.job_id} trains and is gated (--fast: the CPU is the job's)")
            self.idle = idle
        return self.idle

    def _maybe_start_drift(self) -> None:
        """Phase 2 begins once the first experiment has decided and its winner has served ``drift_after_runs``."""
        if self.drift_started is not None or self.drift_champion is None:
            return
        champion = self.drift_champion
        self.champion_runs += sum(1 for r in self.history[self.champion_scan:] if r.model_version == champion)
        self.champion_scan = len(self.history)
        if not champion or self.champion_runs >= self.cfg.drift_after_runs:
            self._start_drift()

    def _start_drift(self) -> None:
        """Phase 2: a new tool, and the traffic changes."""
        if self.drift_started is not None:
            return
        self.mix = dict(DRIFT_MIX)
        self.drift_started = self.elapsed()
        tool = ", ".join(t for t, _ in NEW_INTENTS.values())
        self.say(f"      phase 2 (drift): a new tool, {tool}, launches; the traffic changes to {mix_label(self.mix)} "
                 "(no model has learnt the new requests)", mark="drift starts")

    def _watch_drift(self, every_s: float = 3.0) -> None:
        """After the traffic changed: the labeller's drift alerts (gym-drift-v1 -> ClickHouse), printed once each."""
        if self.drift_started is None or time.monotonic() - self.last_drift_check < every_s:
            return
        self.last_drift_check = time.monotonic()
        rows = _safe(lambda: self.stack.query(
            "SELECT event_id, model_version, metric, detector, estimate_before, estimate_after, n, toUnixTimestamp64Milli(ts) "
            "FROM v_drift_alerts WHERE tenant_id = {t:String} AND agent_id = {a:String} ORDER BY ts", t=TENANT, a=AGENT), [])
        known = {a["event_id"] for a in self.drift_alerts}
        for event_id, version, metric, detector, before, after, n, ts_ms in rows or []:
            if event_id in known:
                continue
            alert = {"event_id": event_id, "model_version": version, "metric": metric, "detector": detector,
                     "estimate_before": float(before), "estimate_after": float(after), "n": int(n),
                     "t_s": self.elapsed(), "drop": float(after) < float(before)}
            self.drift_alerts.append(alert)
            first_drop = alert["drop"] and sum(a["drop"] for a in self.drift_alerts) == 1
            self.say(f"      drift alert ({detector} on {metric}): {_short(version)} {float(before):.0%} -> {float(after):.0%} "
                     f"after {int(n)} labelled runs", mark="drift alert" if first_drop else None)

    def _serve_batch(self, started: float) -> None:
        """One batch of requests served and reacted to, paced to ``cfg.rate`` runs per second."""
        cfg = self.cfg
        batch = []
        for _ in range(cfg.batch):
            task = sample_task(self.rng, self.mix)
            self.seen.add(task.request)
            if self.rng.random() < cfg.new_user_share:
                self.user_ids.append(f"user-{len(self.user_ids):05d}")
                user = self.user_ids[-1]
            else:
                user = self.rng.choice(self.user_ids)
            batch.append((user, task))
        for run in self.agent.serve(batch):
            self.users.react(run)
            self.history.append(run)
            self.truth[run.trace_id] = run.correct
        pause = cfg.batch / cfg.rate - (time.monotonic() - started)
        if pause > 0:
            time.sleep(pause)

    # -- 4/5 ---------------------------------------------------------------------------
    def _configs(self) -> list[dict[str, Any]]:
        """The agent's experiments that routed traffic, oldest first (from the SDK's live follower)."""
        follower = self.gym.follow_experiments(wait_s=None)
        mine = [c for c in follower.configs().values()
                if c.get("tenant_id") == TENANT and c.get("agent_id") == AGENT
                and c.get("status") in ("running", "concluded", "rolled_back")]
        return sorted(mine, key=lambda c: c["experiment_id"])

    def _round(self, experiment_id: str) -> Round | None:
        return next((r for r in self.rounds if r.experiment_id == experiment_id), None)

    def _follow_experiment(self) -> None:
        """Reports each experiment the agents follow: when it starts, and when its configuration says it ended."""
        for exp in self._configs():
            rnd = self._round(exp["experiment_id"])
            if rnd is None:
                rnd = self._new_round(exp)
            if exp["status"] in ("concluded", "rolled_back") and rnd.decided_s is None:
                rnd.decided_s, rnd.status = self.elapsed(), exp["status"]
                self.events.append((self.elapsed(), f"decision {rnd.phase}"))
                winner = next((v for v in exp["variants"] if float(v["weight"]) > 0), None)
                if exp["status"] == "concluded" and winner is not None:
                    rnd.winner_version = winner["model_version"]
                    self.say(f"      experiment {exp['status']}: agents switched live, 100% of traffic on {rnd.winner_version}")
                else:
                    self.say(f"      experiment {exp['status']}: agents back on the control, {rnd.control_version}")
                self.phase = "settle" if rnd.phase >= 3 else "next round"
                if rnd.phase == 1:
                    self.drift_champion = rnd.winner_version or ""
                    self._maybe_start_drift()

    def _new_round(self, exp: dict[str, Any]) -> Round:
        control = next((v for v in exp["variants"] if v.get("is_control")), exp["variants"][0])
        treatment = next((v for v in exp["variants"] if v is not control), control)
        injected = self._injected_version()
        phase = 3 if injected and treatment["model_version"] == injected else min(2, 1 + len(self.rounds))
        rnd = Round(phase, exp["experiment_id"], control["model_version"], treatment["model_version"], self.elapsed())
        self.rounds.append(rnd)
        self.experiment_id = rnd.experiment_id
        self.phase = f"experiment {len(self.rounds)}"
        variants = ", ".join(f"{v['name']}={v['model_version']} ({v['weight']:.0%})" for v in exp["variants"])
        self.say(f"4/5 [{rnd.title}] A/B experiment {rnd.experiment_id} running: {variants}",
                 mark=f"experiment {rnd.phase} starts")
        if rnd.phase == 2 and not self.injected_job:
            self._inject_bad_candidate(rnd)
        return rnd

    def _injected_version(self) -> str:
        if not self.injected_job:
            return ""
        rec = _safe(lambda: JobStore(str(self.stack.root / "trainer" / "jobs")).get(self.injected_job))
        return rec.model_version if rec is not None else ""

    def _inject_bad_candidate(self, rnd: Round) -> None:
        """Phase 3, prepared while the second experiment runs: a deliberately broken dataset (the newest
        real one with every tool name rotated to the next tool) and a training job requested on it, as
        an operator would through the API; it runs once the running experiment has decided."""
        jobs = JobStore(str(self.stack.root / "trainer" / "jobs"))
        source = next((j for j in jobs.list() if j.model_version == rnd.candidate_version), None)
        if source is None or not source.dataset_uri:
            self.say("      (no dataset found for the second candidate: the bad candidate is not injected)")
            return
        try:
            manifest = DatasetStore.open(source.dataset_uri)
            store = DatasetStore(manifest.uri.rsplit("/", 1)[0])
            # the newest examples, enough to teach the wrong lesson in a short job
            rows = {split: broken_rows(store.read(manifest, split)[:cap]) for split, cap in (("train", 96), ("eval", 40))}
            now_ms = int(time.time() * 1000)
            broken = store.write(
                dataset_id=f"{manifest.dataset_id}-broken", tenant_id=TENANT, agent_id=AGENT, kind=manifest.kind,
                created_ms=now_ms, rows=rows,
                counts={"rows": {k: len(v) for k, v in rows.items()}},
                lineage={**{k: v for k, v in manifest.lineage.items() if k != "trace_ids"}, "injected_by": "agentgym demo",
                         "broken_from": manifest.dataset_id, "how": "every tool name rotated to the next tool"},
                settings=dict(manifest.settings))
            rec = request_job(jobs, broken, kinds={"sft"}, min_examples=50, cooldown_s=45.0,
                              reason="requested by the demo: a deliberately broken dataset")
        except Exception as exc:  # the demo goes on without phase 3; the test sees it in result.json
            self.say(f"      (could not inject the bad candidate: {type(exc).__name__}: {exc})")
            return
        self.injected_job, self.injected_dataset = rec.job_id, broken.dataset_id
        self.say(f"      phase 3 (prepared): the demo injects a deliberately broken dataset, {broken.dataset_id} "
                 f"({broken.num_examples} examples, tool names rotated), and requests job {rec.job_id} on it; "
                 "it trains once the running experiment decides", mark="bad dataset injected")

    def _review(self, every_s: float = 3.0) -> None:
        """Every ``every_s`` while an experiment runs: the reviewers label what the audit sample's queue offers."""
        if self.reviewers is None or not self.experiment_id or time.monotonic() - self.last_review < every_s:
            return
        self.last_review = time.monotonic()
        record = self.gym.follow_experiments(wait_s=None).get(self.experiment_id)
        if record is None:
            return
        config = ExperimentConfig.from_record(record)
        before = self.reviewers.posted
        try:
            self.reviewers.review(config, self.truth)
        except Exception:  # the worker's ClickHouse busy or restarting: the next call tries again
            return
        if before == 0 and self.reviewers.posted:
            self.say(f"      reviewers label the audit sample ({config.audit_rate:.0%} of units): "
                     f"{self.reviewers.posted} gold labels so far", mark="audit labels")

    def _read_decision(self) -> None:
        """Once an experiment ended, reads its decision (action, winner, reason) from ClickHouse."""
        for rnd in self.rounds:
            if rnd.decided_s is None or rnd.decision:
                continue
            rows = _safe(lambda: self.stack.query(
                "SELECT action, winner, reason FROM v_decisions WHERE experiment_id = {e:String} ORDER BY ts DESC LIMIT 1",
                e=rnd.experiment_id))
            if rows:
                rnd.decision = f"{rows[0][0]} {rows[0][1] or ''}: {rows[0][2]}"
                self.say(f"      decision (sequential test, from gym-decisions-v1): {rnd.decision}")

    def _settled(self) -> bool:
        """Whether the loop may stop: every experiment's decision is in the registry (a winner is the
        champion, a rolled-back candidate retired), the decisions were read (or a minute passed),
        the bad candidate's experiment ended (or none was injected and two rounds ended) and the
        traffic ran ``cfg.settle_s`` after the last decision."""
        if self.registry is None or not self.rounds:
            return False
        reg = self.registry
        champ = reg.champion()
        for rnd in self.rounds:
            if rnd.decided_s is None:
                return False
            promoted = bool(rnd.winner_version) and rnd.status == "concluded" and (
                champ == rnd.winner_version or self._status_of(rnd.winner_version) == "champion"
                or (rnd.winner_version in self._later_parents(rnd)))
            if promoted and f"promoted {rnd.experiment_id}" not in self.reported:
                self.reported.add(f"promoted {rnd.experiment_id}")
                rnd.promoted = True
                self.say(f"      registry: {rnd.winner_version} is the champion (promoted by the experiment's decision)",
                         mark=f"promoted {rnd.phase}")
            if rnd.status == "rolled_back" and f"retired {rnd.experiment_id}" not in self.reported:
                mv = _safe(lambda: reg.get(rnd.candidate_version))
                if mv is not None and mv.status in ("retired", "rejected"):
                    self.reported.add(f"retired {rnd.experiment_id}")
                    reason = (mv.hyperparameters or {}).get(STATUS_REASON, "")
                    self.say(f"      registry: {rnd.candidate_version} {mv.status}; {champ} is still the champion"
                             + (f" ({reason})" if reason else ""), mark=f"rolled back {rnd.phase}")
        last = self.rounds[-1]
        finished = last.phase >= 3 or (not self.injected_job and len(self.rounds) >= 2)
        if not finished:
            return False
        since = time.monotonic() - (self.t_start + (last.decided_s or 0.0))
        in_registry = all(f"promoted {r.experiment_id}" in self.reported or f"retired {r.experiment_id}" in self.reported
                          or not r.winner_version and r.status == "concluded" for r in self.rounds)
        if since >= self.cfg.settle_s and (in_registry or since > 60) and (all(r.decision for r in self.rounds) or since > 60):
            self.result.promoted = bool(self.rounds[0].promoted)
            return True
        return False

    def _status_of(self, version: str) -> str:
        reg = self.registry
        mv = _safe(lambda: reg.get(version)) if reg is not None else None
        return mv.status if mv is not None else ""

    def _later_parents(self, rnd: Round) -> set[str]:
        """Versions that became the parent of a later round's candidate (a champion since replaced)."""
        later = self.rounds[self.rounds.index(rnd) + 1:]
        return {r.control_version for r in later}

    # -- 5/5 ---------------------------------------------------------------------------
    def wait_until_stored(self) -> None:
        """Flushes the SDK and waits until ClickHouse holds every experience the agents sent."""
        self.say("5/5 measuring: held-out requests, each phase's two versions ...")
        # the loop has closed: the trainer would only start the next round (and take the cores from the measurement)
        self.stack.stop_child("trainer")
        self.gym.flush(30)
        sent = len(self.history)
        stack = self.stack
        self.result.stored_experiences = stack.wait(
            lambda: _at_least(stack.query("SELECT count() FROM v_experiences WHERE tenant_id = {t:String}", t=TENANT)[0][0], sent),
            120, "every experience in ClickHouse")
        if self.reviewers is not None and self.reviewers.posted:
            posted = self.reviewers.posted
            self.result.audit["reviews_stored"] = stack.wait(
                lambda: _at_least(stack.query(_AUDIT_LABELS_SQL, t=TENANT)[0][0], posted),
                60, "every audit label in ClickHouse")

    def collect(self) -> dict[str, Any]:
        """What the report shows besides the held-out measurement (see :func:`_collect`, :func:`_audit_figures`),
        and each round's lineage (job record and registry entry)."""
        data = _collect(self.stack, self.registry, self.history, self.users, self.rounds, self.events, self.elapsed)
        first = self.rounds[0].experiment_id if self.rounds else ""
        if self.reviewers is not None and first:
            data["audit"] = _audit_figures(self.stack, first, self.history, self.reviewers, self.cfg)
        jobs = _safe(lambda: JobStore(str(self.stack.root / "trainer" / "jobs")).list(), []) or []
        for rnd in self.rounds:
            job = next((j for j in jobs if j.model_version == rnd.candidate_version), None)
            if job is not None:
                rnd.job_id, rnd.dataset_id, rnd.num_examples = job.job_id, job.dataset_id, job.num_examples
                if job.job_id == self.injected_job:
                    rnd.injected = f"a deliberately broken dataset ({job.dataset_id}: every tool name rotated to the next tool)"
            reg = self.registry
            mv = _safe(lambda: reg.registry.get(rnd.candidate_version)) if reg is not None else None
            if mv is not None:
                hyper = dict(mv.hyperparameters or {})
                rnd.parent_version = mv.parent_version or ""
                rnd.init_from = hyper.get("init_from", "")
                rnd.registry_status, rnd.registry_reason = mv.status, hyper.get(STATUS_REASON, "")
        return data

    def measure_held_out(self) -> list[HeldOut]:
        """Held-out success per phase, on requests no agent was served: the base against the first
        promotion on the original traffic; the first against the second promotion on the traffic
        after the drift (and on the new kind of request alone); the champion against the bad
        candidate on the same. Paired differences with normal 95% intervals go to each round's
        ``heldout`` and, for phase 1, to ``result`` (``improvement``)."""
        cfg, result = self.cfg, self.result
        original = sample_tasks(cfg.heldout, cfg.seed + 1000, exclude=self.seen)
        drifted = sample_tasks(cfg.heldout, cfg.seed + 2000, exclude=self.seen | {t.request for t in original}, mix=DRIFT_MIX)
        sets = {"original traffic": original, "after the drift": drifted}
        scored: dict[tuple[str, str], list[bool]] = {}

        def score(version: str, set_name: str) -> list[bool]:
            if (version, set_name) not in scored:
                tasks, answers = sets[set_name], []
                for i in range(0, len(tasks), 64):
                    answers += [a for a, _, _ in self.pool.generate(version, [t.request for t in tasks[i:i + 64]])]
                scored[(version, set_name)] = [is_correct(t, a) for t, a in zip(tasks, answers)]
            return scored[(version, set_name)]

        def rate(ok: list[bool]) -> dict[str, Any]:
            lo, hi = wilson(sum(ok), len(ok))
            return {"successes": sum(ok), "n": len(ok), "rate": sum(ok) / len(ok) if ok else 0.0, "low": lo, "high": hi}

        held: list[HeldOut] = []
        rounds = {r.phase: r for r in reversed(self.rounds)}  # the first round of each phase
        if 1 not in rounds:  # no experiment at all: the base against the champion, as a one-phase run
            champion = (self.registry.champion() if self.registry else None) or self.base_version
            rounds[1] = Round(1, control_version=self.base_version, candidate_version=champion)
        for phase in sorted(rounds):
            rnd = rounds[phase]
            set_name = "original traffic" if phase == 1 else "after the drift"
            control, candidate = score(rnd.control_version, set_name), score(rnd.candidate_version, set_name)
            diff, ci = _paired(control, candidate)
            roles = ("base" if phase == 1 else "champion", "bad candidate" if phase == 3 else
                     ("promoted" if rnd.promoted else "candidate"))
            rnd.heldout = {"set": set_name, "control": {"model_version": rnd.control_version, **rate(control)},
                           "candidate": {"model_version": rnd.candidate_version, **rate(candidate)}, "diff": diff, "ci": ci}
            for role, version, ok in ((roles[0], rnd.control_version, control), (roles[1], rnd.candidate_version, candidate)):
                r = rate(ok)
                held.append(HeldOut(version, f"phase {phase} {role}", r["successes"], r["n"], r["rate"], r["low"], r["high"]))
            if phase >= 2:  # the new kind of request alone
                new = [i for i, t in enumerate(drifted) if t.intent in NEW_INTENTS]
                c_new, t_new = [control[i] for i in new], [candidate[i] for i in new]
                d_new, ci_new = _paired(c_new, t_new)
                rnd.heldout["new_kind"] = {"intents": sorted(NEW_INTENTS), "control": rate(c_new), "candidate": rate(t_new),
                                           "diff": d_new, "ci": ci_new}
                if phase == 2:
                    for role, version, ok in ((roles[0], rnd.control_version, c_new), (roles[1], rnd.candidate_version, t_new)):
                        r = rate(ok)
                        held.append(HeldOut(version, f"phase 2 {role}, new kind only", r["successes"], r["n"], r["rate"],
                                            r["low"], r["high"]))
        first = rounds[1].heldout
        result.heldout_n = first["control"]["n"]
        result.base_rate, result.promoted_rate = first["control"]["rate"], first["candidate"]["rate"]
        result.improvement, result.improvement_ci = first["diff"], first["ci"]
        return held

    def write_report(self, data: dict[str, Any], held: list[HeldOut], report_path: Path | None) -> DemoResult:
        """Writes the HTML report and ``result.json``, prints the summary and returns the result."""
        result = self.result
        result.timings["total_s"] = self.elapsed()
        if self.rounds:
            first = self.rounds[0]
            result.decision, result.winner_version = first.decision, first.winner_version
        result.phases = [r.to_dict() for r in self.rounds]
        drops = [a for a in self.drift_alerts if a["drop"]]
        result.drift = {"started_s": self.drift_started, "mix": dict(DRIFT_MIX), "new_intents": sorted(NEW_INTENTS),
                        "alerts": self.drift_alerts, "alert": drops[0] if drops else None}
        result.final_champion = (self.registry.champion() if self.registry is not None else None) or ""
        audit = data.get("audit")
        if audit is not None:
            audit.heldout_diff, audit.heldout_ci = result.improvement, result.improvement_ci
            result.audit = {**audit.to_dict(), **result.audit}
        report = _report(self.cfg, self.started_at, self.elapsed(), result, held, data, self.events, self.rounds)
        path = report_path or (self.stack.root / "report.html")
        result.report_path = write(report, path)
        _write_result(self.stack.root / "result.json", result)
        _summary(self.echo, result, held, data, self.rounds)
        return result

    def close(self, keep_running: bool) -> None:
        """Closes the SDK client and the registry view; stops the stack unless ``keep_running``."""
        if self.gym is not None:
            try:
                self.gym.close()
            except Exception:
                pass
        if self.registry is not None:
            self.registry.close()
        if keep_running:
            self.echo(f"the stack keeps running: Kafka {self.stack.bootstrap}, ClickHouse http://127.0.0.1:{self.stack.http_port} "
                      f"(AGENTGYM_HOME={self.stack.root}); the next 'agentgym demo' stops it")
        else:
            self.stack.stop()


def run_demo(cfg: DemoConfig, home: Path, echo: Callable[[str], None], report_path: Path | None = None,
             keep_running: bool = False) -> DemoResult:
    """Runs the loop (see the module docstring) and returns what it measured.

    Raises:
        StackError: a process died, or a stage did not finish within ``cfg.timeout_s``.
    """
    run = _DemoRun(cfg, home, echo)
    try:
        run.start_stack()
        run.prepare_base_model()
        run.start_agents()
        run.serve_until_settled()
        run.wait_until_stored()
        data = run.collect()
        held = run.measure_held_out()
        return run.write_report(data, held, report_path)
    finally:
        run.close(keep_running)


_AUDIT_LABELS_SQL = (
    "SELECT uniqExact(trace_id) FROM v_feedback WHERE tenant_id = {t:String} AND source = 'human' "
    "AND lower(metadata['audit']) = 'true' AND metadata['experiment_id'] != ''")

_LAST_LOOK_SQL = (
    "SELECT estimator, audit_units, comparisons.estimate, comparisons.ci_low, comparisons.ci_high, comparisons.p_value, "
    "labelled_comparisons.estimate, labelled_comparisons.ci_low, labelled_comparisons.ci_high, labelled_comparisons.p_value, "
    "details_json, arms.variant, arms.n, arms.sum FROM v_stats_snapshots WHERE experiment_id = {e:String} "
    "AND metric = 'success_rate' ORDER BY ts DESC LIMIT 1")


def _audit_figures(stack: DemoStack, experiment_id: str, history: list[RunResult], reviewers: SimulatedReviewers,
                   cfg: DemoConfig) -> AuditFigures:
    """The experiment's last look at ``success_rate`` (labelled and corrected), the reviews, and the truth.

    The truth per arm is the simulator's over the experiment's units, each unit counted by
    its first labelled run, as the engine counts it (and as the annotation queue offers it).
    """
    def first(xs: Any) -> float | None:
        return float(xs[0]) if xs else None

    def ci(lo: Any, hi: Any) -> tuple[float, float] | None:
        return (float(lo[0]), float(hi[0])) if lo and hi else None

    rows = _safe(lambda: stack.query(_LAST_LOOK_SQL, e=experiment_id), []) or []
    estimator, audit_units, c_est, c_lo, c_hi, c_p, l_est, l_lo, l_hi, l_p, details_json, variants, ns, sums = (
        rows[0] if rows else ("", 0, [], [], [], [], [], [], [], [], "{}", [], [], []))
    if estimator != "prediction_powered":  # the decision's comparisons are the labelled ones
        l_est, l_lo, l_hi, l_p = c_est, c_lo, c_hi, c_p
        c_est, c_lo, c_hi, c_p = [], [], [], []
    ppi = (_safe(lambda: json.loads(details_json or "{}"), {}) or {}).get("prediction_powered", {})
    labelled = {str(t) for (t,) in _safe(lambda: stack.query(
        "SELECT trace_id FROM v_outcomes_latest WHERE tenant_id = {t:String} AND experiment_id = {e:String} "
        "AND label IN ('success', 'failure')", t=TENANT, e=experiment_id), [])}
    units: dict[str, RunResult] = {}
    for r in history:  # served in order: a unit's first labelled run
        if r.variant and r.trace_id in labelled and r.user_id not in units:
            units[r.user_id] = r
    arms: list[AuditArm] = []
    truth: dict[str, float] = {}
    for variant, n, total in zip(variants, ns, sums):
        e = ppi.get(variant, {})
        mine = [r.correct for r in units.values() if r.variant == variant]
        if mine:
            truth[variant] = sum(mine) / len(mine)
        est, var = e.get("estimate"), e.get("variance")
        arms.append(AuditArm(
            variant, int(n), int(e.get("m") or 0),
            e.get("label_mean") if e.get("label_mean") is not None else (float(total) / n if n else None),
            est, (est - 1.96 * math.sqrt(var), est + 1.96 * math.sqrt(var)) if est is not None and var is not None and var >= 0 else None,
            truth.get(variant), len(mine)))
    truth_diff = truth["treatment"] - truth["control"] if {"treatment", "control"} <= truth.keys() else None
    finite = lambda x: x if x is not None and math.isfinite(x) else None  # noqa: E731
    corrected_ci = ci(c_lo, c_hi)
    return AuditFigures(
        experiment_id=experiment_id, audit_rate=cfg.audit_rate, review_error=cfg.review_error,
        reviews_posted=reviewers.posted, reviews_wrong=reviewers.wrong, audit_units=int(audit_units or 0),
        estimator=str(estimator or ""), arms=arms,
        labelled_diff=finite(first(l_est)), labelled_ci=ci(l_lo, l_hi), labelled_p=finite(first(l_p)),
        corrected_diff=finite(first(c_est)),
        corrected_ci=corrected_ci if corrected_ci and all(math.isfinite(x) for x in corrected_ci) else None,
        corrected_p=finite(first(c_p)), truth_diff=truth_diff)


_TOOLS = [tool for tool, _ in ALL_INTENTS.values()]
_ROTATED = {tool: _TOOLS[(i + 1) % len(_TOOLS)] for i, tool in enumerate(_TOOLS)}


def broken_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """SFT rows with every tool name in the completions rotated to the next tool (phase 3's broken dataset).

    ``track_order(48213)`` becomes ``create_refund(48213)``: well-formed calls, so nothing
    but the live outcome can tell that the lesson is wrong.
    """
    out = []
    for row in rows:
        completion = []
        for msg in row.get("completion") or []:
            text = str(msg.get("content") or "")
            name, sep, rest = text.partition("(")
            completion.append({**msg, "content": _ROTATED[name.strip()] + sep + rest if sep and name.strip() in _ROTATED else text})
        out.append({**row, "completion": completion})
    return out


def _paired(control: list[bool], candidate: list[bool]) -> tuple[float, tuple[float, float]]:
    """Mean of candidate minus control over the same requests, with its normal 95% interval."""
    diffs = [int(b) - int(a) for a, b in zip(control, candidate)]
    if not diffs:
        return 0.0, (0.0, 0.0)
    mean = sum(diffs) / len(diffs)
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / max(1, len(diffs) - 1))
    half = 1.96 * sd / math.sqrt(len(diffs))
    return mean, (mean - half, mean + half)


def _at_least(n: int, target: int) -> int:
    return int(n) if int(n) >= target else 0


def _write_result(path: Path, result: DemoResult) -> None:
    """The run's result as JSON (what the end-to-end test and scripts read)."""
    doc = {k: (str(v) if isinstance(v, Path) else v) for k, v in result.__dict__.items()}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2))
    tmp.replace(path)


def _safe(fn: Callable[[], Any], default: Any = None) -> Any:
    try:
        return fn()
    except Exception:
        return default


def _status(stack: DemoStack, say: Callable[..., None], cfg: DemoConfig, phase: str, history: list[RunResult],
            experiment_id: str, job_seen: str, extra: str = "") -> str:
    """One line of running account; milestones (dataset, training, gate) as they happen. Returns the job state seen."""
    recent = history[-300:]
    by_version: dict[str, list[bool]] = {}
    for r in recent:
        by_version.setdefault(r.model_version, []).append(r.correct)
    rates = ", ".join(f"{_short(v)} {100 * sum(x) / len(x):.0f}%" for v, x in by_version.items())
    labelled = _safe(lambda: stack.query("SELECT count() FROM v_outcomes_latest WHERE tenant_id = {t:String} "
                                         "AND label IN ('success', 'failure') AND confidence >= 0.7", t=TENANT)[0][0], 0)
    line = f"runs {len(history):5d} | confidently labelled {labelled:5d} | true success (last 300): {rates}"
    job = _latest_job(stack)
    state = job_seen
    if phase == "collect" and job is None:
        line += f" | dataset {_bar(labelled, cfg.dataset_min_new, 12)} {labelled}/{cfg.dataset_min_new}"
    if job is not None:
        key = f"{job.job_id}:{job.status}:{job.reason[:20]}"
        if key != job_seen:
            state = key
            if job.status == "running" and job.reason.startswith("training"):
                say(f"      dataset {job.dataset_id} ({job.num_examples} examples) -> training job {job.job_id} on Ray",
                    mark="training starts")
            elif job.status == "running":
                say(f"      training done; validation gate: candidate against the champion on held-out examples",
                    mark="gate")
            elif job.status == "succeeded":
                say(f"      gate: {job.verdict} {job.model_version}: {job.reason}")
            elif job.status in ("failed", "skipped"):
                say(f"      training job {job.job_id} {job.status}: {job.reason}")
        if job.status == "running" and job.reason.startswith("training"):
            prog = _progress(stack, job)
            if prog:
                m = prog.get("metrics", {})
                line += f" | training step {m.get('step', 0):.0f} loss {m.get('loss', float('nan')):.3f}"
    if experiment_id:
        rows = _safe(lambda: stack.query(
            "SELECT arms.n, comparisons.estimate, comparisons.ci_low, comparisons.ci_high, comparisons.p_value "
            "FROM v_stats_snapshots WHERE experiment_id = {e:String} AND metric = 'success_rate' ORDER BY ts DESC LIMIT 1",
            e=experiment_id))
        if rows:
            n, est, lo, hi, p = rows[0]
            if est:
                line += (f" | A/B units {'/'.join(str(x) for x in n)} {_bar(min(n), cfg.min_samples_per_arm, 10)} "
                         f"diff {est[0]:+.2f} [{max(lo[0], -1):+.2f}, {min(hi[0], 1):+.2f}] p {p[0]:.3f}")
    say(line + extra)
    return state


def _latest_job(stack: DemoStack, model_version: str | None = None) -> Any:
    """The job that trained ``model_version``, else the newest job that started (a rejected
    candidate's retry is newer than the first attempt); None before any started."""
    started = [j for j in JobStore(str(stack.root / "trainer" / "jobs")).list() if j.started_ms]  # newest first
    return next((j for j in started if model_version and j.model_version == model_version), started[0] if started else None)


def _progress(stack: DemoStack, job: Any) -> dict[str, Any] | None:
    """The job's latest training progress (step, loss, the loss curve so far), if written yet."""
    return _safe(lambda: JobStore(str(stack.root / "trainer" / "jobs")).progress(job, str(stack.root / "ray-runs")))


def _short(version: str) -> str:
    return version if len(version) <= 28 else version[:12] + "…" + version[-12:]


def _collect(stack: DemoStack, registry: Any, history: list[RunResult], users: SimulatedUsers,
             rounds: list[Round], events: list[tuple[float, str]], elapsed: Callable[[], float]) -> dict[str, Any]:
    """What the report shows, from ClickHouse, the registry, the job records and the runs; fills each round's ``cs``."""
    t0_wall = time.time() - elapsed()
    out: dict[str, Any] = {"feedback_counts": dict(users.counts)}
    labels: dict[str, dict[str, int]] = {}
    for by, label, n in _safe(lambda: stack.query(
            "SELECT splitByChar(':', labeller)[1], label, count() FROM v_outcomes_latest WHERE tenant_id = {t:String} "
            "GROUP BY 1, 2 ORDER BY 1, 2", t=TENANT), []):
        labels.setdefault(by, {})[label] = int(n)
    out["label_counts"] = labels
    for rnd in rounds:
        rows = _safe(lambda: stack.query(
            "SELECT toUnixTimestamp64Milli(ts), arms.variant, arms.n, comparisons.estimate, comparisons.ci_low, comparisons.ci_high "
            "FROM v_stats_snapshots WHERE experiment_id = {e:String} AND metric = 'success_rate' ORDER BY ts",
            e=rnd.experiment_id), []) or []
        rnd.cs = []
        for ts, variants, ns, est, lo, hi in rows:
            if not est:
                continue
            n = dict(zip(variants, ns))
            rnd.cs.append(CsPoint(ts / 1000 - t0_wall, est[0], max(lo[0], -1.0), min(hi[0], 1.0), int(n.get("control", 0)),
                                  int(n.get("treatment", 0))))
    out["cs"] = rounds[0].cs if rounds else []
    winner = registry.champion()
    job = _latest_job(stack, winner)
    out["job"] = job
    out["loss"] = []
    if job is not None:
        prog = _progress(stack, job)
        out["loss"] = [(float(s), float(v)) for s, v in (prog or {}).get("history", [])]
    out["models"] = dict(registry.versions)
    # true success over time per model version, in windows of 10 s
    series: dict[str, list[RatePoint]] = {}
    window = 10.0
    buckets: dict[tuple[str, int], list[bool]] = {}
    for r in history:
        buckets.setdefault((r.model_version, int(r.t_s // window)), []).append(r.correct)
    for (version, b), xs in sorted(buckets.items()):
        if len(xs) < 5:
            continue
        lo, hi = wilson(sum(xs), len(xs))
        series.setdefault(version, []).append(RatePoint((b + 0.5) * window + _offset(events), sum(xs) / len(xs), lo, hi, len(xs)))
    out["series"] = series
    labelled = _safe(lambda: stack.query(
        "SELECT o.model_version, countIf(o.label = 'success'), countIf(o.label IN ('success', 'failure')) "
        "FROM v_outcomes_latest AS o WHERE o.tenant_id = {t:String} GROUP BY 1", t=TENANT), [])
    out["labelled_rates"] = {v: (s, n) for v, s, n in labelled}
    return out


def _offset(events: list[tuple[float, str]]) -> float:
    """Run times count from the first request; report times from the demo's start."""
    return next((t for t, e in events if e == "traffic starts"), 0.0)


def _pp_ci(diff: float, ci: tuple[float, float] | list[float]) -> str:
    return f"{100 * diff:+.1f} pp [{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]"


def _report(cfg: DemoConfig, started_at: str, duration_s: float, result: DemoResult, held: list[HeldOut],
            data: dict[str, Any], events: list[tuple[float, str]], rounds: list[Round]) -> DemoReport:
    job = data.get("job")
    models = data.get("models", {})
    cand = models.get(job.model_version) if job is not None and job.model_version else None
    metrics = dict(cand.metrics) if cand is not None else {}
    eval_losses = {k: v for k, v in (("champion held-out loss (gate)", metrics.get("gate_champion_eval_loss")),
                                     ("candidate held-out loss (gate)", metrics.get("gate_eval_loss")),
                                     ("held-out loss before training", metrics.get("eval_before_loss")),
                                     ("held-out loss after training", metrics.get("eval_loss"))) if v is not None}
    summary = [("runs served", f"{result.runs:,}"), ("base model", result.base_version)]
    for rnd in rounds:
        h = rnd.heldout
        outcome = ("promoted" if rnd.promoted else "rolled back" if rnd.status == "rolled_back" else rnd.status or "running")
        summary.append((rnd.title, f"{rnd.candidate_version} {outcome} (against {rnd.control_version})"))
        if h:
            summary.append((f"  held-out ({h['set']})", f"{h['control']['rate']:.1%} -> {h['candidate']['rate']:.1%}, "
                                                        f"paired {_pp_ci(h['diff'], h['ci'])} (n={h['control']['n']})"))
            if "new_kind" in h and rnd.phase == 2:
                nk = h["new_kind"]
                summary.append(("  held-out, new kind only", f"{nk['control']['rate']:.1%} -> {nk['candidate']['rate']:.1%} "
                                                             f"(n={nk['control']['n']})"))
        summary.append(("  decision", rnd.decision or "none"))
    alert = result.drift.get("alert") if result.drift else None
    if result.drift.get("started_s") is not None:
        summary.append(("drift", f"traffic changed at {result.drift['started_s']:.0f} s; " + (
            f"alert at {alert['t_s']:.0f} s: {alert['model_version']} {alert['estimate_before']:.0%} -> "
            f"{alert['estimate_after']:.0%} ({alert['detector']})" if alert else "no drift alert")))
    summary.append(("champion at the end", result.final_champion or "none"))
    for version, (s, n) in sorted(data.get("labelled_rates", {}).items()):
        if n:
            summary.append((f"labelled success, {version}", f"{s / n:.1%} of {n} labelled runs"))
    summary.append(("wall time", f"{duration_s:.0f} s"))
    experiments = [ExperimentView(f"{r.title} — {r.experiment_id}", r.cs, r.decision,
                                  next((t for t, e in events if e == f"decision {r.phase}"), None)) for r in rounds]
    lineage = [(r.title, r.dataset_id or "?", f"{r.num_examples}", r.job_id or "?",
                f"{r.candidate_version} (from {r.parent_version or 'the base'}, init {r.init_from or '?'})",
                r.experiment_id, r.decision.split(":")[0] if r.decision else r.status,
                f"{r.registry_status}" + (f": {r.registry_reason}" if r.registry_reason else "")) for r in rounds]
    injected = [f"phase 3 was injected by the demo: {r.injected}" for r in rounds if r.injected]
    return DemoReport(
        title="Agent Gym: the closed loop, in three phases", started_at=started_at, duration_s=duration_s, summary=summary,
        success_over_time=data.get("series", {}), confidence_sequence=data.get("cs", []),
        decision=rounds[0].decision if rounds else result.decision,
        decision_t_s=next((t for t, e in events if e == "decision 1"), None), events=events,
        feedback_counts=data.get("feedback_counts", {}), label_counts=data.get("label_counts", {}),
        training_loss=data.get("loss", []), eval_losses=eval_losses, held_out=held, audit=data.get("audit"),
        experiments=experiments, lineage=lineage, drift_alerts=list(result.drift.get("alerts") or []),
        notes=[*injected, f"settings: {json.dumps(cfg.__dict__)}",
               "success over time is the simulator's ground truth per run; labels and decisions never saw it"],
    )


def _summary(echo: Callable[[str], None], result: DemoResult, held: list[HeldOut], data: dict[str, Any],
             rounds: list[Round] | None = None) -> None:
    echo("")
    echo(f"  {'model version':42} {'role':34} {'held-out success':>17} {'95% interval':>16}")
    for h in held:
        echo(f"  {h.model_version:42} {h.role:34} {h.successes:>7}/{h.n:<4} {h.rate:>5.1%} "
             f"  [{h.low:5.1%}, {h.high:5.1%}]")
    for rnd in rounds or []:
        h = rnd.heldout
        if not h:
            continue
        outcome = ("promoted" if rnd.promoted else "rolled back" if rnd.status == "rolled_back" else rnd.status or "undecided")
        line = f"  {rnd.title}: {outcome}; held-out ({h['set']}) {_pp_ci(h['diff'], h['ci'])}"
        if rnd.phase == 2 and "new_kind" in h:
            nk = h["new_kind"]
            line += f"; new kind only {nk['control']['rate']:.0%} -> {nk['candidate']['rate']:.0%}"
        echo(line)
    lo, hi = result.improvement_ci
    echo(f"\n  improvement (phase 1): {100 * result.improvement:+.1f} percentage points (paired 95% interval "
         f"[{100 * lo:+.1f}, {100 * hi:+.1f}]) on {result.heldout_n} held-out requests no agent saw")
    alert = (result.drift or {}).get("alert")
    if alert:
        echo(f"  drift alert: {alert['model_version']} {alert['estimate_before']:.0%} -> {alert['estimate_after']:.0%} "
             f"({alert['detector']}, {alert['n']} labelled runs), {alert['t_s']:.0f} s into the run")
    audit = data.get("audit")
    if audit is not None:
        def ci(c: tuple[float, float] | None) -> str:
            return "" if c is None else f" [{100 * max(c[0], -1):+.1f}, {100 * min(c[1], 1):+.1f}]"

        def pp(v: float | None) -> str:
            return "n/a" if v is None else f"{100 * v:+.1f} pp"

        echo(f"\n  audit sample: {audit.audit_rate:.0%} of units; reviewers posted {audit.reviews_posted} gold labels "
             f"({audit.reviews_wrong} wrong), the experiment counted {audit.audit_units} audited units")
        echo(f"  treatment - control, success:  labelled {pp(audit.labelled_diff)}{ci(audit.labelled_ci)}"
             f" | corrected (PPI) {pp(audit.corrected_diff)}{ci(audit.corrected_ci)}")
        echo(f"                        truth:  over the experiment's units {pp(audit.truth_diff)}"
             f" | held-out (paired) {pp(audit.heldout_diff)}{ci(audit.heldout_ci)}")
    fb = data.get("feedback_counts", {})
    echo("  feedback: " + ", ".join(f"{k} {v}" for k, v in sorted(fb.items())))
    lc = data.get("label_counts", {})
    echo("  labels:   " + "; ".join(f"{by}: " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())) for by, c in sorted(lc.items())))
    if result.report_path:
        echo(f"  report:   {result.report_path}")

