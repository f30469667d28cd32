"""Avro binary encoders generated from a schema: the producer's hot path.

Why hand-write this: on these machines fastavro's ``schemaless_writer`` takes ~21 us for
a ~1 KiB Experience (2 messages, a step, a map; measured in ``ops/bench/producer.py``),
which alone exceeds the SDK's budget of 20 us per event (50,000 events/s). Its Cython
writer walks the schema dict for every datum; a function generated once per schema,
with the field order, enum indexes and union branches resolved ahead of time, writes the
same bytes in ~8 us. Output is byte-identical to fastavro's for every record the schema
accepts (tested field by field and on random records); anything this encoder does not
take — a wrong type, a missing field, an unknown enum symbol — raises, and the caller
falls back to fastavro, which either writes it or names the problem.

Supported: records, null/boolean/int/long/float/double/string/bytes, enums, arrays,
maps, unions (any branches; the first branch whose Python type fits is taken, as
fastavro does for the simple cases generated here). Logical types are not used by
Agent Gym's schemas and are rejected at generation time.

Compiled: where the package was built with a C compiler, the same schema also becomes a
plan for ``schemas/_avroenc.c``, which walks it in C: ~1.5 us for that Experience instead
of ~9 (``python -m agentgym.ops.bench.producer`` prints both). It takes the same records
and writes the same bytes; containers must be the built-in ``dict``/``list``/``tuple``
themselves (a subclass goes to fastavro). :func:`compile_encoder` returns the compiled
encoder when the extension is there, else the generated Python one; ``NATIVE`` says which.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

try:
    from agentgym.schemas._avroenc import Encoder as _NativeEncoder
except ImportError:  # built without a C compiler: the generated Python encoders serve
    _NativeEncoder = None

NATIVE = _NativeEncoder is not None

__all__ = ["compile_encoder", "compile_plan", "zigzag", "UnsupportedSchema", "NATIVE"]


class UnsupportedSchema(ValueError):
    """The schema uses something this generator does not handle (use fastavro)."""


def zigzag(n: int) -> bytes:
    """Avro's variable-length zig-zag encoding of a long."""
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SMALL = [zigzag(i) for i in range(16384)]  # varints of lengths and counts below 16 KiB


def _long(n: int) -> bytes:
    if type(n) is not int and type(n) is not bool:
        raise TypeError(f"expected int, got {type(n).__name__}")
    if 0 <= n < 16384:
        return _SMALL[n]
    if not -(1 << 63) <= n < (1 << 63):
        raise OverflowError("long out of range")
    return zigzag(n)


def _string(s: str) -> bytes:
    b = s.encode()
    n = len(b)
    return (_SMALL[n] if n < 16384 else zigzag(n)) + b


def _bytes(b: bytes) -> bytes:
    if not isinstance(b, (bytes, bytearray)):
        raise TypeError(f"expected bytes, got {type(b).__name__}")
    n = len(b)
    return (_SMALL[n] if n < 16384 else zigzag(n)) + bytes(b)


_D = struct.Struct("<d").pack
_F = struct.Struct("<f").pack


def _double(x: float) -> bytes:
    if type(x) is not float and type(x) is not int:
        raise TypeError(f"expected a number, got {type(x).__name__}")
    return _D(x)


def _float(x: float) -> bytes:
    if type(x) is not float and type(x) is not int:
        raise TypeError(f"expected a number, got {type(x).__name__}")
    return _F(x)


def _boolean(x: bool) -> bytes:
    if x is True:
        return b"\x01"
    if x is False:
        return b"\x00"
    raise TypeError(f"expected bool, got {type(x).__name__}")


_PRIMITIVE = {"string": "_string", "long": "_long", "int": "_long", "double": "_double", "float": "_float",
              "boolean": "_boolean", "bytes": "_bytes"}
# Python types a union branch accepts, to pick the branch as fastavro does
_BRANCH_TEST = {"null": "{v} is None", "string": "type({v}) is str", "boolean": "type({v}) is bool",
                "long": "type({v}) is int", "int": "type({v}) is int", "double": "type({v}) in (float, int)",
                "float": "type({v}) in (float, int)", "bytes": "isinstance({v}, (bytes, bytearray))"}


