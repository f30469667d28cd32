"""One valid example of every record, for round-trip tests."""

from __future__ import annotations

from typing import Any

EXAMPLES: dict[str, dict[str, Any]] = {
    "Experience": {
        "event_id": "e1", "tenant_id": "acme", "agent_id": "support", "trace_id": "t1", "timestamp_ms": 1_700_000_000_000,
        "session_id": "s1", "user_id": "u1",
        "input": [{"role": "system", "content": "be nice"}, {"role": "user", "content": "where is order 42?"}],
        "steps": [
            {"step_id": "0", "kind": "llm", "name": "plan", "input": "{}", "output": "call lookup", "latency_ms": 120.5, "prompt_tokens": 30, "completion_tokens": 5},
            {"step_id": "1", "kind": "tool", "name": "lookup_order", "input": '{"id": 42}', "output": None, "error": "timeout", "latency_ms": 2000.0},
            {"step_id": "2", "kind": "retrieval", "name": "faq", "input": "order", "output": "[]"},
        ],
        "output": "It shipped.", "model_name": "llama-3.2-1b", "model_version": "v3",
        "assignment": {"experiment_id": "exp1", "variant": "treatment", "unit_type": "user", "unit_id": "u1"},
        "latency_ms": 2300.25, "prompt_tokens": 40, "completion_tokens": 12, "cost_usd": 0.0012, "status": "ok",
        "error": None, "metadata": {"channel": "web"}, "sdk_version": "agentgym-py/0.1.0",
    },
    "Feedback": {
        "event_id": "f1", "tenant_id": "acme", "agent_id": "support", "trace_id": "t1", "timestamp_ms": 1_700_000_001_000,
        "kind": "correction", "source": "human", "rating": None, "rating_scale": 5.0, "thumbs_up": False,
        "comment": "wrong order", "correction": "Order 42 is delayed.", "signal": None, "value": None,
        "user_id": "u1", "metadata": {},
    },
    "Outcome": {
        "event_id": "o1", "tenant_id": "acme", "agent_id": "support", "trace_id": "t1", "timestamp_ms": 1_700_000_002_000,
        "label": "failure", "confidence": 0.97, "labeller": "human", "labeller_version": "rules-1",
        "reasons": ["correction given"], "revision": 2, "model_version": "v3", "experiment_id": "exp1",
        "variant": "treatment", "unit_id": "u1", "corrected_output": "Order 42 is delayed.",
    },
    "ExperimentConfig": {
        "event_id": "x1", "tenant_id": "acme", "experiment_id": "exp1", "agent_id": "support", "name": "v3 vs v4",
        "salt": "s4lt", "unit_type": "user",
        "variants": [
            {"name": "control", "model_version": "v3", "weight": 0.9, "is_control": True},
            {"name": "treatment", "model_version": "v4", "weight": 0.1, "is_control": False},
        ],
        "primary_metric": {"name": "success_rate", "kind": "proportion", "direction": "increase", "cap": None, "limit": None},
        "guardrails": [{"name": "latency_ms", "kind": "mean", "direction": "decrease", "cap": 30000.0, "limit": 0.1}],
        "alpha": 0.05, "min_samples_per_arm": 100, "status": "running", "config_version": 3,
        "updated_ms": 1_700_000_000_000, "updated_by": "ops",
    },
    "StatsSnapshot": {
        "event_id": "ss1", "tenant_id": "acme", "experiment_id": "exp1", "timestamp_ms": 1_700_000_003_000,
        "metric": "success_rate",
        "arms": [{"variant": "control", "n": 1000, "sum": 700.0, "sum_squares": 700.0},
                 {"variant": "treatment", "n": 110, "sum": 88.0, "sum_squares": 88.0}],
        "comparisons": [{"variant": "treatment", "control": "control", "estimate": 0.1, "ci_low": -0.02, "ci_high": 0.22,
                         "relative_estimate": 0.14, "relative_ci_low": -0.03, "relative_ci_high": 0.31,
                         "p_value": 0.2, "fixed_horizon_p_value": 0.03}],
        "srm_p_value": 0.8, "status": "running", "message": "",
        "role": "primary", "config_version": 3, "alpha": 0.05, "mixing_rho": 0.063, "srm_chi_square_p_value": 0.7,
        "srm_log_bayes_factor": -2.1, "details_json": '{"treatment": {"adjusted_p_value": 0.2}}',
    },
    "Decision": {
        "event_id": "d1", "tenant_id": "acme", "experiment_id": "exp1", "timestamp_ms": 1_700_000_004_000,
        "action": "rollback", "winner": None, "reason": "guardrail latency_ms breached",
        "evidence_json": '{"p_value": 0.001}', "decided_by": "auto",
    },
    "DatasetReady": {
        "event_id": "ds1", "tenant_id": "acme", "dataset_id": "sft-001", "agent_id": "support", "kind": "sft",
        "uri": "file:///data/sft-001", "manifest_uri": "file:///data/sft-001/manifest.json", "num_examples": 5000,
        "splits": {"train": 4500, "eval": 500}, "checksum": "ab" * 32, "created_ms": 1_700_000_005_000,
        "source_trace_count": 5200, "labeller_versions": ["rules-1", "river-3"],
    },
    "ModelVersion": {
        "event_id": "m1", "tenant_id": "acme", "model_version": "v4", "agent_id": "support", "base_model": "llama-3.2-1b",
        "adapter_uri": "file:///models/v4", "dataset_id": "sft-001", "parent_version": "v3",
        "hyperparameters": {"lora_r": "16"}, "metrics": {"eval_loss": 1.23}, "status": "candidate",
        "created_ms": 1_700_000_006_000, "updated_ms": 1_700_000_006_000,
    },
    "DeadLetter": {
        "event_id": "dl1", "tenant_id": "", "timestamp_ms": 1_700_000_007_000, "source_topic": "gym-experiences-v1",
        "source_partition": 3, "source_offset": 42, "key": b"t1", "payload": b"\x00garbage",
        "error_type": "BadMarkerError", "reason": "not an Agent Gym Avro message", "processor": "sink",
    },
    "DriftAlert": {
        "event_id": "drift:acme:bot:v3:0:120", "tenant_id": "acme", "agent_id": "bot", "model_version": "v3",
        "timestamp_ms": 1_700_000_008_000, "metric": "success_rate", "detector": "ADWIN(delta=0.002)",
        "estimate_before": 0.82, "estimate_after": 0.41, "n": 120,
    },
    "ScenarioLineage": {
        "event_id": "lin:syn-acme-support-0123:sc-7:acme-r042", "tenant_id": "acme", "agent_id": "support",
        "dataset_id": "syn-acme-support-0123", "scenario_id": "sc-7", "split": "train", "family": "failure",
        "generator": "failure", "tags": ["cluster:c1", "tool:lookup_order"], "source_trace_id": "acme-r042",
        "expected_tool": "lookup_order", "created_ms": 1_700_000_009_000,
    },
    "ApiKey": {
        "event_id": "k-1", "key_id": "a1b2c3d4e5f6", "tenant_id": "acme", "secret_sha256": "0" * 64,
        "scopes": ["ingest", "read"], "status": "active", "name": "ci", "created_ms": 1_700_000_000_000,
        "updated_ms": 1_700_000_000_000,
    },
    "TenantPlan": {
        "event_id": "p-1", "tenant_id": "acme", "plan": "pro", "max_agents": 5, "max_runs_per_month": 10_000,
        "rate_per_s": None, "burst": None, "updated_ms": 1_700_000_000_000,
        "masking": {"enabled": True, "detectors": None, "fields": ["input", "output", "steps", "comment", "correction"],
                    "patterns": {"order_id": r"\bORD-\d{6}\b"}, "hash": True,
                    "agents": {"internal": {"enabled": False, "detectors": None, "fields": None, "patterns": {},
                                            "hash": False}}},
        "retention": {"events_days": 30, "outcomes_days": None, "stats_days": 365, "datasets_days": 90,
                      "models_days": None},
    },
    "TenantUsage": {
        "event_id": "acme|2026-12|r1|1700000000000", "usage_key": "acme|2026-12|r1", "tenant_id": "acme",
        "month": "2026-12", "replica_id": "r1", "runs": 42, "agents": ["support"], "updated_ms": 1_700_000_000_000,
    },
    "Deletion": {
        "event_id": "del-5f2a9c0e1b7d3a6c4e8f0a1b", "subject": "acme/0c5b1f7a2d9e4c3b8a6f1e0d2c4b6a8f", "tenant_id": "acme",
        "user_id": "u-4711", "status": "applied", "requested_ms": 1_700_000_012_000, "requested_by": "cli:ops",
        "trace_ids": ["t1", "t2"], "applied_ms": 1_700_000_012_500, "deleted_rows": {"experiences": 2, "feedback": 1, "outcomes": 2},
        "datasets": ["acme-support-sft-1700000000000"],
    },
    "AuditEvent": {
        "event_id": "0f3c2a", "tenant_id": "acme", "key_id": "a1b2c3d4e5f6", "timestamp_ms": 1_700_000_010_000,
        "action": "analytics.query", "target": "runs_over_time", "outcome": "ok", "status": 200,
        "detail": '{"limit": 100}', "request_id": None,
    },
    "OtelSpans": {
        "event_id": "4bf92f3577b34da6a3ce929d0e0e4736:1", "tenant_id": "acme", "agent_id": "support",
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "timestamp_ms": 1_700_000_011_000, "service_name": "support-bot",
        "spans": [{
            "span_id": "00f067aa0ba902b7", "parent_span_id": "", "name": "chat gpt-4o", "kind": "llm", "operation": "chat",
            "start_ns": 1_700_000_010_000_000_000, "end_ns": 1_700_000_010_500_000_000, "error": None, "model": "gpt-4o",
            "response_model": "gpt-4o-2024-08-06", "system": "openai", "input_tokens": 12, "output_tokens": 7,
            "input_messages": [{"role": "user", "content": "hi", "name": None, "tool_call_id": None}],
            "output_messages": [{"role": "assistant", "content": "hello", "name": None, "tool_call_id": None}],
            "input": None, "output": None, "tool_call_id": None, "agent_name": None, "session_id": "s1", "user_id": None,
            "model_version": None,
            "assignment": {"experiment_id": "acme:ab", "variant": "treatment", "unit_type": "user", "unit_id": "u1",
                           "config_version": 2, "experiment_status": "running"},
        }],
    },
}
