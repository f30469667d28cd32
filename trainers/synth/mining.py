"""Mining real runs from ClickHouse: the seeds of synthetic generation.

Reads ``v_experiences`` (deduplicated runs) with each run's latest outcome from
``v_outcomes_latest``, newest first, for one tenant and agent. Tool steps
(``steps.kind = 'tool'``) become :class:`~agentgym.trainers.synth.scenario.ToolCall` values, their
JSON input the call's arguments. Everything textual is scrubbed with the dataset
builder's :class:`~agentgym.processors.datasets.quality.Scrubber` before any generator sees it, so
secrets and personal data never reach a synthetic dataset.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from agentgym.processors.store.base import Store
from agentgym.processors.datasets.quality import Scrubber
from agentgym.trainers.synth.scenario import SourceRun, ToolCall

__all__ = ["RUNS_SQL", "mine_runs", "scrub_run", "parse_arguments"]

RUNS_SQL = """
SELECT e.trace_id, e.input.role, e.input.content, e.output, e.status, e.model_version,
       e.steps.kind, e.steps.name, e.steps.input, e.steps.error,
       o.label, o.corrected_output, o.labeller_version, toUnixTimestamp64Milli(e.ts) AS ts_ms
FROM v_experiences AS e
LEFT JOIN (
    SELECT tenant_id, trace_id, label, corrected_output, labeller_version FROM v_outcomes_latest
    WHERE tenant_id = {tenant:String} AND agent_id = {agent:String}
) AS o ON o.tenant_id = e.tenant_id AND o.trace_id = e.trace_id
WHERE e.tenant_id = {tenant:String} AND e.agent_id = {agent:String}
  AND e.ts >= fromUnixTimestamp64Milli({since_ms:Int64}, 'UTC')
ORDER BY e.ts DESC, e.trace_id
LIMIT {limit:UInt64}
SETTINGS join_use_nulls = 1
"""


def parse_arguments(raw: str | None) -> dict[str, Any] | None:
    """A tool step's input as arguments: the JSON object it holds, else None."""
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except (TypeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _scrub_value(value: Any, scrub: Any, counts: Counter[str]) -> Any:
    if isinstance(value, str):
        text, c = scrub(value)
        counts.update(c)
        return text
    if isinstance(value, dict):
        return {k: _scrub_value(v, scrub, counts) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub_value(v, scrub, counts) for v in value]
    return value


def scrub_run(run: SourceRun, scrubber: Scrubber | None, counts: Counter[str]) -> SourceRun:
    """``run`` with every message, output, correction and tool argument scrubbed; ``counts`` gets what was replaced."""
    if scrubber is None:
        return run
    s = scrubber.scrub
    return replace(
        run,
        messages=tuple({"role": m["role"], "content": _scrub_value(m["content"], s, counts)} for m in run.messages),
        output=_scrub_value(run.output, s, counts),
        corrected_output=_scrub_value(run.corrected_output, s, counts),
        tool_calls=tuple(ToolCall(t.name, _scrub_value(t.arguments, s, counts), _scrub_value(t.raw_input, s, counts), t.error)
                         for t in run.tool_calls),
    )


def _tool_calls(kinds: Sequence[str], names: Sequence[str], inputs: Sequence[str | None],
                errors: Sequence[str | None]) -> tuple[ToolCall, ...]:
    return tuple(ToolCall(name, parse_arguments(raw), raw, err)
                 for kind, name, raw, err in zip(kinds, names, inputs, errors) if kind == "tool")


def mine_runs(store: Store, tenant_id: str, agent_id: str, *, limit: int = 5000, window_days: float = 90.0,
              now_ms: int | None = None) -> list[SourceRun]:
    """The newest ``limit`` runs of one agent within ``window_days``, with their latest labels (unscrubbed)."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    rows = store.query(RUNS_SQL, {
        "tenant": tenant_id, "agent": agent_id, "limit": limit, "since_ms": now - int(window_days * 86400 * 1000),
    }).rows
    out = []
    for (trace, roles, contents, output, status, model_version, kinds, names, inputs, errors,
         label, corrected, labeller_version, ts_ms) in rows:
        out.append(SourceRun(
            trace_id=trace, messages=tuple({"role": r, "content": c} for r, c in zip(roles, contents)),
            output=output, status=str(status), label=label, corrected_output=corrected,
            tool_calls=_tool_calls(kinds, names, inputs, errors), model_version=model_version or "",
            labeller_version=labeller_version or "", ts_ms=int(ts_ms),
        ))
    return out
