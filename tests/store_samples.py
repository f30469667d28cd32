"""Records of every type for the store's tests, decoded exactly as the sink sees them.

Each builder encodes its record with the project's codec and decodes it again, so the
dict has every field of the newest schema, enums as strings, defaults filled in.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from agentgym.schemas.codec import AvroCodec

__all__ = [
    "decoded",
    "now_ms",
    "new_id",
    "experience",
    "feedback",
    "outcome",
    "dead_letter",
    "experiment_config",
    "stats_snapshot",
    "decision",
    "dataset_ready",
    "model_version",
    "one_of_each",
]

_CODEC = AvroCodec()


def decoded(name: str, record: dict[str, Any]) -> dict[str, Any]:
    """``record`` after an Avro round trip (what ``AvroCodec().decode(...).record`` gives the sink)."""
    return _CODEC.decode(_CODEC.encode(name, record)).record


def now_ms() -> int:
    """The current time in Unix epoch milliseconds."""
    return int(time.time() * 1000)


def new_id() -> str:
    """A fresh 32-hex-digit id."""
    return uuid.uuid4().hex


def experience(
    tenant: str,
    *,
    agent: str = "support",
    trace: str | None = None,
    ts_ms: int | None = None,
    model_version: str = "v1",
    latency_ms: float = 100.0,
    cost_usd: float = 0.001,
    status: str = "ok",
    prompt_tokens: int = 30,
    completion_tokens: int = 10,
    event_id: str | None = None,
    experiment_id: str | None = None,
) -> dict[str, Any]:
    """A decoded Experience with two messages and two steps."""
    return decoded("Experience", {
        "event_id": event_id or new_id(), "tenant_id": tenant, "agent_id": agent, "trace_id": trace or new_id(),
        "timestamp_ms": now_ms() if ts_ms is None else ts_ms, "session_id": "s1", "user_id": "u1",
        "input": [{"role": "system", "content": "be brief", "name": None, "tool_call_id": None},
                  {"role": "user", "content": "where is order 42?", "name": None, "tool_call_id": None}],
        "steps": [
            {"step_id": "0", "kind": "llm", "name": "plan", "input": "{}", "output": "lookup", "error": None,
             "latency_ms": latency_ms * 0.4, "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens},
            {"step_id": "1", "kind": "tool", "name": "lookup_order", "input": '{"id": 42}', "output": None,
             "error": "timeout" if status != "ok" else None, "latency_ms": latency_ms * 0.5,
             "prompt_tokens": 0, "completion_tokens": 0},
        ],
        "output": "It shipped.", "model_name": "llama", "model_version": model_version,
        "assignment": None if experiment_id is None else
        {"experiment_id": experiment_id, "variant": "treatment", "unit_type": "user", "unit_id": "u1"},
        "latency_ms": latency_ms, "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
        "cost_usd": cost_usd, "status": status, "error": None if status == "ok" else "boom",
        "metadata": {"channel": "web"}, "sdk_version": "agentgym-py/0.1.0",
    })


def feedback(
    tenant: str,
    trace: str,
    *,
    agent: str = "support",
    ts_ms: int | None = None,
    kind: str = "thumbs",
    thumbs_up: bool | None = True,
    rating: float | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """A decoded Feedback on ``trace``."""
    return decoded("Feedback", {
        "event_id": event_id or new_id(), "tenant_id": tenant, "agent_id": agent, "trace_id": trace,
        "timestamp_ms": now_ms() if ts_ms is None else ts_ms, "kind": kind, "source": "human", "rating": rating,
        "rating_scale": 5.0, "thumbs_up": thumbs_up, "comment": None, "correction": None, "signal": None,
        "value": None, "user_id": "u1", "metadata": {},
    })


def outcome(
    tenant: str,
    trace: str,
    *,
    label: str = "success",
    revision: int = 0,
    agent: str = "support",
    model_version: str = "v1",
    ts_ms: int | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """A decoded Outcome (one revision of the label of ``trace``)."""
    return decoded("Outcome", {
        "event_id": event_id or new_id(), "tenant_id": tenant, "agent_id": agent, "trace_id": trace,
        "timestamp_ms": now_ms() if ts_ms is None else ts_ms, "label": label, "confidence": 0.9,
        "labeller": "rules", "labeller_version": "rules-1", "reasons": [f"rev {revision}"], "revision": revision,
        "model_version": model_version, "experiment_id": None, "variant": None, "unit_id": None,
        "corrected_output": None,
    })


def dead_letter(tenant: str, *, ts_ms: int | None = None, offset: int = 7) -> dict[str, Any]:
    """A decoded DeadLetter whose event_id derives from its source position, as the sink makes it."""
    return decoded("DeadLetter", {
        "event_id": f"gym-experiences-v1:0:{offset}:{tenant}", "tenant_id": tenant,
        "timestamp_ms": now_ms() if ts_ms is None else ts_ms, "source_topic": "gym-experiences-v1",
        "source_partition": 0, "source_offset": offset, "key": b"k\x00\xff", "payload": b"\x00garbage\xff",
        "error_type": "BadMarkerError", "reason": "not an Agent Gym Avro message", "processor": "sink",
    })


def experiment_config(
    tenant: str,
    experiment: str,
    *,
    status: str = "running",
    config_version: int = 1,
    updated_ms: int | None = None,
) -> dict[str, Any]:
    """A decoded ExperimentConfig of ``experiment``."""
    return decoded("ExperimentConfig", {
        "event_id": new_id(), "tenant_id": tenant, "experiment_id": experiment, "agent_id": "support",
        "name": "v1 vs v2", "salt": "s4lt", "unit_type": "user",
        "variants": [{"name": "control", "model_version": "v1", "weight": 0.5, "is_control": True},
                     {"name": "treatment", "model_version": "v2", "weight": 0.5, "is_control": False}],
        "primary_metric": {"name": "success_rate", "kind": "proportion", "direction": "increase", "cap": None, "limit": None},
        "guardrails": [{"name": "latency_ms", "kind": "mean", "direction": "decrease", "cap": 30000.0, "limit": 0.1}],
        "alpha": 0.05, "min_samples_per_arm": 100, "status": status, "config_version": config_version,
        "updated_ms": now_ms() if updated_ms is None else updated_ms, "updated_by": "ops",
    })


def stats_snapshot(tenant: str, experiment: str, *, ts_ms: int | None = None) -> dict[str, Any]:
    """A decoded StatsSnapshot of ``experiment``'s success rate."""
    return decoded("StatsSnapshot", {
        "event_id": new_id(), "tenant_id": tenant, "experiment_id": experiment,
        "timestamp_ms": now_ms() if ts_ms is None else ts_ms, "metric": "success_rate",
        "arms": [{"variant": "control", "n": 100, "sum": 70.0, "sum_squares": 70.0},
                 {"variant": "treatment", "n": 110, "sum": 88.0, "sum_squares": 88.0}],
        "comparisons": [{"variant": "treatment", "control": "control", "estimate": 0.1, "ci_low": -0.02,
                         "ci_high": 0.22, "relative_estimate": 0.14, "relative_ci_low": None,
                         "relative_ci_high": None, "p_value": 0.2, "fixed_horizon_p_value": 0.03}],
        "srm_p_value": 0.8, "status": "running", "message": "",
    })


