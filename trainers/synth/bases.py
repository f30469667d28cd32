"""Bases: the requests generators vary, with what is known about the right behaviour.

A :class:`Base` is a request as a template (its argument values masked as ``{slot}``
placeholders), the values it had, and -- when known -- the tool it should go to, that
call's arguments and the answer as a template over the same slots. Every generator
works on bases, whether they come from real runs (:func:`bases_from_runs`) or from a
domain spec, so a variation can be re-filled with other values and still carry the
right expectation ("template re-filling").

What is known about a real run:

* a **successful** run (latest label ``success``): its first tool call and its output;
* a **failed** run with a correction: the corrected answer;
* a **failed** run whose masked request equals a successful run's (same template,
  same slots): that run's tool and answer template, filled with the failed run's values.

Pure: no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from agentgym.processors.datasets.quality import normalize
from agentgym.trainers.synth.scenario import Message, Scenario, SourceRun, content_key
from agentgym.trainers.synth.text import fill, mask_values, placeholders, typed_value

__all__ = ["Base", "base_from_run", "bases_from_runs", "collect_slot_values", "failure_key", "expected_for", "scenario_from"]


@dataclass(frozen=True)
class Base:
    """A request to vary, and what the agent should do with it when that is known.

    Attributes:
        messages: the whole input; the last user message is the request.
        template: the request with its argument values as ``{slot}`` placeholders.
        values: slot -> the value the request had.
        tool: the tool the request should go to, when known.
        arguments: that call's arguments; a string value with ``{slot}`` placeholders is filled with the slot values.
        argument_types: argument -> ``int``, ``float`` or ``str``: the type a filled argument is converted to.
        answer_template: the expected answer over the same slots, when known.
        trace_ids: the real traces behind it (empty for a spec's request).
        group: the lineage group (its scenarios share a split).
        origin: ``real`` or ``spec:<name>``.
        intent: the spec intent it belongs to, when known.
        failure: why the run failed (``tool:<name>``, ``status:<status>``, ``label:failure``), None when it did not.
        translations: language -> request templates of the same intent (from a spec).
        boundary: slot -> boundary values worth testing (from a spec).
    """

    messages: tuple[Message, ...]
    template: str
    values: Mapping[str, str] = field(default_factory=dict)
    tool: str | None = None
    arguments: Mapping[str, Any] | None = None
    argument_types: Mapping[str, str] = field(default_factory=dict)
    answer_template: str | None = None
    trace_ids: tuple[str, ...] = ()
    group: str = ""
    origin: str = "real"
    intent: str | None = None
    failure: str | None = None
    translations: Mapping[str, Sequence[str]] = field(default_factory=dict)
    boundary: Mapping[str, Sequence[str]] = field(default_factory=dict)

    @cached_property
    def text(self) -> str:
        """The request as it was (the template filled with the original values)."""
        return fill(self.template, self.values)


def failure_key(run: SourceRun) -> str | None:
    """Why a run failed, as a cluster key: its failing tool, else its status, else its label; None if it did not fail."""
    if not run.failed:
        return None
    if run.failing_tool:
        return f"tool:{run.failing_tool}"
    if run.status != "ok":
        return f"status:{run.status}"
    return "label:failure"


def _group(messages: Sequence[Mapping[str, str]]) -> str:
    return "g-" + content_key(messages)[:16]


def base_from_run(run: SourceRun) -> Base:
    """The base of one real run (its own knowledge only; :func:`bases_from_runs` adds what other runs tell)."""
    call = run.tool_calls[0] if run.tool_calls else None
    args = dict(call.arguments) if call is not None and isinstance(call.arguments, Mapping) else None
    template, values = mask_values(run.user_text, args or {})
    tool = answer_t = None
    answer = run.output if run.succeeded else run.corrected_output
    if run.succeeded:
        tool = call.name if call is not None else None
    if answer:
        answer_t, _ = mask_values(answer, values)
        if set(placeholders(answer_t)) - set(values):
            answer_t = None  # the answer has {...} of its own: it could not be re-filled safely
    arguments = types = None
    if run.succeeded and args is not None:
        arguments = {k: ("{" + k + "}" if k in values else v) for k, v in args.items()}
        types = {k: _type_name(v) for k, v in args.items()}
    return Base(
        messages=tuple(dict(m) for m in run.messages), template=template, values=values,
        tool=tool, arguments=arguments, argument_types=types or {}, answer_template=answer_t,
        trace_ids=(run.trace_id,), group=_group(run.messages), origin="real", failure=failure_key(run),
    )


def _type_name(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "str"
    return "int" if isinstance(value, int) else "float"


def bases_from_runs(runs: Iterable[SourceRun]) -> list[Base]:
    """Bases of real runs, in order; a failed run learns its expectation from a successful run with the same template."""
    bases = [base_from_run(r) for r in runs]
    known: dict[tuple[str, tuple[str, ...]], Base] = {}
    for b in bases:
        if b.tool is not None and b.values:
            known.setdefault((normalize(b.template), tuple(sorted(b.values))), b)
    out = []
    for b in bases:
        if b.tool is None and b.failure is not None and b.values:
            match = known.get((normalize(b.template), tuple(sorted(b.values))))
            if match is not None:
                b = replace(b, tool=match.tool, arguments=match.arguments, argument_types=match.argument_types,
                            answer_template=match.answer_template)
        out.append(b)
    return out


def collect_slot_values(bases: Iterable[Base]) -> dict[str, list[str]]:
    """Slot -> the distinct values seen, in first-seen order (what re-filling draws from)."""
    seen: dict[str, dict[str, None]] = {}
    for b in bases:
        for k, v in b.values.items():
            seen.setdefault(k, {}).setdefault(v)
    return {k: list(v) for k, v in seen.items()}


def expected_for(base: Base, values: Mapping[str, str], answer_known: bool = True) -> tuple[str | None, dict[str, Any] | None, str | None]:
    """(tool, arguments, answer) of ``base``'s request filled with ``values``.

    Argument templates are filled with the values and converted to their argument type
    (an integer id stays an integer when the new value is one); the answer is the answer
    template filled.
    ``answer_known=False`` leaves the answer out (a case whose right answer differs).
    """
    tool, args = base.tool, None
    if tool is not None and base.arguments is not None:
        args = {}
        for k, v in base.arguments.items():
            if isinstance(v, str) and placeholders(v):
                args[k] = typed_value(fill(v, values), base.argument_types.get(k, "str"))
            else:
                args[k] = v
    answer = fill(base.answer_template, values) if answer_known and base.answer_template is not None else None
    return tool, args, answer


def scenario_from(base: Base, request: str, values: Mapping[str, str], *, family: str, generator: str,
                  tags: Sequence[str] = (), messages: Sequence[Message] | None = None, answer_known: bool = True,
                  tool_known: bool = True, weight: float = 1.0) -> Scenario:
    """A scenario: ``base``'s input with its request replaced by ``request``, and the expectation for ``values``.

    Args:
        messages: the whole input instead (e.g. with a tool call and its result appended).
        answer_known: False when the variation changes what the right answer is.
        tool_known: False when the right behaviour is not a tool call any more (an empty request).
    """
    if messages is None:
        msgs = [dict(m) for m in base.messages]
        idx = next((i for i in range(len(msgs) - 1, -1, -1) if msgs[i]["role"] == "user"), None)
        if idx is None:
            msgs.append({"role": "user", "content": request})
        else:
            msgs[idx] = {"role": "user", "content": request}
    else:
        msgs = [dict(m) for m in messages]
    tool, args, answer = expected_for(base, values, answer_known)
    if not tool_known:
        tool, args = None, None
    group = base.group or ("g-" + hashlib.sha256(base.template.encode()).hexdigest()[:16])
    return Scenario(
        messages=msgs, family=family, generator=generator, tags=list(tags), source_trace_ids=list(base.trace_ids),
        expected_tool=tool, expected_arguments=args, expected_answer=answer, weight=weight, group=group,
    )
