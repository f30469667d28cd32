"""Domain specs in YAML: templates with slots, the tool and answer each intent expects.

A domain that needs no code describes its requests in a YAML file
(``trainers/synth/specs/tool_routing.yaml`` is the demo's)::

    name: tool_routing
    description: Route each request to the right tool with the right argument.
    system: You route requests to tools.            # optional system message
    slots:
      city:     {values: [Oslo, Lima], boundary: ["", "São Paulo"]}
      order_id: {range: [1000, 9999], boundary: ["0", "-1", "2147483648"]}
    intents:
      - name: order
        tool: lookup_order
        arguments: {order_id: "{order_id}"}          # filled with the slot values
        argument_types: {order_id: str}              # str (default), int or float
        answer: "Done: lookup_order({order_id})"
        weight: 2                                    # relative frequency (default 1)
        templates: ["Where is order {order_id}?", "Track my package {order_id}"]
        translations: {es: ["¿Dónde está el pedido {order_id}?"]}
    synonyms: [[package, parcel]]                    # added to the rule paraphraser's

Every placeholder must name a slot, and arguments need a tool; a mistake is reported
with the file and the field (:class:`~agentgym.trainers.synth.exceptions.SpecError`). A spec is a
generator (:class:`SpecGenerator`, family ``domain``): it fills templates, paraphrases
half of them, and lends its requests, translations and boundary values to the
edge-case generator.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from agentgym.trainers.synth.bases import Base, scenario_from
from agentgym.trainers.synth.exceptions import SpecError
from agentgym.trainers.synth.scenario import Scenario
from agentgym.trainers.synth.text import fill, placeholders

__all__ = ["SlotSpec", "IntentSpec", "SpecModel", "DomainSpec", "SpecGenerator", "SPECS_DIR", "builtin_spec"]

SPECS_DIR = Path(__file__).resolve().parent / "specs"


def _text(value: Any) -> Any:
    # YAML reads 42 and 1.5 as numbers: slot values are text in a request
    if isinstance(value, list):
        return [str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v for v in value]
    return value


TextList = Annotated[list[str], BeforeValidator(_text)]


class SlotSpec(BaseModel):
    """A slot: the values it takes (a list, or an integer range), and boundary values worth testing."""

    model_config = ConfigDict(extra="forbid")

    values: TextList = Field(default_factory=list)
    range: tuple[int, int] | None = None
    boundary: TextList = Field(default_factory=list)

    @model_validator(mode="after")
    def _some_values(self) -> "SlotSpec":
        if not self.values and self.range is None:
            raise ValueError("a slot needs values or a range")
        if self.range is not None and self.range[0] > self.range[1]:
            raise ValueError(f"range {list(self.range)} is empty")
        return self


class IntentSpec(BaseModel):
    """One kind of request: its templates, the tool call and answer it expects."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    tool: str | None = None
    arguments: dict[str, Any] = Field(default_factory=dict)
    argument_types: dict[str, Literal["str", "int", "float"]] = Field(default_factory=dict)
    answer: str | None = None
    weight: float = Field(1.0, gt=0)
    templates: list[str] = Field(min_length=1)
    translations: dict[str, list[str]] = Field(default_factory=dict)


