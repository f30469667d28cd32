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

The loop only watches (registry, experiment configuration, ClickHouse, job records)
and prints what happens; it decides nothing.
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
from agentgym.ops.demo.report import AuditArm, AuditFigures, CsPoint, DemoReport, HeldOut, RatePoint, wilson, write
from agentgym.ops.demo.reviewers import SimulatedReviewers
from agentgym.ops.demo.stack import DemoStack
from agentgym.ops.demo.task import is_correct, sample_task, sample_tasks
from agentgym.ops.exceptions import StackError
from agentgym.processors.experiments.config import ExperimentConfig
from agentgym.producers import AgentGym
from agentgym.trainers.jobs import JobStore
from agentgym.trainers.registry import ModelRegistry, base_version_for

__all__ = ["DemoConfig", "DemoResult", "run_demo", "audit_shortfall"]

TENANT, AGENT = "demo", "router"
TREATMENT_WEIGHT = 0.5  # the candidate's share of the experiment's traffic
# the experiments engine makes no corrected inference below min(30, min_samples_per_arm)
# audited units per arm (processors/experiments/engine.py, _MIN_AUDIT)
_ENGINE_MIN_AUDIT = 30
_AUDIT_HEADROOM = 1.6  # users enough for this many times the minimum audited units per arm


