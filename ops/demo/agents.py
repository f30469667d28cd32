"""Simulated agents driven by the language model, and the users who give them feedback.

:class:`ModelPool` serves model versions as the registry describes them (base model
plus LoRA adapter, merged for serving so every version costs the same per token) and
answers a batch of requests with one greedy ``generate`` call per version.

:class:`RouterAgent` decides which version serves each request -- the live experiment's
assignment when the agent has one, else the registry's champion -- runs the model,
calls the (simulated) tool and records the run through the SDK. It never sees the
ground truth.

:class:`SimulatedUsers` react to each run the way users do: mostly silence, some
thumbs and ratings, a correction now and then, a retry after a wrong answer, and a
little noise (a thumbs-down on a right answer). Their reaction depends on whether the
answer was right (the simulator's ground truth); the pipeline only sees the feedback.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from agentgym.ops.demo.task import Task, execute, is_correct, messages_for, parse_call
from agentgym.trainers.modeling import load_for_inference

__all__ = ["ModelPool", "RouterAgent", "RunResult", "SimulatedUsers", "FeedbackMix"]

MODEL_NAME = "router-lm"
MAX_NEW_TOKENS = 24
# simulated prices (USD per token) and tool latency: the run's cost and latency guardrails see these
_PRICE_PROMPT, _PRICE_COMPLETION = 2e-7, 6e-7


class ModelPool:
    """Loaded model versions: ``version -> (model, tokenizer)``, loaded on first use.

    Args:
        describe: ``version -> (base model path, adapter URI or None)`` (the registry's record).
    """

    def __init__(self, describe: Any) -> None:
        self._describe = describe
        self._models: dict[str, tuple[Any, Any]] = {}
        self._lock = threading.Lock()

    def get(self, version: str) -> tuple[Any, Any]:
        with self._lock:
            if version not in self._models:
                self._models[version] = self._load(*self._describe(version))
            return self._models[version]

    @staticmethod
    def _load(base: str, adapter_uri: str | None) -> tuple[Any, Any]:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # no "Loading weights" bar in the demo's account
        model, tokenizer = load_for_inference(base, adapter_uri, device="cpu")
        if adapter_uri:
            model = model.merge_and_unload()  # serve merged: the adapter costs nothing per token
            model.eval()
        tokenizer.padding_side = "left"
        return model, tokenizer

    def generate(self, version: str, requests: Sequence[str]) -> list[tuple[str, int, int]]:
        """``(answer, prompt tokens, completion tokens)`` for each request, greedy."""
        import torch

        model, tok = self.get(version)
        enc = tok.apply_chat_template([messages_for(r) for r in requests], add_generation_prompt=True,
                                      return_tensors="pt", return_dict=True, padding=True)
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=MAX_NEW_TOKENS, do_sample=False,
                                 pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        width = enc["input_ids"].shape[1]
        answers = tok.batch_decode(out[:, width:], skip_special_tokens=True)
        prompt_lens = enc["attention_mask"].sum(dim=1).tolist()
        completion_lens = (out[:, width:] != tok.pad_token_id).sum(dim=1).tolist()
        return [(a.strip(), int(p), int(c)) for a, p, c in zip(answers, prompt_lens, completion_lens)]


@dataclass(frozen=True)
class RunResult:
    """One served request (the ground truth travels along for the simulator's users and the report)."""

    trace_id: str
    user_id: str
    task: Task
    model_version: str
    variant: str | None
    output: str
    correct: bool
    tool_error: str | None
    t_s: float


class RouterAgent:
    """The agent: picks the serving version, runs the model and the tool, records the run.

    Args:
        gym: the SDK client (``AgentGym``), following experiments.
        pool: the model versions.
        default_version: what it serves before the registry names a champion.
        champion: ``() -> version or None``: the registry's champion (cached by the caller).
        seed: the simulated tool latency's random seed.
    """

    def __init__(self, gym: Any, pool: ModelPool, default_version: str, champion: Any, seed: int = 0,
                 metadata: dict[str, str] | None = None) -> None:
        self.gym = gym
        self.pool = pool
        self.default_version = default_version
        self.champion = champion
        self.metadata = dict(metadata or {})
        self._rng = random.Random(seed)
        self._t0 = time.monotonic()

    def experiment(self) -> dict[str, Any] | None:
        """The agent's experiment that routes traffic: the running one, else the last one decided."""
        follower = self.gym.follow_experiments(wait_s=None)
        mine = [c for c in follower.configs().values()
                if c.get("tenant_id") == self.gym.tenant_id and c.get("agent_id") == self.gym.agent_id
                and c.get("status") in ("running", "concluded", "rolled_back")]
        return max(mine, key=lambda c: (c.get("status") == "running", c.get("updated_ms") or 0)) if mine else None

    def route(self, user_id: str, experiment: dict[str, Any] | None) -> tuple[str, Any]:
        """``(model version, assignment or None)`` of one request."""
        if experiment is not None:
            a = self.gym.assign(experiment["experiment_id"], user_id)
            if a is not None:
                return a.model_version, a
        return self.champion() or self.default_version, None

    def serve(self, batch: Sequence[tuple[str, Task]]) -> list[RunResult]:
        """Serves ``(user, task)`` requests: one generate call per serving version."""
        experiment = self.experiment()
        routed: dict[str, list[tuple[int, str, Task, Any]]] = {}
        for i, (user, task) in enumerate(batch):
            version, a = self.route(user, experiment)
            routed.setdefault(version, []).append((i, user, task, a))
        results: list[RunResult | None] = [None] * len(batch)
        for version, items in routed.items():
            t0 = time.perf_counter()
            answers = self.pool.generate(version, [t.request for _, _, t, _ in items])
            model_ms = (time.perf_counter() - t0) * 1000.0 / len(items)
            for (i, user, task, a), (answer, p_tok, c_tok) in zip(items, answers):
                results[i] = self._record(user, task, version, a, answer, p_tok, c_tok, model_ms)
        return [r for r in results if r is not None]

    def _record(self, user: str, task: Task, version: str, a: Any, answer: str, p_tok: int, c_tok: int,
                model_ms: float) -> RunResult:
        call = parse_call(answer)
        error = execute(call)
        tool_ms = self._rng.lognormvariate(4.4, 0.35)  # ~80 ms, the tool's own time
        steps = [
            {"name": "route", "kind": "llm", "input": task.request, "output": answer, "latency_ms": model_ms,
             "prompt_tokens": p_tok, "completion_tokens": c_tok},
            {"name": call[0] if call else "unparsed", "kind": "tool", "input": {"arg": call[1]} if call else answer,
             "output": None if error else {"ok": True}, "error": error, "latency_ms": tool_ms},
        ]
        output = f"Called {answer}" if error is None else f"Sorry, something went wrong ({error.split(':')[0]})"
        active = a is not None and a.active
        trace = self.gym.record_experience(
            input=messages_for(task.request), output=answer, model_name=MODEL_NAME, model_version=version,
            latency_ms=model_ms + tool_ms, steps=steps, prompt_tokens=p_tok, completion_tokens=c_tok,
            cost_usd=p_tok * _PRICE_PROMPT + c_tok * _PRICE_COMPLETION, user_id=user,
            assignment=a if active else None, metadata={**self.metadata, "reply": output},
        )
        return RunResult(trace, user, task, version, a.variant if active else None, answer, is_correct(task, answer),
                         error, time.monotonic() - self._t0)


@dataclass
class FeedbackMix:
    """How users react (probabilities per run); the rest is silence."""

    thumbs: float = 0.30
    rating: float = 0.10
    correction_when_wrong: float = 0.20
    retry_when_wrong: float = 0.10
    noise: float = 0.04  # a thumbs or rating that contradicts the truth


@dataclass
class SimulatedUsers:
    """Gives feedback on runs through the SDK and counts what it gave."""

    gym: Any
    seed: int = 0
    mix: FeedbackMix = field(default_factory=FeedbackMix)
    metadata: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def _count(self, kind: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1

    def react(self, run: RunResult) -> None:
        rng, m, good = self._rng, self.mix, run.correct
        if rng.random() < m.noise:
            good = not good
        kw = {"user_id": run.user_id, "metadata": self.metadata}
        if not run.correct and rng.random() < m.correction_when_wrong:
            self.gym.record_feedback(run.trace_id, correction=run.task.expected, **kw)
            self._count("correction")
            return
        if not run.correct and rng.random() < m.retry_when_wrong:
            self.gym.record_feedback(run.trace_id, signal="retry", source="system", **kw)
            self._count("implicit retry")
            return
        r = rng.random()
        if r < m.thumbs:
            self.gym.record_feedback(run.trace_id, thumbs_up=good, **kw)
            self._count("thumbs up" if good else "thumbs down")
        elif r < m.thumbs + m.rating:
            self.gym.record_feedback(run.trace_id, rating=float(rng.choice((4, 5) if good else (1, 2))), **kw)
            self._count("rating")
        else:
            self._count("silence")
