"""One batch: generators fill their quotas in rounds, every candidate is validated, a report is made.

How a batch of ``n`` is filled:

1. The active generators (those whose ``available(ctx)`` is not False) share ``n`` by
   weight: each family's share of ``mix`` (paraphrase, failure, edge, domain), split
   evenly among the generators of that family, renormalised over the active ones
   (largest remainder, :func:`agentgym.trainers.synth.clusters.allocate`).
2. Each round asks every generator still short for ``ceil(missing * oversample)``
   candidates, drawn from its own ``random.Random`` seeded with (seed, generator,
   round), so a generator's output does not depend on the others.
3. Candidates are validated interleaved (one of each generator in turn), so no
   generator crowds the others out of the near-duplicate index; a generator keeps at
   most its quota.
4. A generator that gets nothing accepted in a round (or fails) is exhausted: what it
   still owes moves to the others by weight. At most ``max_rounds`` rounds.

Same context, generators, seed and validator state: the same scenarios in the same
order. Pure apart from the clock.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agentgym.trainers.synth.clusters import allocate
from agentgym.trainers.synth.exceptions import ScenarioSchemaError, SynthError
from agentgym.trainers.synth.generators import GenerationContext, Generator
from agentgym.trainers.synth.report import QualityReport
from agentgym.trainers.synth.scenario import Scenario, coerce_scenario, scenario_text
from agentgym.trainers.synth.settings import DEFAULT_MIX
from agentgym.trainers.synth.validation import BatchValidator, diversity

__all__ = ["BatchResult", "generate_batch", "generator_weights"]


@dataclass
class BatchResult:
    """The accepted scenarios, in order, and the batch's report."""

    scenarios: list[Scenario]
    report: QualityReport


def generator_weights(generators: Sequence[Generator], mix: Mapping[str, float]) -> list[float]:
    """Each generator's weight: its family's share of ``mix`` split evenly within the family."""
    per_family = Counter(g.family for g in generators)
    return [float(mix.get(g.family, mix.get("domain", 0.0))) / per_family[g.family] for g in generators]


def _rng(seed: int, name: str, round_: int) -> random.Random:
    return random.Random(f"{seed}\x1f{name}\x1f{round_}")


def generate_batch(
    ctx: GenerationContext,
    generators: Sequence[Generator],
    n: int,
    seed: int,
    validator: BatchValidator,
    *,
    mix: Mapping[str, float] = DEFAULT_MIX,
    oversample: float = 1.5,
    max_rounds: int = 4,
    clock: Callable[[], float] = time.perf_counter,
) -> BatchResult:
    """Generates and validates one batch of up to ``n`` scenarios (see the module docstring).

    Raises:
        SynthError: two generators share a name.
    """
    names = [g.name for g in generators]
    if len(set(names)) != len(names):
        raise SynthError(f"generator names must be unique (a generator or spec named twice?): {names}")
    report = QualityReport(tenant_id=ctx.tenant_id, agent_id=ctx.agent_id, seed=seed, requested=n, generators=names)
    active = [g for g in generators if getattr(g, "available", lambda _ctx: True)(ctx) is not False]
    weights = dict(zip([g.name for g in active], generator_weights(active, mix)))
    if active and sum(weights.values()) <= 0:
        weights = {g.name: 1.0 for g in active}
    quotas = dict(zip(weights, allocate(n, list(weights.values()))))
    report.quotas = dict(quotas)
    accepted: dict[str, list[Scenario]] = {g.name: [] for g in active}
    order: list[Scenario] = []
    exhausted: set[str] = set()
    gen_s = val_s = 0.0
    start = clock()
    for round_ in range(max_rounds):
        short = [g for g in active if g.name not in exhausted and quotas[g.name] > len(accepted[g.name])]
        if not short:
            break
        report.rounds = round_ + 1
        batches: list[tuple[Generator, list[Any]]] = []
        for g in short:
            want = math.ceil((quotas[g.name] - len(accepted[g.name])) * oversample)
            t0 = clock()
            try:
                items = list(g.generate(ctx, want, _rng(seed, g.name, round_)))[:want]
            except Exception as exc:  # a broken plugin is reported, the batch goes on with the others
                report.generator_errors[g.name] = f"{type(exc).__name__}: {exc}"
                items = []
            gen_s += clock() - t0
            report.candidates += len(items)
            batches.append((g, items))
        got = Counter[str]()
        t0 = clock()
        for i in range(max((len(items) for _, items in batches), default=0)):
            for g, items in batches:
                if i >= len(items):
                    continue
                if len(accepted[g.name]) >= quotas[g.name]:
                    report.surplus += 1
                    continue
                try:
                    s = coerce_scenario(items[i], g.family, g.name)
                except ScenarioSchemaError as exc:
                    validator.reject(f"schema_invalid:{exc.field}", repr(items[i])[:160])
                    continue
                if validator.check(s) is None:
                    accepted[g.name].append(s)
                    order.append(s)
                    got[g.name] += 1
        val_s += clock() - t0
        # generators that could not add anything hand what they still owe to the others
        for g, _ in batches:
            if got[g.name] == 0:
                exhausted.add(g.name)
        owed = sum(quotas[name] - len(accepted[name]) for name in exhausted if quotas[name] > len(accepted[name]))
        takers = [g.name for g in active if g.name not in exhausted]
        if owed and takers:
            for name in exhausted:
                quotas[name] = min(quotas[name], len(accepted[name]))
            for name, extra in zip(takers, allocate(owed, [weights[t] or 1e-9 for t in takers])):
                quotas[name] += extra
    total_s = clock() - start
    report.accepted = len(order)
    report.rejected = dict(sorted(validator.rejected.items()))
    report.rejected_examples = {k: list(v) for k, v in sorted(validator.examples.items())}
    report.by_family = dict(sorted(Counter(s.family for s in order).items()))
    report.by_generator = dict(sorted(Counter(s.generator for s in order).items()))
    report.edge_families = dict(sorted(Counter(t.split(":", 1)[1] for s in order for t in s.tags
                                               if t.startswith("edge:")).items()))
    report.with_expected_tool = sum(s.expected_tool is not None for s in order)
    report.with_expected_answer = sum(s.expected_answer is not None for s in order)
    report.diversity = diversity([scenario_text(s.messages) for s in order], seed=seed,
                                 signatures=validator.signatures[-len(order):] if order else None).to_dict()
    report.paraphraser = {"name": ctx.paraphraser.name, "stats": dict(sorted(ctx.paraphraser.stats.items()))}
    report.timing = {
        "generation_s": round(gen_s, 6), "validation_s": round(val_s, 6), "total_s": round(total_s, 6),
        "scenarios_per_s": round(len(order) / total_s, 2) if total_s > 0 else 0.0,
        "candidates_per_s": round(report.candidates / total_s, 2) if total_s > 0 else 0.0,
    }
    return BatchResult(order, report)
