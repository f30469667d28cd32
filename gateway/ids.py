"""Ids that come from a request (tenant, agent, key id) and may become names downstream.

One rule, checked at the edge: 1 to 128 characters of ``A-Z a-z 0-9 . _ -``, starting
with a letter or digit, so no id can be a path (``..``, ``/``), empty or a control
character. (The faults work adds a shared validator in ``agentgym.schemas.ids``; this
module defers to it once it exists.)
"""

from __future__ import annotations

import re

from agentgym.gateway.exceptions import InvalidIdError

__all__ = ["check_id", "ID_PATTERN"]

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_ID = re.compile(ID_PATTERN)


def check_id(field: str, value: object) -> str:
    """``value`` if it is a valid id, else :class:`InvalidIdError` naming ``field``."""
    if not isinstance(value, str):
        raise InvalidIdError(field, f"must be a string, got {type(value).__name__}")
    if _ID.match(value) is None or value.endswith("\n"):
        raise InvalidIdError(field, f"{value[:40]!r} is not a valid id (1-128 of A-Z a-z 0-9 . _ -, starting with a letter or digit)")
    return value
