"""Evaluating a model version on held-out examples: completion loss and task success.

* :func:`completion_loss`: mean negative log-likelihood per completion token (nats),
  with the prompt rendered by the model's chat template exactly as training renders
  it (prompt tokens are not scored).
* Task success through a pluggable evaluator: a callable that gets the held-out
  cases (prompt, reference completion, the model's greedy generation) and returns
  the success rate in [0, 1]. Built in: ``exact_match`` and ``contains_reference``;
  anything else is named ``package.module:function``.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from agentgym.processors.datasets.quality import normalize
from agentgym.trainers.exceptions import EvaluatorError, GateError
from agentgym.trainers.modeling import generate, load_for_inference

__all__ = [
    "EvalCase",
    "Evaluator",
    "EvalScores",
    "exact_match",
    "contains_reference",
    "BUILTIN_EVALUATORS",
    "load_evaluator",
    "reference_of",
    "completion_loss",
    "score_model",
    "score_version",
]


@dataclass(frozen=True)
class EvalCase:
    """One held-out example with what the model generated for it."""

    prompt: list[dict[str, str]]
    reference: str
    generated: str


Evaluator = Callable[[Sequence[EvalCase]], float]


def exact_match(cases: Sequence[EvalCase]) -> float:
    """Share of cases whose generation equals the reference (normalised: case and whitespace)."""
    return sum(normalize(c.generated) == normalize(c.reference) for c in cases) / len(cases) if cases else 0.0


def contains_reference(cases: Sequence[EvalCase]) -> float:
    """Share of cases whose generation contains the reference (normalised)."""
    return sum(normalize(c.reference) in normalize(c.generated) for c in cases) / len(cases) if cases else 0.0


BUILTIN_EVALUATORS: dict[str, Evaluator] = {"exact_match": exact_match, "contains_reference": contains_reference}


def load_evaluator(spec: str | Evaluator | None) -> Evaluator | None:
    """An evaluator from a name, ``module:function``, or a callable (None or '' -> None).

    Raises:
        EvaluatorError: the name cannot be imported or is not callable.
    """
    if spec is None or spec == "":
        return None
    if callable(spec):
        return spec
    if spec in BUILTIN_EVALUATORS:
        return BUILTIN_EVALUATORS[spec]
    module, sep, attr = spec.partition(":")
    if not sep or not module or not attr:
        raise EvaluatorError(f"evaluator {spec!r}: expected {', '.join(BUILTIN_EVALUATORS)} or package.module:function")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise EvaluatorError(f"evaluator {spec!r} cannot be loaded: {exc}") from exc
    if not callable(fn):
        raise EvaluatorError(f"evaluator {spec!r} is not callable")
    return fn  # type: ignore[no-any-return]


def reference_of(row: dict[str, Any]) -> str:
    """The reference completion of a dataset row (SFT: the completion; preference: the chosen one)."""
    msgs = row.get("completion") or row.get("chosen") or []
    return str(msgs[0]["content"]) if msgs else ""


@dataclass(frozen=True)
class EvalScores:
    """A model's scores on held-out examples.

    Attributes:
        loss: mean NLL per completion token (nats).
        tokens: completion tokens scored.
        n: examples scored.
        success_rate: the evaluator's rate in [0, 1], None without an evaluator.
    """

    loss: float
    tokens: int
    n: int
    success_rate: float | None = None


def _ids(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool) -> list[int]:
    enc = tokenizer.apply_chat_template(messages, add_generation_prompt=generation_prompt, tokenize=True, return_dict=True)
    return list(enc["input_ids"])


def completion_loss(model: Any, tokenizer: Any, rows: Sequence[dict[str, Any]], max_length: int = 2048) -> tuple[float, int]:
    """(mean NLL per completion token, completion tokens) of ``model`` on ``rows``."""
    import torch

    total, count = 0.0, 0
    for row in rows:
        prompt = list(row["prompt"])
        prompt_ids = _ids(tokenizer, prompt, True)
        full = _ids(tokenizer, prompt + [{"role": "assistant", "content": reference_of(row)}], False)[:max_length]
        if len(full) <= len(prompt_ids):
            continue
        ids = torch.tensor([full], device=model.device)
        labels = ids.clone()
        labels[:, :len(prompt_ids)] = -100
        with torch.no_grad():
            logits = model(input_ids=ids).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1)
        target = labels[:, 1:]
        mask = target != -100
        nll = -logp.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)[mask]
        total += float(nll.sum())
        count += int(mask.sum())
    if count == 0:
        raise GateError("no held-out completion tokens to score")
    return total / count, count


def score_model(model: Any, tokenizer: Any, rows: Sequence[dict[str, Any]], evaluator: Evaluator | None = None,
                max_new_tokens: int = 128, max_length: int = 2048) -> EvalScores:
    """Loss (and, with an evaluator, task success) of a loaded model on ``rows``."""
    loss, tokens = completion_loss(model, tokenizer, rows, max_length)
    rate = None
    if evaluator is not None:
        cases = [EvalCase(list(r["prompt"]), reference_of(r), generate(model, tokenizer, list(r["prompt"]), max_new_tokens))
                 for r in rows]
        rate = float(evaluator(cases))
        if not (0.0 <= rate <= 1.0) or math.isnan(rate):
            raise EvaluatorError(f"the evaluator returned {rate}, not a rate in [0, 1]")
    return EvalScores(loss=loss, tokens=tokens, n=len(rows), success_rate=rate)


def score_version(base_model: str, adapter_uri: str | None, rows: Sequence[dict[str, Any]],
                  evaluator: str | Evaluator | None = None, max_new_tokens: int = 128, max_length: int = 2048) -> EvalScores:
    """Loads a base model (with its adapter) and scores it; the unit a Ray task runs."""
    model, tokenizer = load_for_inference(base_model, adapter_uri)
    try:
        return score_model(model, tokenizer, rows, load_evaluator(evaluator), max_new_tokens, max_length)
    finally:
        del model
