"""The validation gate: a new adapter becomes a candidate only when it beats the champion.

Both are scored on the dataset's held-out split -- prompts no training example of
this dataset (or of any earlier one: splits are fixed by prompt hash) contains -- by
:func:`agentgym.trainers.evaluation.score_version`:

* **loss**: the candidate's mean completion NLL must be lower than the champion's by
  at least ``gate_loss_margin`` (relative: 0.01 = 1 % lower);
* **task success** (only with an evaluator): the candidate's rate must be at least the
  champion's plus ``gate_success_margin`` (absolute).

Passing makes the version a ``candidate`` and (``experiment_auto_start``) starts an A/B
experiment against the champion with a small traffic share (:mod:`agentgym.trainers.experiments`);
failing registers it as ``rejected``, with its scores, so the registry keeps every
attempt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agentgym.trainers.evaluation import EvalScores, Evaluator, load_evaluator, score_version
from agentgym.trainers.exceptions import GateError
from agentgym.trainers.settings import GateSettings

__all__ = ["GateDecision", "ValidationGate"]


@dataclass(frozen=True)
class GateDecision:
    """The gate's verdict with the evidence."""

    passed: bool
    reason: str
    candidate: EvalScores
    champion: EvalScores
    loss_margin: float
    success_margin: float

    def metrics(self) -> dict[str, float]:
        """Scores for the registry's ``metrics`` map."""
        out = {
            "gate_eval_loss": self.candidate.loss, "gate_champion_eval_loss": self.champion.loss,
            "gate_eval_examples": float(self.candidate.n), "gate_passed": 1.0 if self.passed else 0.0,
        }
        if self.champion.loss > 0:
            out["gate_loss_improvement"] = 1.0 - self.candidate.loss / self.champion.loss
        if self.candidate.success_rate is not None and self.champion.success_rate is not None:
            out["gate_success_rate"] = self.candidate.success_rate
            out["gate_champion_success_rate"] = self.champion.success_rate
        return out


class ValidationGate:
    """Compares a candidate adapter with the champion on held-out examples.

    Args:
        settings: margins, evaluator, sizes (default: from the environment).
        evaluator: overrides ``gate_evaluator`` (a callable, a built-in name or ``module:function``).
    """

    def __init__(self, settings: GateSettings | None = None, evaluator: str | Evaluator | None = None) -> None:
        self.settings = settings or GateSettings()
        self.evaluator_spec: str | Evaluator | None = evaluator if evaluator is not None else self.settings.gate_evaluator
        load_evaluator(self.evaluator_spec)  # fail early on a bad name

    def decide(self, candidate: EvalScores, champion: EvalScores) -> GateDecision:
        """The verdict from two sets of scores (pure)."""
        s = self.settings
        required = champion.loss * (1.0 - s.gate_loss_margin)
        reasons = []
        loss_ok = candidate.loss <= required and candidate.loss < champion.loss
        reasons.append(
            f"held-out loss {candidate.loss:.4f} vs champion {champion.loss:.4f} "
            f"({'<=' if loss_ok else '>'} {required:.4f}, margin {s.gate_loss_margin:.1%})"
        )
        success_ok = True
        if candidate.success_rate is not None and champion.success_rate is not None:
            success_ok = candidate.success_rate >= champion.success_rate + s.gate_success_margin
            reasons.append(
                f"task success {candidate.success_rate:.3f} vs champion {champion.success_rate:.3f} "
                f"(needs >= {champion.success_rate + s.gate_success_margin:.3f})"
            )
        passed = loss_ok and success_ok
        return GateDecision(passed, ("passed: " if passed else "rejected: ") + "; ".join(reasons),
                            candidate, champion, s.gate_loss_margin, s.gate_success_margin)

    def evaluate(
        self,
        rows: Sequence[dict[str, Any]],
        *,
        candidate_base: str,
        candidate_adapter: str,
        champion_base: str,
        champion_adapter: str | None,
        use_gpu: bool = False,
        max_length: int = 2048,
    ) -> GateDecision:
        """Scores both versions on ``rows`` (the held-out split) and decides.

        With ``use_gpu`` (and Ray initialised) each version is scored in a Ray task on a
        GPU, so the cluster's GPU workers do the work, in parallel; otherwise in this
        process (no worker start-up for a CPU-sized model).

        Raises:
            GateError: no held-out rows.
        """
        if not rows:
            raise GateError("the dataset has no held-out examples to evaluate on")
        rows = list(rows)[: self.settings.gate_max_eval_examples]
        args = (rows, self.evaluator_spec, self.settings.gate_max_new_tokens, max_length)
        cand_scores, champ_scores = _score_both(
            (candidate_base, candidate_adapter), (champion_base, champion_adapter), args, use_gpu
        )
        return self.decide(cand_scores, champ_scores)


def _score_both(candidate: tuple[str, str | None], champion: tuple[str, str | None], args: tuple[Any, ...],
                use_gpu: bool) -> tuple[EvalScores, EvalScores]:
    import ray

    if not (use_gpu and ray.is_initialized()):
        return score_version(*candidate, *args), score_version(*champion, *args)
    task = ray.remote(num_gpus=1, num_cpus=1, max_retries=1)(score_version)
    refs = [task.remote(*candidate, *args), task.remote(*champion, *args)]
    cand, champ = ray.get(refs)
    return cand, champ
