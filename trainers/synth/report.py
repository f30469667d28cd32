"""The quality report of a batch: what was asked, made, kept and rejected (and why), diversity and speed.

It is printed by ``agentgym synth generate``, stored in the synthetic dataset's
manifest (``counts.quality``) and next to it as ``quality_report.json``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["QualityReport"]


@dataclass
class QualityReport:
    """One batch's report.

    Attributes:
        requested: scenarios asked for (``--n``).
        candidates: scenarios the generators made (validated or not).
        accepted: scenarios kept.
        rejected: reason -> count (:data:`agentgym.trainers.synth.validation.REASONS`, ``schema_invalid:<field>``).
        rejected_examples: reason -> up to three rejected inputs (shortened).
        surplus: valid-looking candidates not needed because their generator had reached its quota.
        sources: what was mined: runs read, seeds, held out, succeeded, failed, templates, clusters.
        quotas: generator -> scenarios it was asked for at the start.
        by_family / by_generator / edge_families: accepted counts.
        with_expected_tool / with_expected_answer: accepted scenarios with a known tool call / answer.
        diversity: of the accepted scenarios; real_diversity: of the real inputs, for comparison.
        paraphraser: its name and counters.
        timing: generation_s, validation_s, total_s, scenarios_per_s (accepted / total), candidates_per_s.
        generator_errors: generator -> the error that stopped it.
        splits: scenarios per split, once written.
    """

    tenant_id: str
    agent_id: str
    seed: int
    requested: int
    generators: list[str] = field(default_factory=list)
    candidates: int = 0
    accepted: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    rejected_examples: dict[str, list[str]] = field(default_factory=dict)
    surplus: int = 0
    rounds: int = 0
    sources: dict[str, Any] = field(default_factory=dict)
    quotas: dict[str, int] = field(default_factory=dict)
    by_family: dict[str, int] = field(default_factory=dict)
    by_generator: dict[str, int] = field(default_factory=dict)
    edge_families: dict[str, int] = field(default_factory=dict)
    with_expected_tool: int = 0
    with_expected_answer: int = 0
    diversity: dict[str, Any] = field(default_factory=dict)
    real_diversity: dict[str, Any] = field(default_factory=dict)
    paraphraser: dict[str, Any] = field(default_factory=dict)
    timing: dict[str, float] = field(default_factory=dict)
    generator_errors: dict[str, str] = field(default_factory=dict)
    splits: dict[str, int] = field(default_factory=dict)

    @property
    def shortfall(self) -> int:
        """Scenarios asked for but not delivered."""
        return max(0, self.requested - self.accepted)

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shortfall"] = self.shortfall
        d["rejected_total"] = self.rejected_total
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, ensure_ascii=False)

    def format_text(self) -> str:
        """A human-readable summary (what the CLI prints)."""
        t, d = self.timing, self.diversity
        lines = [
            f"synthetic batch for {self.tenant_id}/{self.agent_id} (seed {self.seed}): "
            f"{self.accepted}/{self.requested} scenarios from {self.candidates} candidates"
            + (f", {self.shortfall} short" if self.shortfall else ""),
            f"  sources: {', '.join(f'{k} {v}' for k, v in self.sources.items() if not isinstance(v, (list, dict)))}",
            f"  by family: {_kv(self.by_family)}",
            f"  by generator: {_kv(self.by_generator)}",
        ]
        if self.edge_families:
            lines.append(f"  edge cases: {_kv(self.edge_families)}")
        lines.append(f"  known expectation: tool {self.with_expected_tool}, answer {self.with_expected_answer}")
        lines.append(f"  rejected {self.rejected_total}: {_kv(self.rejected) or 'none'}")
        if d:
            rd = self.real_diversity
            lines.append(
                f"  diversity: score {d.get('score', 0):.3f} (distinct-1 {d.get('distinct_1', 0):.3f}, "
                f"distinct-2 {d.get('distinct_2', 0):.3f}, MinHash spread {d.get('minhash_spread', 0):.3f})"
                + (f"; real inputs {rd.get('score', 0):.3f}" if rd else "")
            )
        if self.paraphraser:
            lines.append(f"  paraphraser: {self.paraphraser.get('name')} {_kv(self.paraphraser.get('stats', {}))}")
        if self.generator_errors:
            lines.append(f"  generator errors: {_kv(self.generator_errors)}")
        if t:
            lines.append(
                f"  speed: {t.get('scenarios_per_s', 0):.0f} scenarios/s ({t.get('candidates_per_s', 0):.0f} candidates/s; "
                f"generation {t.get('generation_s', 0):.3f}s, validation {t.get('validation_s', 0):.3f}s)"
            )
        if self.splits:
            lines.append(f"  splits: {_kv(self.splits)}")
        return "\n".join(lines)


def _kv(d: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(d.items()))