@dataclass(frozen=True)
class DemoConfig:
    """Sizes and pace of one demo run (``--fast`` and ``--scale`` pick them)."""

    users: int = 240
    batch: int = 16
    rate: float = 25.0  # runs per second the agents aim at
    dataset_min_new: int = 1000  # labelled runs that finish the first dataset
    min_samples_per_arm: int = 40
    heldout: int = 300
    settle_s: float = 20.0  # traffic after the switch, so the plots show it
    base_steps: int = DEFAULT_STEPS
    train_epochs: float = 4.0
    timeout_s: float = 540.0  # the loop (after start-up) gives up after this long
    seed: int = 7
    audit_rate: float = 0.2  # the experiment's audit sample (0: none)
    review_error: float = 0.03  # the simulated reviewers' error rate

    @classmethod
    def preset(cls, fast: bool = False, scale: float = 1.0, **overrides: Any) -> "DemoConfig":
        """The sizes of ``--fast`` / ``--scale``, then ``overrides`` (None: keep).

        With an audit sample and no ``users`` override, the users (the experiment's units)
        are raised to what the audit sample needs, before and after scaling: about 1.6
        times the engine's minimum of audited units per arm (:func:`audit_users`).
        """
        base = cls(users=160, dataset_min_new=700, min_samples_per_arm=30, heldout=200, settle_s=8.0) if fast else cls()
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
        # what the traffic loop has seen of the experiment
        self.phase = "collect"
        self.experiment_id = ""
        self.decided_at: float | None = None
        self.reported: set[str] = set()
        self.job_seen = ""

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
            AGENTGYM_TRAIN_MAX_LENGTH="256", AGENTGYM_TRAIN_BATCH_SIZE="8", AGENTGYM_TRAIN_LOGGING_STEPS="5",
            AGENTGYM_TRAIN_SAVE_STEPS="50", AGENTGYM_TRAIN_RAY_NUM_CPUS="2",
            # the gate on held-out loss alone: exact match against the dataset's references would
            # reward imitating the label noise (a refund "successfully" sent to track_order); the
            # A/B test on live traffic is the judge of task success
            AGENTGYM_GATE_EVALUATOR="", AGENTGYM_GATE_MAX_EVAL_EXAMPLES="200",
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
        self.user_ids = [f"user-{i:04d}" for i in range(cfg.users)]
        if cfg.audit_rate > 0:
            self.reviewers = SimulatedReviewers(self.gym, self.stack.query, cfg.review_error, seed=cfg.seed + 2)

    def serve_until_settled(self) -> None:
        """Phases 3 and 4: traffic, while the pipeline labels, builds a dataset, trains, gates,
        runs the experiment and decides; returns once the decision has settled.

        Raises:
            StackError: a process died, or the loop did not close within ``cfg.timeout_s``.
        """
        cfg = self.cfg
        self.say(f"3/5 {cfg.users} users send requests; agents serve {self.base_version} (the base) ...",
                 mark="traffic starts")
        deadline = time.monotonic() + cfg.timeout_s
        last_status = 0.0
        while True:
            now = time.monotonic()
            if now > deadline:
                raise StackError(f"the loop did not close within {cfg.timeout_s:.0f}s (stuck in '{self.phase}'); "
                                 f"logs in {self.stack.root / 'logs'}")
            self.stack.check()
            self._serve_batch(now)
            self._follow_experiment()
            self._review()
            self._read_decision()
            if self._settled():
                break
            if time.monotonic() - last_status >= 3.0:
                last_status = time.monotonic()
                audit = f" | audit labels {self.reviewers.posted}" if self.reviewers is not None and self.experiment_id else ""
                self.job_seen = _status(self.stack, self.say, cfg, self.phase, self.history, self.experiment_id,
                                        self.job_seen, audit)
        self.result.runs = len(self.history)
        self.result.timings["loop_s"] = self.elapsed()

    def _serve_batch(self, started: float) -> None:
        """One batch of requests served and reacted to, paced to ``cfg.rate`` runs per second."""
        cfg = self.cfg
        batch = []
        for _ in range(cfg.batch):
            task = sample_task(self.rng)
            self.seen.add(task.request)
            batch.append((self.rng.choice(self.user_ids), task))
        for run in self.agent.serve(batch):
            self.users.react(run)
            self.history.append(run)
            self.truth[run.trace_id] = run.correct
        pause = cfg.batch / cfg.rate - (time.monotonic() - started)
        if pause > 0:
            time.sleep(pause)

    # -- 4/5 ---------------------------------------------------------------------------
    def _follow_experiment(self) -> None:
        """Reports the live experiment the agents follow: when it starts, and when its configuration says it ended."""
        exp = self.agent.experiment()
        if exp is not None and exp["experiment_id"] not in self.reported:
            self.reported.add(exp["experiment_id"])
            self.experiment_id = exp["experiment_id"]
            variants = ", ".join(f"{v['name']}={v['model_version']} ({v['weight']:.0%})" for v in exp["variants"])
            self.say(f"4/5 A/B experiment {self.experiment_id} running: {variants}", mark="experiment starts")
            self.phase = "experiment"
        if exp is not None and exp["status"] in ("concluded", "rolled_back") and self.decided_at is None:
            self.decided_at = time.monotonic()
            self.events.append((self.elapsed(), "decision"))
            winner = next((v for v in exp["variants"] if float(v["weight"]) > 0), None)
            if exp["status"] == "concluded" and winner is not None:
                self.result.winner_version = winner["model_version"]
                self.say(f"      experiment {exp['status']}: agents switched live, 100% of traffic on "
                         f"{self.result.winner_version}")
            else:
                self.say(f"      experiment {exp['status']}: agents back on the control")
            self.phase = "settle"

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
        """Once the experiment ended, reads its decision (action, winner, reason) from ClickHouse."""
        if self.decided_at is not None and not self.result.decision:
            rows = _safe(lambda: self.stack.query(
                "SELECT action, winner, reason FROM v_decisions WHERE experiment_id = {e:String} ORDER BY ts DESC LIMIT 1",
                e=self.experiment_id))
            if rows:
                self.result.decision = f"{rows[0][0]} {rows[0][1] or ''}: {rows[0][2]}"
                self.say(f"      decision (sequential test, from gym-decisions-v1): {self.result.decision}")

    def _settled(self) -> bool:
        """Whether the loop may stop: the winner is the registry's champion (or there is none), the
        decision was read (or a minute passed) and the traffic ran ``cfg.settle_s`` after the switch."""
        if self.phase != "settle" or self.decided_at is None or self.registry is None:
            return False
        champ = self.registry.champion()
        promoted = bool(self.result.winner_version) and champ == self.result.winner_version
        if promoted and "promoted" not in self.reported:
            self.reported.add("promoted")
            self.say(f"      registry: {champ} is the champion (promoted by the experiment's decision)", mark="promoted")
        since = time.monotonic() - self.decided_at
        if since >= self.cfg.settle_s and (promoted or not self.result.winner_version) \
                and (self.result.decision or since > 60):
            self.result.promoted = promoted
            return True
        return False

    # -- 5/5 ---------------------------------------------------------------------------
    def wait_until_stored(self) -> None:
        """Flushes the SDK and waits until ClickHouse holds every experience the agents sent."""
        self.say("5/5 measuring: held-out requests, base against the promoted model ...")
        self.gym.flush(30)
        sent = len(self.history)
        stack = self.stack
        self.result.stored_experiences = stack.wait(
            lambda: _at_least(stack.query("SELECT count() FROM v_experiences WHERE tenant_id = {t:String}", t=TENANT)[0][0], sent),
            120, "every experience in ClickHouse")
        if self.reviewers is not None and self.reviewers.posted:
            posted = self.reviewers.posted
            self.result.audit["reviews_stored"] = stack.wait(
                lambda: _at_least(stack.query(_AUDIT_LABELS_SQL, t=TENANT, e=self.experiment_id)[0][0], posted),
                60, "every audit label in ClickHouse")

    def collect(self) -> dict[str, Any]:
        """What the report shows besides the held-out measurement (see :func:`_collect`, :func:`_audit_figures`)."""
        data = _collect(self.stack, self.registry, self.history, self.users, self.experiment_id, self.events, self.elapsed)
        if self.reviewers is not None and self.experiment_id:
            data["audit"] = _audit_figures(self.stack, self.experiment_id, self.history, self.reviewers, self.cfg)
        return data

    def measure_held_out(self) -> list[HeldOut]:
        """The base and the final version (promoted, else the champion) answer the same held-out
        requests, none served during the run; sets the rates and the paired improvement with its
        normal 95% interval on ``result``."""
        cfg, result, registry = self.cfg, self.result, self.registry
        assert registry is not None
        heldout = sample_tasks(cfg.heldout, cfg.seed + 1000, exclude=self.seen)
        final = result.winner_version if result.promoted else (registry.champion() or self.base_version)
        held: list[HeldOut] = []
        outcomes: dict[str, list[bool]] = {}
        for role, version in (("base", self.base_version), ("promoted" if result.promoted else "champion", final)):
            if version in outcomes:
                continue
            answers = []
            for i in range(0, len(heldout), 64):
                answers += [a for a, _, _ in self.pool.generate(version, [t.request for t in heldout[i:i + 64]])]
            ok = [is_correct(t, a) for t, a in zip(heldout, answers)]
            outcomes[version] = ok
            lo, hi = wilson(sum(ok), len(ok))
            held.append(HeldOut(version, role, sum(ok), len(ok), sum(ok) / len(ok), lo, hi))
        result.heldout_n = len(heldout)
        result.base_rate = held[0].rate
        result.promoted_rate = held[-1].rate
        diffs = [int(b) - int(a) for a, b in zip(outcomes[self.base_version], outcomes[final])]
        mean = sum(diffs) / len(diffs)
        sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / max(1, len(diffs) - 1))
        half = 1.96 * sd / math.sqrt(len(diffs))
        result.improvement, result.improvement_ci = mean, (mean - half, mean + half)
        return held

    def write_report(self, data: dict[str, Any], held: list[HeldOut], report_path: Path | None) -> DemoResult:
        """Writes the HTML report and ``result.json``, prints the summary and returns the result."""
        result = self.result
        result.timings["total_s"] = self.elapsed()
        audit = data.get("audit")
        if audit is not None:
            audit.heldout_diff, audit.heldout_ci = result.improvement, result.improvement_ci
            result.audit = {**audit.to_dict(), **result.audit}
        report = _report(self.cfg, self.started_at, self.elapsed(), result, held, data, self.events)
        path = report_path or (self.stack.root / "report.html")
        result.report_path = write(report, path)
        _write_result(self.stack.root / "result.json", result)
        _summary(self.echo, result, held, data)
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
    "AND lower(metadata['audit']) = 'true' AND metadata['experiment_id'] = {e:String}")

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
             experiment_id: str, events: list[tuple[float, str]], elapsed: Callable[[], float]) -> dict[str, Any]:
    """What the report shows, from ClickHouse, the registry, the job record and the runs."""
    t0_wall = time.time() - elapsed()
    out: dict[str, Any] = {"feedback_counts": dict(users.counts)}
    labels: dict[str, dict[str, int]] = {}
    for by, label, n in _safe(lambda: stack.query(
            "SELECT splitByChar(':', labeller)[1], label, count() FROM v_outcomes_latest WHERE tenant_id = {t:String} "
            "GROUP BY 1, 2 ORDER BY 1, 2", t=TENANT), []):
        labels.setdefault(by, {})[label] = int(n)
    out["label_counts"] = labels
    cs: list[CsPoint] = []
    if experiment_id:
        rows = _safe(lambda: stack.query(
            "SELECT toUnixTimestamp64Milli(ts), arms.variant, arms.n, comparisons.estimate, comparisons.ci_low, comparisons.ci_high "
            "FROM v_stats_snapshots WHERE experiment_id = {e:String} AND metric = 'success_rate' ORDER BY ts",
            e=experiment_id), [])
        for ts, variants, ns, est, lo, hi in rows:
            if not est:
                continue
            n = dict(zip(variants, ns))
            cs.append(CsPoint(ts / 1000 - t0_wall, est[0], max(lo[0], -1.0), min(hi[0], 1.0), int(n.get("control", 0)),
                              int(n.get("treatment", 0))))
    out["cs"] = cs
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