class _Gen:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.consts: dict[str, Any] = {}
        self.named: dict[str, Any] = {}
        self.funcs: dict[str, str] = {}
        self.n = 0

    def const(self, value: Any) -> str:
        name = f"_c{len(self.consts)}"
        self.consts[name] = value
        return name

    def var(self) -> str:
        self.n += 1
        return f"v{self.n}"

    def resolve(self, schema: Any, namespace: str) -> Any:
        if isinstance(schema, str) and schema not in _PRIMITIVE and schema != "null":
            full = schema if "." in schema else f"{namespace}.{schema}" if namespace else schema
            return self.named.get(full, self.named.get(schema))
        return schema

    def emit(self, schema: Any, v: str, out: str, ind: str, namespace: str) -> None:
        """Appends code that appends the encoding of ``v`` to list ``out``."""
        schema = self.resolve(schema, namespace)
        if schema is None:
            raise UnsupportedSchema("unknown named type")
        if isinstance(schema, str):
            if schema == "null":
                self.lines.append(f"{ind}if {v} is not None: raise TypeError('expected null')")
                return
            if schema == "string":  # inlined: strings are most of a record (a call each cost ~40% of the encoder)
                b = self.var()
                self.lines.append(f"{ind}{b} = {v}.encode()")
                self.lines.append(f"{ind}{out}(_SMALL[len({b})] if len({b}) < 16384 else zigzag(len({b})))")
                self.lines.append(f"{ind}{out}({b})")
            elif schema in ("long", "int"):
                self.lines.append(f"{ind}{out}(_SMALL[{v}] if type({v}) is int and 0 <= {v} < 16384 else _long({v}))")
            else:
                self.lines.append(f"{ind}{out}({_PRIMITIVE[schema]}({v}))")
            return
        if isinstance(schema, list):
            self.emit_union(schema, v, out, ind, namespace)
            return
        if "logicalType" in schema:
            raise UnsupportedSchema("logical types")
        t = schema["type"]
        if t in _PRIMITIVE or t == "null":
            self.emit(t, v, out, ind, namespace)
        elif t == "record":
            self.emit_record(schema, v, out, ind, namespace)
        elif t == "enum":
            self.register(schema, namespace)
            idx = self.const({s: _SMALL[i] for i, s in enumerate(schema["symbols"])})
            self.lines.append(f"{ind}{out}({idx}[{v}])")
        elif t == "array":
            n = self.var()
            self.lines.append(f"{ind}if {v}:")
            self.lines.append(f"{ind}    {out}(_long(len({v})))")
            self.lines.append(f"{ind}    for {n} in {v}:")
            self.emit(schema["items"], n, out, ind + "        ", namespace)
            self.lines.append(f"{ind}{out}(b'\\x00')")
        elif t == "map":
            k, val = self.var(), self.var()
            self.lines.append(f"{ind}if {v}:")
            self.lines.append(f"{ind}    {out}(_long(len({v})))")
            self.lines.append(f"{ind}    for {k}, {val} in {v}.items():")
            self.lines.append(f"{ind}        {out}(_string({k}))")
            self.emit(schema["values"], val, out, ind + "        ", namespace)
            self.lines.append(f"{ind}{out}(b'\\x00')")
        else:
            raise UnsupportedSchema(f"type {t!r}")

    def register(self, schema: dict[str, Any], namespace: str) -> str:
        ns = schema.get("namespace", namespace)
        full = schema["name"] if "." in schema["name"] else f"{ns}.{schema['name']}" if ns else schema["name"]
        self.named[full] = schema
        self.named[schema["name"]] = schema
        return ns

    def emit_union(self, branches: list[Any], v: str, out: str, ind: str, namespace: str) -> None:
        first = True
        for i, b in enumerate(branches):
            r = self.resolve(b, namespace)
            bt = r if isinstance(r, str) else r["type"]
            if bt in _BRANCH_TEST:
                test = _BRANCH_TEST[bt].format(v=v)
            elif bt in ("record", "map"):
                test = f"isinstance({v}, dict)"
            elif bt == "array":
                test = f"isinstance({v}, (list, tuple))"
            elif bt == "enum":
                test = f"type({v}) is str"
            else:
                raise UnsupportedSchema(f"union branch {bt!r}")
            self.lines.append(f"{ind}{'if' if first else 'elif'} {test}:")
            self.lines.append(f"{ind}    {out}({self.const(_SMALL[i])})")
            if bt != "null":
                self.emit(b, v, out, ind + "    ", namespace)
            else:
                self.lines.append(f"{ind}    pass")
            first = False
        self.lines.append(f"{ind}else: raise TypeError('no union branch fits')")

    def emit_record(self, schema: dict[str, Any], v: str, out: str, ind: str, namespace: str) -> None:
        ns = self.register(schema, namespace)
        for f in schema["fields"]:
            fv = self.var()
            if "default" in f:
                self.lines.append(f"{ind}{fv} = {v}.get({f['name']!r}, {self.const(f['default'])})")
            else:
                self.lines.append(f"{ind}{fv} = {v}[{f['name']!r}]")
            self.emit(f["type"], fv, out, ind, ns)