class SpecModel(BaseModel):
    """The whole YAML document."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    system: str | None = None
    slots: dict[str, SlotSpec] = Field(default_factory=dict)
    intents: list[IntentSpec] = Field(min_length=1)
    synonyms: list[list[str]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _placeholders_are_slots(self) -> "SpecModel":
        for i, intent in enumerate(self.intents):
            where: list[tuple[str, str]] = [(f"intents[{i}].templates[{j}]", t) for j, t in enumerate(intent.templates)]
            where += [(f"intents[{i}].translations.{lang}[{j}]", t)
                      for lang, ts in intent.translations.items() for j, t in enumerate(ts)]
            where += [(f"intents[{i}].arguments.{k}", v) for k, v in intent.arguments.items() if isinstance(v, str)]
            if intent.answer is not None:
                where.append((f"intents[{i}].answer", intent.answer))
            for field_path, text in where:
                missing = [p for p in placeholders(text) if p not in self.slots]
                if missing:
                    raise ValueError(f"{field_path}: slot {{{missing[0]}}} is not defined under slots")
            if intent.arguments and not intent.tool:
                raise ValueError(f"intents[{i}].arguments: arguments need a tool")
            extra = sorted(set(intent.argument_types) - set(intent.arguments))
            if extra:
                raise ValueError(f"intents[{i}].argument_types.{extra[0]}: not an argument of the intent")
        return self


@dataclass(frozen=True)
class DomainSpec:
    """A loaded, validated domain spec.

    Attributes:
        model: the parsed document.
        source: where it came from (a path, or ``<dict>``).
    """

    model: SpecModel
    source: str = "<dict>"

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def synonyms(self) -> list[list[str]]:
        return [list(g) for g in self.model.synonyms]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<dict>") -> "DomainSpec":
        """Validates a parsed document.

        Raises:
            SpecError: naming ``source`` and the first invalid field.
        """
        try:
            return cls(SpecModel.model_validate(dict(data)), source)
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(p) for p in err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            raise SpecError(f"{source}: {loc + ': ' if loc else ''}{msg}") from None

    @classmethod
    def load(cls, path: str | Path) -> "DomainSpec":
        """Reads and validates a YAML spec.

        Raises:
            SpecError: the file cannot be read, is not YAML, or is invalid (naming the field).
        """
        p = Path(path).expanduser()
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8"))
        except OSError as exc:
            raise SpecError(f"{p}: cannot read the spec: {exc}") from None
        except yaml.YAMLError as exc:
            raise SpecError(f"{p}: not valid YAML: {exc}") from None
        if not isinstance(data, Mapping):
            raise SpecError(f"{p}: expected a mapping at the top level")
        return cls.from_dict(data, str(p))

    def slot_values(self) -> dict[str, list[str]]:
        """Slot -> its listed values (range slots list none: they are drawn)."""
        return {name: list(s.values) for name, s in self.model.slots.items() if s.values}

    def _draw(self, slot: str, rng: random.Random) -> str:
        s = self.model.slots[slot]
        if s.range is not None and (not s.values or rng.random() < 0.5):
            return str(rng.randint(s.range[0], s.range[1]))
        return rng.choice(s.values)

    def sample_base(self, rng: random.Random) -> Base:
        """A request of a random intent (by weight) and template, filled with drawn slot values."""
        m = self.model
        intent = rng.choices(m.intents, weights=[i.weight for i in m.intents])[0]
        ti = rng.randrange(len(intent.templates))
        template = intent.templates[ti]
        needed = dict.fromkeys(placeholders(template))
        for v in intent.arguments.values():
            if isinstance(v, str):
                needed.update(dict.fromkeys(placeholders(v)))
        if intent.answer:
            needed.update(dict.fromkeys(placeholders(intent.answer)))
        values = {slot: self._draw(slot, rng) for slot in needed}
        types = {arg: intent.argument_types.get(arg, "str") for arg in intent.arguments}
        messages = ([{"role": "system", "content": m.system}] if m.system else []) + [{"role": "user", "content": fill(template, values)}]
        key = f"{m.name}\x1f{intent.name}\x1f{ti}\x1f" + "\x1f".join(f"{k}={values[k]}" for k in sorted(values))
        return Base(
            messages=tuple(messages), template=template, values=values, tool=intent.tool,
            arguments=dict(intent.arguments) if intent.tool else None, argument_types=types,
            answer_template=intent.answer, trace_ids=(), group="spec-" + hashlib.sha256(key.encode()).hexdigest()[:16],
            origin=f"spec:{m.name}", intent=intent.name, translations={k: list(v) for k, v in intent.translations.items()},
            boundary={k: list(s.boundary) for k, s in m.slots.items() if s.boundary},
        )


class SpecGenerator:
    """A domain spec as a generator (family ``domain``): filled templates, half of them paraphrased."""

    family = "domain"

    def __init__(self, spec: DomainSpec) -> None:
        self.spec = spec
        self.name = f"spec:{spec.name}"

    def generate(self, ctx: Any, count: int, rng: random.Random) -> list[Scenario]:
        out = []
        for _ in range(count):
            base = self.spec.sample_base(rng)
            template, how = base.template, "template"
            if rng.random() < 0.5:
                template, how = ctx.paraphraser.paraphrase(template, rng), "template+paraphrase"
            out.append(scenario_from(base, fill(template, base.values), base.values, family="domain", generator=self.name,
                                     tags=[f"intent:{base.intent}", f"variation:{how}"]))
        return out


def builtin_spec(name: str) -> Path:
    """The path of a spec shipped in ``trainers/synth/specs`` (``tool_routing`` -> ``.../tool_routing.yaml``)."""
    return SPECS_DIR / f"{name}.yaml"