def _report(cfg: DemoConfig, started_at: str, duration_s: float, result: DemoResult, held: list[HeldOut],
            data: dict[str, Any], events: list[tuple[float, str]]) -> DemoReport:
    job = data.get("job")
    models = data.get("models", {})
    cand = models.get(job.model_version) if job is not None and job.model_version else None
    metrics = dict(cand.metrics) if cand is not None else {}
    eval_losses = {k: v for k, v in (("champion held-out loss (gate)", metrics.get("gate_champion_eval_loss")),
                                     ("candidate held-out loss (gate)", metrics.get("gate_eval_loss")),
                                     ("held-out loss before training", metrics.get("eval_before_loss")),
                                     ("held-out loss after training", metrics.get("eval_loss"))) if v is not None}
    summary = [
        ("runs served", f"{result.runs:,}"),
        ("base model", result.base_version),
        ("promoted model", result.winner_version or "none"),
        ("decision", result.decision or "none"),
        ("held-out success, base", f"{held[0].rate:.1%} [{held[0].low:.1%}, {held[0].high:.1%}] (n={held[0].n})"),
        ("held-out success, " + held[-1].role, f"{held[-1].rate:.1%} [{held[-1].low:.1%}, {held[-1].high:.1%}] (n={held[-1].n})"),
        ("improvement (paired)", f"{100 * result.improvement:+.1f} pp [{100 * result.improvement_ci[0]:+.1f}, "
                                 f"{100 * result.improvement_ci[1]:+.1f}]"),
    ]
    if job is not None:
        summary.append(("training", f"{job.dataset_id}: {job.num_examples} examples, job {job.job_id} {job.status}"))
    for version, (s, n) in sorted(data.get("labelled_rates", {}).items()):
        if n:
            summary.append((f"labelled success, {version}", f"{s / n:.1%} of {n} labelled runs"))
    summary.append(("wall time", f"{duration_s:.0f} s"))
    decision_t = next((t for t, e in events if e == "decision"), None)
    return DemoReport(
        title="Agent Gym: the closed loop", started_at=started_at, duration_s=duration_s, summary=summary,
        success_over_time=data.get("series", {}), confidence_sequence=data.get("cs", []), decision=result.decision,
        decision_t_s=decision_t, events=events, feedback_counts=data.get("feedback_counts", {}),
        label_counts=data.get("label_counts", {}), training_loss=data.get("loss", []), eval_losses=eval_losses,
        held_out=held, audit=data.get("audit"),
        notes=[f"settings: {json.dumps(cfg.__dict__)}",
               "success over time is the simulator's ground truth per run; labels and decisions never saw it"],
    )


def _summary(echo: Callable[[str], None], result: DemoResult, held: list[HeldOut], data: dict[str, Any]) -> None:
    echo("")
    echo(f"  {'model version':42} {'role':9} {'held-out success':>17} {'95% interval':>16}")
    for h in held:
        echo(f"  {h.model_version:42} {h.role:9} {h.successes:>7}/{h.n:<4} {h.rate:>5.1%} "
             f"  [{h.low:5.1%}, {h.high:5.1%}]")
    lo, hi = result.improvement_ci
    echo(f"\n  improvement: {100 * result.improvement:+.1f} percentage points (paired 95% interval "
         f"[{100 * lo:+.1f}, {100 * hi:+.1f}]) on {result.heldout_n} held-out requests no agent saw")
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