class _Planner(_Gen):
    """The schema as the compiled encoder's plan: nested tuples, names and branches resolved."""

    def plan(self, schema: Any, namespace: str, depth: int = 0) -> tuple[Any, ...]:
        if depth > 60:
            raise UnsupportedSchema("nested too deeply (or recursive)")
        schema = self.resolve(schema, namespace)
        if schema is None:
            raise UnsupportedSchema("unknown named type")
        if isinstance(schema, str):
            return ("long",) if schema == "int" else (schema,)
        if isinstance(schema, list):
            branches = []
            for b in schema:
                r = self.resolve(b, namespace)
                bt = r if isinstance(r, str) else r["type"] if isinstance(r, dict) else None
                if bt not in _BRANCH_TEST and bt not in ("record", "map", "array", "enum"):
                    raise UnsupportedSchema(f"union branch {bt!r}")
                branches.append(self.plan(b, namespace, depth + 1))
            return ("union", tuple(branches))
        if "logicalType" in schema:
            raise UnsupportedSchema("logical types")
        t = schema["type"]
        if t in _PRIMITIVE or t == "null":
            return self.plan(t, namespace, depth + 1)
        if t == "record":
            ns = self.register(schema, namespace)
            return ("record", tuple((f["name"], self.plan(f["type"], ns, depth + 1), "default" in f, f.get("default"))
                                    for f in schema["fields"]))
        if t == "enum":
            self.register(schema, namespace)
            return ("enum", tuple(schema["symbols"]))
        if t == "array":
            return ("array", self.plan(schema["items"], namespace, depth + 1))
        if t == "map":
            return ("map", self.plan(schema["values"], namespace, depth + 1))
        raise UnsupportedSchema(f"type {t!r}")


def compile_plan(schema: dict[str, Any]) -> tuple[Any, ...]:
    """The plan of ``schema`` for the compiled encoder (``_avroenc.Encoder``).

    Raises:
        UnsupportedSchema: as :func:`compile_encoder`.
    """
    if not isinstance(schema, dict) or schema.get("type") != "record":
        raise UnsupportedSchema("top level must be a record")
    return _Planner().plan(schema, schema.get("namespace", ""))


def compile_encoder(schema: dict[str, Any], *, native: bool | None = None) -> Callable[[dict[str, Any]], bytes]:
    """A function ``record -> Avro binary body`` for ``schema`` (a record schema as JSON).

    Args:
        native: the compiled encoder (True), the generated Python one (False), or the compiled
            one when it was built (None).

    Raises:
        UnsupportedSchema: for schema features it does not generate (use fastavro).
        ImportError: ``native=True`` where the extension was not built.
    """
    if not isinstance(schema, dict) or schema.get("type") != "record":
        raise UnsupportedSchema("top level must be a record")
    if native or (native is None and NATIVE):
        if _NativeEncoder is None:
            raise ImportError("agentgym.schemas._avroenc was not built (no C compiler when the package was installed)")
        return _NativeEncoder(compile_plan(schema)).encode  # type: ignore[no-any-return]
    g = _Gen()
    g.lines.append("def encode(r):")
    g.lines.append("    parts = []")
    g.lines.append("    out = parts.append")
    g.emit_record(schema, "r", "out", "    ", schema.get("namespace", ""))
    g.lines.append("    return b''.join(parts)")
    env: dict[str, Any] = {"_SMALL": _SMALL, "zigzag": zigzag, "_string": _string, "_long": _long, "_double": _double, "_float": _float,
                           "_boolean": _boolean, "_bytes": _bytes, **g.consts}
    exec(compile("\n".join(g.lines), f"<avro encoder {schema.get('name')}>", "exec"), env)  # noqa: S102
    return env["encode"]  # type: ignore[no-any-return]
