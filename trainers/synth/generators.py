"""Scenario generators: the built-in families and the protocol a domain's own generator follows.

A generator has a ``name``, a ``family`` (:data:`agentgym.trainers.synth.scenario.FAMILIES`) and
``generate(ctx, count, rng)``, which returns up to ``count`` candidates (scenarios or
mappings with their fields) drawn from ``rng`` alone, so the same seed gives the same
candidates. It may define ``available(ctx) -> bool`` (False: it has nothing to work
on, and its share of the batch goes to the others). Validation happens afterwards, on
every candidate of every generator (:mod:`agentgym.trainers.synth.validation`).

Built in:

* :class:`ParaphraseGenerator` (``paraphrase``): variations of real requests --
  paraphrases of the request template (rules or a registry model), template
  re-filling with other values seen in real runs, or both.
* :class:`FailureSeededGenerator` (``failure``): the same variations of failed runs,
  the budget split over failure clusters in proportion to their size.
* :class:`EdgeCaseGenerator` (``edge``): empty, very long, multilingual, typos,
  injected instructions, malformed tool results, boundary values -- in turn, so every
  family is represented.
* :class:`FunctionGenerator`: wraps a plain ``fn(ctx, count, rng)`` (a plugin).

A domain spec (:mod:`agentgym.trainers.synth.spec`) is a generator too.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from agentgym.trainers.synth.bases import Base, scenario_from
from agentgym.trainers.synth.clusters import FailureCluster, allocate
from agentgym.trainers.synth.exceptions import GeneratorConfigError
from agentgym.trainers.synth.paraphrase import Paraphraser, RuleParaphraser
from agentgym.trainers.synth.scenario import EDGE_FAMILIES, Scenario, SourceRun
from agentgym.trainers.synth.text import (
    EMPTY_INPUTS,
    LANGUAGES,
    MALFORMED_KINDS,
    boundary_value,
    fill,
    inject,
    is_number,
    long_context,
    malformed_tool_result,
    translate,
    typos,
)

if TYPE_CHECKING:
    from agentgym.trainers.synth.spec import DomainSpec

__all__ = [
    "Generator",
    "GenerationContext",
    "ParaphraseGenerator",
    "FailureSeededGenerator",
    "EdgeCaseGenerator",
    "FunctionGenerator",
    "BUILTIN_GENERATORS",
    "vary",
]


@dataclass
class GenerationContext:
    """What generators draw from.

    Attributes:
        real_bases: bases of the real runs usable as seeds (held-out prompts excluded).
        clusters: failure clusters among them, biggest first.
        paraphraser: rewrites request templates.
        slot_values: slot -> values seen (real runs and specs), for re-filling.
        specs: the domain specs of this batch.
        long_chars: length of the very-long edge cases.
        runs: the real runs the bases came from.
    """

    tenant_id: str
    agent_id: str
    real_bases: list[Base] = field(default_factory=list)
    clusters: list[FailureCluster] = field(default_factory=list)
    paraphraser: Paraphraser = field(default_factory=RuleParaphraser)
    slot_values: dict[str, list[str]] = field(default_factory=dict)
    specs: list["DomainSpec"] = field(default_factory=list)
    long_chars: int = 12000
    runs: list[SourceRun] = field(default_factory=list)
    _pools: dict[tuple[bool, bool], list[Base]] = field(default_factory=dict, init=False, repr=False)

    def pool(self, *, need_slots: bool = False, need_tool: bool = False) -> list[Base]:
        """The real bases with a non-empty request (and slots, a known tool), computed once."""
        key = (need_slots, need_tool)
        if key not in self._pools:
            self._pools[key] = [b for b in self.real_bases
                                if b.text.strip() and (b.values or not need_slots) and (b.tool or not need_tool)]
        return self._pools[key]

    def pick_base(self, rng: random.Random, *, need_slots: bool = False, need_tool: bool = False) -> Base | None:
        """A base with a non-empty request from the real runs or (half the time, when there are both) a spec."""
        real = self.pool(need_slots=need_slots, need_tool=need_tool)
        use_spec = bool(self.specs) and (not real or rng.random() < 0.5)
        if use_spec:
            spec = rng.choice(self.specs)
            return spec.sample_base(rng)
        return rng.choice(real) if real else None


@runtime_checkable
class Generator(Protocol):
    """Makes candidate scenarios; see the module docstring."""

    name: str
    family: str

    def generate(self, ctx: GenerationContext, count: int, rng: random.Random) -> Iterable[Scenario | Mapping[str, Any]]:
        """Up to ``count`` candidates, drawn from ``rng`` only."""
        ...


def _can_refill(slot: str, current: str, ctx: GenerationContext) -> bool:
    pool = ctx.slot_values.get(slot, [])
    return len(pool) > 1 or (len(pool) == 1 and pool[0] != current)


def _other_value(slot: str, current: str, ctx: GenerationContext, rng: random.Random) -> str:
    pool = ctx.slot_values[slot]
    while True:  # terminates: _can_refill guarantees another value (values are distinct)
        value = rng.choice(pool)
        if value != current:
            return value


def vary(base: Base, ctx: GenerationContext, rng: random.Random, mode: str | None = None) -> tuple[str, dict[str, str], str]:
    """A variation of ``base``'s request: (request, slot values, how: ``paraphrase``, ``refill`` or ``paraphrase+refill``).

    ``refill`` puts another value seen for one slot; without one the mode falls back
    to ``paraphrase``.
    """
    values = dict(base.values)
    slots = [s for s in sorted(values) if _can_refill(s, values[s], ctx)]
    modes = ["paraphrase", "refill", "paraphrase+refill"] if slots else ["paraphrase"]
    how = mode if mode in modes else rng.choice(modes)
    template = base.template
    if "refill" in how:
        slot = rng.choice(slots)
        values[slot] = _other_value(slot, values[slot], ctx, rng)
    if "paraphrase" in how:
        template = ctx.paraphraser.paraphrase(template, rng)
    return fill(template, values), values, how


class ParaphraseGenerator:
    """Variations of real requests: paraphrased, re-filled, or both (family ``paraphrase``)."""

    name = "paraphrase"
    family = "paraphrase"

    def available(self, ctx: GenerationContext) -> bool:
        return bool(ctx.pool())

    def generate(self, ctx: GenerationContext, count: int, rng: random.Random) -> list[Scenario]:
        pool = ctx.pool()
        out = []
        for _ in range(count if pool else 0):
            base = rng.choice(pool)
            request, values, how = vary(base, ctx, rng)
            gen = "paraphrase.refill" if how == "refill" else f"paraphrase.{ctx.paraphraser.name}"
            out.append(scenario_from(base, request, values, family=self.family, generator=gen, tags=[f"variation:{how}"]))
        return out


class FailureSeededGenerator:
    """Variations of failed runs; each failure cluster gets a share of the budget proportional to its size."""

    name = "failure"
    family = "failure"

    def available(self, ctx: GenerationContext) -> bool:
        return any(b.text.strip() for c in ctx.clusters for b in c.bases)

    def generate(self, ctx: GenerationContext, count: int, rng: random.Random) -> list[Scenario]:
        clusters = [c for c in ctx.clusters if any(b.text.strip() for b in c.bases)]
        out = []
        for cluster, quota in zip(clusters, allocate(count, [c.size for c in clusters])):
            pool = [b for b in cluster.bases if b.text.strip()]
            for _ in range(quota):
                base = rng.choice(pool)
                request, values, how = vary(base, ctx, rng)
                out.append(scenario_from(
                    base, request, values, family=self.family, generator=f"failure.{how}",
                    tags=[f"cluster:{cluster.cluster_id}", f"failure:{cluster.key}", f"variation:{how}"],
                    weight=cluster.weight,
                ))
        return out


class EdgeCaseGenerator:
    """Edge cases of real (or spec) requests, one family after the other (:data:`EDGE_FAMILIES`).

    Args:
        families: the edge families to make (default: all).
    """

    name = "edge"
    family = "edge"

    def __init__(self, families: Sequence[str] = EDGE_FAMILIES) -> None:
        unknown = [f for f in families if f not in EDGE_FAMILIES]
        if unknown:
            raise GeneratorConfigError(f"unknown edge families {unknown}; known: {list(EDGE_FAMILIES)}")
        self.families = list(families)

    def available(self, ctx: GenerationContext) -> bool:
        return bool(self.families) and (bool(ctx.pool()) or bool(ctx.specs))

    def generate(self, ctx: GenerationContext, count: int, rng: random.Random) -> list[Scenario]:
        out: list[Scenario] = []
        start = rng.randrange(len(self.families)) if self.families else 0
        for i in range(count if self.families else 0):
            fam = self.families[(start + i) % len(self.families)]
            s = getattr(self, f"_{fam}")(ctx, rng)
            if s is not None:
                s.tags = [f"edge:{fam}", *s.tags]
                out.append(s)
        return out

    def _make(self, base: Base, request: str, values: Mapping[str, str], fam: str, tags: Sequence[str] = (),
              **kw: Any) -> Scenario:
        return scenario_from(base, request, values, family="edge", generator=f"edge.{fam}", tags=tags, **kw)

    def _empty(self, ctx: GenerationContext, rng: random.Random) -> Scenario | None:
        base = ctx.pick_base(rng)
        if base is None:
            return None
        content = rng.choice(EMPTY_INPUTS)
        kind = "blank" if not content.strip() else ("punctuation" if content.strip(".?") == "" else "emoji")
        return self._make(base, content, base.values, "empty", [f"empty:{kind}"], answer_known=False, tool_known=False)

    def _long(self, ctx: GenerationContext, rng: random.Random) -> Scenario | None:
        base = ctx.pick_base(rng)
        if base is None:
            return None
        request, where = long_context(base.text, rng, ctx.long_chars)
        return self._make(base, request, base.values, "long", [f"needle:{where}"])

    def _multilingual(self, ctx: GenerationContext, rng: random.Random) -> Scenario | None:
        base = ctx.pick_base(rng)
        if base is None:
            return None
        langs = sorted(set(LANGUAGES) | set(base.translations))
        lang = rng.choice(langs)
        if base.translations.get(lang):
            request, how = fill(rng.choice(list(base.translations[lang])), base.values), "template"
        else:
            request, how = translate(base.text, lang, rng, protect=list(base.values.values())), "words"
        # the right answer may be in the user's language: only the tool call is kept as expected
        return self._make(base, request, base.values, "multilingual", [f"lang:{lang}", f"translation:{how}"], answer_known=False)

    def _typos(self, ctx: GenerationContext, rng: random.Random) -> Scenario | None:
        base = ctx.pick_base(rng)
        if base is None:
            return None
        return self._make(base, typos(base.text, rng, protect=list(base.values.values())), base.values, "typos")

    def _injection(self, ctx: GenerationContext, rng: random.Random) -> Scenario | None:
        base = ctx.pick_base(rng)
        if base is None:
            return None
        request, placement = inject(base.text, rng)
        # the agent should do what it would have done without the injected instruction
        return self._make(base, request, base.values, "injection", [f"injection:{placement}"])

    def _malformed_tool_result(self, ctx: GenerationContext, rng: random.Random) -> Scenario | None:
        base = ctx.pick_base(rng, need_tool=True)
        if base is None or base.tool is None:
            return None
        kind = rng.choice(MALFORMED_KINDS)
        args = dict(base.arguments or {})
        messages = [dict(m) for m in base.messages if m["role"] != "user"]
        messages += [
            {"role": "user", "content": base.text},
            {"role": "assistant", "content": json.dumps({"tool": base.tool, "arguments": args}, sort_keys=True, default=str)},
            {"role": "tool", "content": malformed_tool_result(kind, rng, args)},
        ]
        # the call was made; what the agent should say about a broken result is not known
        return self._make(base, base.text, base.values, "malformed_tool_result", [f"malformed:{kind}", f"tool:{base.tool}"],
                          messages=messages, answer_known=False, tool_known=False)

    def _boundary(self, ctx: GenerationContext, rng: random.Random) -> Scenario | None:
        base = ctx.pick_base(rng, need_slots=True)
        if base is not None and base.values:
            slot = rng.choice(sorted(base.values))
            values = dict(base.values)
            values[slot] = boundary_value(base.values[slot], rng, base.boundary.get(slot))
            return self._make(base, fill(base.template, values), values, "boundary", [f"slot:{slot}"])
        base = ctx.pick_base(rng)
        if base is None:
            return None
        words = base.text.split(" ")
        numbers = [i for i, w in enumerate(words) if is_number(w.strip("?.!,"))]
        if not numbers:
            return None
        i = rng.choice(numbers)
        token = words[i].strip("?.!,")
        words[i] = words[i].replace(token, boundary_value(token, rng), 1)
        # the number is not a known argument: what the right call is stays unknown
        return self._make(base, " ".join(words), base.values, "boundary", ["slot:unknown"], answer_known=False, tool_known=False)


class FunctionGenerator:
    """A plain function as a generator: ``fn(ctx, count, rng) -> iterable of scenarios or mappings``.

    Args:
        name: reported name (the reference it was loaded from).
        fn: the function.
        family: the family of what it yields, unless an item says otherwise (default ``domain``).
    """

    def __init__(self, name: str, fn: Callable[[GenerationContext, int, random.Random], Iterable[Any]],
                 family: str = "domain") -> None:
        self.name = name
        self.family = family
        self.fn = fn

    def generate(self, ctx: GenerationContext, count: int, rng: random.Random) -> Iterable[Any]:
        return self.fn(ctx, count, rng)


BUILTIN_GENERATORS: dict[str, Callable[[], Generator]] = {
    "paraphrase": ParaphraseGenerator,
    "failure": FailureSeededGenerator,
    "edge": EdgeCaseGenerator,
}
