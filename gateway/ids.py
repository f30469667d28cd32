"""Ids that come from a request (tenant, agent, trace, event) and may become names downstream.

The rule is the project's one id rule, :func:`agentgym.schemas.ids.validate_id` (1-200
characters of ``A-Z a-z 0-9 _ . : @ + = -``, starting with a letter, digit or ``_``: no
``..``, separator, NUL or control character); this module applies it to request fields
and answers with the gateway's own error naming the field.
"""

from __future__ import annotations

from agentgym.gateway.exceptions import InvalidIdError
from agentgym.schemas.exceptions import InvalidIdError as UnsafeIdError
from agentgym.schemas.ids import MAX_ID_LENGTH, validate_id

__all__ = ["check_id", "ID_PATTERN"]

ID_PATTERN = rf"^[A-Za-z0-9_][A-Za-z0-9_.:@+=-]{{0,{MAX_ID_LENGTH - 1}}}$"
"""The same rule as a JSON Schema pattern (for the OpenAPI document)."""


def check_id(field: str, value: object) -> str:
    """``value`` if it is a valid id, else :class:`InvalidIdError` naming ``field``."""
    try:
        return validate_id(value, "tenant_id")  # one rule for every kind; the field is named below
    except UnsafeIdError as exc:
        raise InvalidIdError(field, f"{str(value)[:40]!r} is not a valid id: {exc.reason}") from None