def decision(tenant: str, experiment: str, *, action: str = "promote_winner", ts_ms: int | None = None) -> dict[str, Any]:
    """A decoded Decision on ``experiment``."""
    return decoded("Decision", {
        "event_id": new_id(), "tenant_id": tenant, "experiment_id": experiment,
        "timestamp_ms": now_ms() if ts_ms is None else ts_ms, "action": action,
        "winner": "treatment" if action == "promote_winner" else None, "reason": "treatment better",
        "evidence_json": '{"p_value": 0.01}', "decided_by": "auto",
    })


def dataset_ready(tenant: str, dataset: str) -> dict[str, Any]:
    """A decoded DatasetReady."""
    return decoded("DatasetReady", {
        "event_id": new_id(), "tenant_id": tenant, "dataset_id": dataset, "agent_id": "support", "kind": "sft",
        "uri": f"file:///data/{dataset}", "manifest_uri": f"file:///data/{dataset}/manifest.json",
        "num_examples": 1200, "splits": {"train": 1000, "eval": 200}, "checksum": "ab" * 32,
        "created_ms": now_ms(), "source_trace_count": 1300, "labeller_versions": ["rules-1"],
    })


def model_version(
    tenant: str,
    version: str,
    *,
    status: str = "candidate",
    dataset: str | None = None,
    updated_ms: int | None = None,
) -> dict[str, Any]:
    """A decoded ModelVersion (one registry entry of ``version``)."""
    return decoded("ModelVersion", {
        "event_id": new_id(), "tenant_id": tenant, "model_version": version, "agent_id": "support",
        "base_model": "llama", "adapter_uri": f"file:///models/{version}", "dataset_id": dataset,
        "parent_version": "v1", "hyperparameters": {"lr": "0.0002"}, "metrics": {"eval_loss": 1.25},
        "status": status, "created_ms": now_ms() - 60_000,
        "updated_ms": now_ms() if updated_ms is None else updated_ms,
    })


def one_of_each(tenant: str) -> dict[str, dict[str, Any]]:
    """One decoded record of every type, keyed by record name."""
    exp = experience(tenant, experiment_id="exp1")
    return {
        "Experience": exp,
        "Feedback": feedback(tenant, exp["trace_id"]),
        "Outcome": outcome(tenant, exp["trace_id"]),
        "DeadLetter": dead_letter(tenant),
        "ExperimentConfig": experiment_config(tenant, "exp1"),
        "StatsSnapshot": stats_snapshot(tenant, "exp1"),
        "Decision": decision(tenant, "exp1"),
        "DatasetReady": dataset_ready(tenant, "ds1"),
        "ModelVersion": model_version(tenant, "v2", dataset="ds1"),
    }
