"""A simulated stream of agent runs and feedback, with the ground truth of every run.

Used to measure the labeller (``python -m agentgym.processors.labelling.evaluate``). The noise
is the kind production has:

* most runs get no explicit feedback, and failures get it more often than successes
  (unhappy users speak up: selection bias in the training labels);
* human ratings are noisy (a satisfied user gives 3/5, a failed run gets 4/5);
  thumbs are sometimes clicked the wrong way;
* AI judges are right only ``ai_judge_accuracy`` of the time;
* system signals contradict the truth now and then (``task_completed`` on a failed
  run, a run that errored after producing a good answer, a retry after a success);
* comments are sarcastic or off-topic some of the time;
* feedback arrives late, some corrections hours later (revisions);
* optionally, one model version degrades part-way through (drift).

Every record fits the Avro schemas (``schemas/avro``), so the stream can also be
produced to Kafka as it is.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["SimConfig", "SimEvent", "SimStream", "simulate"]


@dataclass(frozen=True)
class SimConfig:
    """Parameters of the simulated stream (defaults: a plausible production mix).

    Attributes:
        n_traces: runs to simulate.
        interarrival_ms: mean time between runs.
        p_explicit: chance of explicit human feedback, for a success and a failure.
        p_ai_judge: chance an AI judge rates a run; right with ``ai_judge_accuracy``.
        p_comment: chance of a free-text comment; ``comment_truthful`` of them match the truth.
        drift_at: fraction of the stream after which ``drift_version`` gets worse by
            ``drift_drop`` (in units of the latent quality's noise); None: no drift.
        late_correction_rate: share of failed runs that get a correction hours later.
    """

    n_traces: int = 4000
    seed: int = 0
    tenant_id: str = "sim"
    agents: tuple[str, ...] = ("support-bot", "coder")
    model_versions: tuple[str, ...] = ("v1", "v2")
    interarrival_ms: int = 2000
    p_explicit: tuple[float, float] = (0.10, 0.20)  # (success, failure)
    p_ai_judge: float = 0.2
    ai_judge_accuracy: float = 0.8
    p_comment: float = 0.08
    comment_truthful: float = 0.8
    drift_at: float | None = 0.6
    drift_version: str = "v2"
    drift_drop: float = 1.2
    late_correction_rate: float = 0.03


@dataclass(frozen=True)
class SimEvent:
    """One event of the stream: when it happens, what it is, the record."""

    time_ms: int
    kind: Literal["experience", "feedback"]
    record: dict[str, Any]


@dataclass
class SimStream:
    """The events in time order, and the truth.

    Attributes:
        truth: trace id -> the run really succeeded.
        explicit: trace ids that got explicit human feedback (a rating, thumbs or correction).
        drift_start_ms: when the drift began (None: no drift).
    """

    events: list[SimEvent]
    truth: dict[str, bool]
    explicit: set[str] = field(default_factory=set)
    model_version: dict[str, str] = field(default_factory=dict)
    drift_start_ms: int | None = None


# Implicit signals: P(signal | success), P(signal | failure), source.
_SIGNALS: tuple[tuple[str, float, float, str], ...] = (
    ("task_completed", 0.30, 0.04, "system"),
    ("copy", 0.18, 0.05, "human"),
    ("retry", 0.07, 0.28, "human"),
    ("abandon", 0.03, 0.18, "human"),
    ("escalate", 0.01, 0.12, "human"),
)
_POSITIVE = ("thanks, that worked perfectly", "great answer, very helpful", "exactly what I needed", "solved it, thank you")
_NEGATIVE = ("this is wrong", "not helpful at all", "the lookup failed again, useless", "incorrect, it hallucinated the order")
_SARCASTIC = ("great, another wrong answer", "thanks for nothing", "perfect, now it is broken")
_NEUTRAL = ("ok", "hmm", "see ticket 4412", "why?")
_SKILL = {0: 0.9, 1: 0.5}  # by agent index: the first agent is better
_VERSION_OFFSET = {0: 0.0, 1: 0.25}


def _feedback(cfg: SimConfig, agent: str, trace_id: str, t: int, n: int, kind: str, source: str, **fields: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "event_id": f"{trace_id}-fb{n}", "tenant_id": cfg.tenant_id, "agent_id": agent, "trace_id": trace_id,
        "timestamp_ms": t, "kind": kind, "source": source, "rating": None, "rating_scale": 5.0, "thumbs_up": None,
        "comment": None, "correction": None, "signal": None, "value": None, "user_id": None, "metadata": {},
    }
    rec.update(fields)
    return rec


def simulate(cfg: SimConfig | None = None) -> SimStream:
    """Generates the stream (deterministic for a given ``cfg.seed``)."""
    cfg = cfg or SimConfig()
    rng = random.Random(cfg.seed)
    events: list[SimEvent] = []
    truth: dict[str, bool] = {}
    explicit: set[str] = set()
    versions: dict[str, str] = {}
    t0 = 1_700_000_000_000
    drift_start = None if cfg.drift_at is None else t0 + int(cfg.drift_at * cfg.n_traces * cfg.interarrival_ms)
    for i in range(cfg.n_traces):
        t = t0 + i * cfg.interarrival_ms + rng.randrange(cfg.interarrival_ms)
        a = rng.randrange(len(cfg.agents))
        v = rng.randrange(len(cfg.model_versions))
        agent, version = cfg.agents[a], cfg.model_versions[v]
        trace_id = f"sim-{cfg.seed}-{i:06d}"
        # latent quality: agent skill + version - task difficulty + noise; success iff > 0
        difficulty = rng.gauss(0.0, 1.0)
        quality = _SKILL.get(a, 0.6) + _VERSION_OFFSET.get(v, 0.0) - difficulty + rng.gauss(0.0, 0.7)
        if drift_start is not None and t >= drift_start and version == cfg.drift_version:
            quality -= cfg.drift_drop
        ok = quality > 0
        truth[trace_id] = ok
        versions[trace_id] = version
        fail = 0.0 if ok else 1.0
        # -- the run -----------------------------------------------------------------
        steps: list[dict[str, Any]] = []
        n_steps = 1 + _poisson(rng, 1.2 + 0.8 * max(difficulty, 0.0) + 0.8 * fail)
        for k in range(n_steps):
            tool = rng.random() < 0.5
            p_err = (0.22 if tool else 0.06) if not ok else (0.04 if tool else 0.01)
            name = rng.choice(("lookup_order", "search_docs", "run_code")) if tool else "llm"
            err = rng.random() < p_err
            steps.append(_step(rng, k, name, tool, err))
            if err and rng.random() < 0.5:  # retried
                steps.append(_step(rng, k, name, tool, rng.random() < p_err / 2, retry=True))
        r = rng.random()
        if ok:
            status = "error" if r < 0.02 else "ok"  # crashed after answering: contradicts the truth
        else:
            status = "error" if r < 0.18 else "timeout" if r < 0.25 else "cancelled" if r < 0.28 else "ok"
        empty = rng.random() < (0.01 if ok else 0.12)
        output = None if status != "ok" or empty else "x" * int(rng.lognormvariate(math.log(400 if ok else 250), 0.6))
        latency = rng.lognormvariate(math.log(1500) + 0.35 * difficulty + 0.35 * fail + 0.1 * len(steps), 0.45)
        tokens = int(400 * math.exp(0.25 * difficulty + 0.3 * fail + rng.gauss(0, 0.4))) + 150 * len(steps)
        events.append(SimEvent(t, "experience", {
            "event_id": f"{trace_id}-exp", "tenant_id": cfg.tenant_id, "agent_id": agent, "trace_id": trace_id,
            "timestamp_ms": t, "session_id": None, "user_id": f"u{rng.randrange(500)}",
            "input": [{"role": "user", "content": "help", "name": None, "tool_call_id": None}],
            "steps": steps, "output": output, "model_name": "sim-llm", "model_version": version,
            "assignment": None, "latency_ms": latency, "prompt_tokens": int(tokens * 0.7),
            "completion_tokens": tokens - int(tokens * 0.7), "cost_usd": tokens * 2e-6, "status": status,
            "error": "boom" if status == "error" else None, "metadata": {}, "sdk_version": "sim",
        }))
        end = t + int(latency)
        n_fb = 0

        def emit(delay_ms: float, kind: str, source: str, **fields: Any) -> None:
            nonlocal n_fb
            at = end + int(delay_ms)
            events.append(SimEvent(at, "feedback", _feedback(cfg, agent, trace_id, at, n_fb, kind, source, **fields)))
            n_fb += 1

        # -- implicit signals --------------------------------------------------------
        for signal, p_ok, p_fail, source in _SIGNALS:
            if rng.random() < (p_ok if ok else p_fail):
                emit(rng.uniform(2_000, 90_000), "implicit", source, signal=signal)
        # -- an AI judge ---------------------------------------------------------------
        if rng.random() < cfg.p_ai_judge:
            says_ok = ok if rng.random() < cfg.ai_judge_accuracy else not ok
            score = min(10.0, max(0.0, rng.gauss(8.2, 1.2) if says_ok else rng.gauss(2.5, 1.5)))
            emit(rng.uniform(5_000, 40_000), "rating", "ai", rating=round(score, 1), rating_scale=10.0)
        # -- explicit human feedback -----------------------------------------------------
        if rng.random() < cfg.p_explicit[0 if ok else 1]:
            explicit.add(trace_id)
            delay = rng.uniform(10_000, 600_000)
            kind = rng.random()
            if not ok and kind < 0.15:
                emit(delay, "correction", "human", correction="the right answer")
            elif kind < 0.6:
                stars = rng.choices((5, 4, 3, 2), (0.55, 0.3, 0.1, 0.05))[0] if ok else rng.choices((0, 1, 2, 3, 4), (0.1, 0.35, 0.3, 0.15, 0.1))[0]
                emit(delay, "rating", "human", rating=float(stars))
            else:
                emit(delay, "thumbs", "human", thumbs_up=ok if rng.random() > 0.07 else not ok)
        # -- comments ------------------------------------------------------------------
        if rng.random() < cfg.p_comment:
            u = rng.random()
            if u < cfg.comment_truthful:
                text = rng.choice(_POSITIVE if ok else _NEGATIVE)
            elif u < cfg.comment_truthful + (1 - cfg.comment_truthful) / 2:
                text = rng.choice(_SARCASTIC if ok else _POSITIVE)  # misleading
            else:
                text = rng.choice(_NEUTRAL)
            emit(rng.uniform(10_000, 300_000), "comment", "human", comment=text)
        # -- a correction hours later ---------------------------------------------------
        if not ok and rng.random() < cfg.late_correction_rate:
            explicit.add(trace_id)
            emit(rng.uniform(2 * 3600_000, 6 * 3600_000), "correction", "human", correction="what it should have said")
    events.sort(key=lambda e: e.time_ms)
    return SimStream(events, truth, explicit, versions, drift_start)


def _step(rng: random.Random, k: int, name: str, tool: bool, err: bool, retry: bool = False) -> dict[str, Any]:
    return {
        "step_id": f"s{k}{'r' if retry else ''}", "kind": "tool" if tool else "llm", "name": name,
        "input": None, "output": None if err else "{}", "error": "failed" if err else None,
        "latency_ms": rng.uniform(50, 800), "prompt_tokens": 0, "completion_tokens": 0,
    }


def _poisson(rng: random.Random, lam: float) -> int:
    # Knuth's multiplication method; fine for the small rates used here
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1
