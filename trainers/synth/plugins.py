"""Loading generators by reference: built-in names, YAML specs, ``module:attr`` paths and entry points.

A reference is, in the order tried:

1. a built-in name: ``paraphrase``, ``failure``, ``edge``;
2. a YAML spec: a path ending in ``.yaml``/``.yml``, or the name of a spec shipped in
   ``trainers/synth/specs`` (``tool_routing``);
3. ``package.module:attr``;
4. the name of an entry point in the group ``agentgym.synth_generators``, which a
   domain package declares in its ``pyproject.toml``::

       [project.entry-points."agentgym.synth_generators"]
       billing = "billing_agent.synth:BillingGenerator"

What the reference names may be a generator object (``name``, ``family``,
``generate``), a class of one (instantiated without arguments), a
:class:`~agentgym.trainers.synth.spec.DomainSpec`, or a plain function
``fn(ctx, count, rng) -> iterable of scenarios or mappings`` (wrapped in a
:class:`~agentgym.trainers.synth.generators.FunctionGenerator` named after the reference).
"""

from __future__ import annotations

import importlib
import inspect
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

from agentgym.trainers.synth.exceptions import GeneratorLoadError
from agentgym.trainers.synth.generators import BUILTIN_GENERATORS, FunctionGenerator, Generator
from agentgym.trainers.synth.spec import DomainSpec, SpecGenerator, builtin_spec

__all__ = ["ENTRY_POINT_GROUP", "load_generator", "installed_generators", "as_generator"]

ENTRY_POINT_GROUP = "agentgym.synth_generators"


def installed_generators() -> dict[str, EntryPoint]:
    """Entry points of the group ``agentgym.synth_generators``, by name."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def as_generator(obj: Any, name: str) -> Generator:
    """A generator from what a reference names (see the module docstring).

    Raises:
        GeneratorLoadError: ``obj`` is none of the accepted kinds.
    """
    if isinstance(obj, DomainSpec):
        return SpecGenerator(obj)
    if inspect.isclass(obj):
        try:
            obj = obj()
        except TypeError as exc:
            raise GeneratorLoadError(f"generator {name!r}: the class cannot be instantiated without arguments: {exc}") from None
    if callable(getattr(obj, "generate", None)) and isinstance(getattr(obj, "name", None), str) \
            and isinstance(getattr(obj, "family", None), str):
        return obj  # type: ignore[no-any-return]
    if callable(obj) and not inspect.isclass(obj):
        return FunctionGenerator(name, obj, family=str(getattr(obj, "family", "domain")))
    raise GeneratorLoadError(f"generator {name!r} is a {type(obj).__name__}: expected a generator (name, family, generate), "
                             "a class of one, a DomainSpec or a function fn(ctx, count, rng)")


def load_generator(ref: str) -> Generator:
    """The generator a reference names (see the module docstring).

    Raises:
        GeneratorLoadError: nothing by that reference, or it cannot be imported or used.
        SpecError: a YAML spec that is invalid.
    """
    ref = ref.strip()
    if ref in BUILTIN_GENERATORS:
        return BUILTIN_GENERATORS[ref]()
    if ref.endswith((".yaml", ".yml")):
        return SpecGenerator(DomainSpec.load(ref))
    if ":" not in ref and builtin_spec(ref).is_file():
        return SpecGenerator(DomainSpec.load(builtin_spec(ref)))
    if ":" in ref:
        module, _, attr = ref.partition(":")
        if not module or not attr:
            raise GeneratorLoadError(f"generator {ref!r}: expected package.module:attr")
        try:
            obj: Any = importlib.import_module(module)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as exc:
            raise GeneratorLoadError(f"generator {ref!r} cannot be loaded: {exc}") from exc
        return as_generator(obj, ref)
    installed = installed_generators()
    if ref in installed:
        try:
            obj = installed[ref].load()
        except Exception as exc:
            raise GeneratorLoadError(f"entry point {ref!r} ({installed[ref].value}) cannot be loaded: {exc}") from exc
        return as_generator(obj, ref)
    known = sorted(BUILTIN_GENERATORS) + sorted(p.stem for p in Path(builtin_spec("x")).parent.glob("*.yaml")) + sorted(installed)
    raise GeneratorLoadError(
        f"unknown generator {ref!r}: expected one of {', '.join(known)}, a path to a .yaml spec, or package.module:attr"
    )

