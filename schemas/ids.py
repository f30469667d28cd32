"""One validator for every id that becomes part of a path or an object-store key.

Tenant, agent, dataset, job, model version and experiment ids name directories and
files (the dataset store, the job store, training progress, the model store, spool
and registry paths). An id that is ``..``, absolute, or holds a separator or a NUL
would address something outside its store, so every place that turns an id into a
path calls :func:`validate_id` first, with the id's kind for the error message.

An id is 1 to 200 characters from ``A-Z a-z 0-9 _ . : @ + = -``, starting with a
letter, digit or underscore: that excludes ``.``/``..``, hidden names, ``/``, ``\\``,
NUL, whitespace and control characters, and keeps ids portable across local
filesystems and object stores.
"""

from __future__ import annotations

import re
from typing import Literal

from agentgym.schemas.exceptions import InvalidIdError

__all__ = ["IdKind", "ID_KINDS", "MAX_ID_LENGTH", "validate_id", "is_valid_id"]

IdKind = Literal["tenant_id", "agent_id", "dataset_id", "job_id", "model_version", "experiment_id"]
ID_KINDS: tuple[IdKind, ...] = ("tenant_id", "agent_id", "dataset_id", "job_id", "model_version", "experiment_id")
MAX_ID_LENGTH = 200

_ALLOWED = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:@+=-]*")


def _reason(value: object) -> str | None:
    if type(value) is str and len(value) <= MAX_ID_LENGTH and _ALLOWED.fullmatch(value):
        return None  # the common case, in one match: the pattern excludes NUL, separators and a leading '.'
    if not isinstance(value, str):
        return f"must be a string, got {type(value).__name__}"
    if not value:
        return "must not be empty"
    if len(value) > MAX_ID_LENGTH:
        return f"is {len(value)} characters long, more than {MAX_ID_LENGTH}"
    if "\x00" in value:
        return "must not contain NUL"
    if "/" in value or "\\" in value:
        return "must not contain a path separator ('/' or '\\')"
    if value in (".", "..") or value.startswith("."):
        return "must not be '.', '..' or start with '.'"
    if not _ALLOWED.fullmatch(value):
        bad = sorted({c for c in value if not re.fullmatch(r"[A-Za-z0-9_.:@+=-]", c)} or {value[0]})
        return f"may hold only letters, digits and '_.:@+=-' and must start with a letter, digit or '_' (found {bad!r})"
    return None


def validate_id(value: object, kind: IdKind) -> str:
    """Returns ``value`` if it is safe as one path component, else raises.

    Args:
        value: the id.
        kind: which id it is (named in the error).

    Raises:
        InvalidIdError: naming the kind, the value and the reason.
    """
    reason = _reason(value)
    if reason is not None:
        raise InvalidIdError(kind, value, reason)
    return value  # type: ignore[return-value]


def is_valid_id(value: object) -> bool:
    """Whether ``value`` passes :func:`validate_id`."""
    return _reason(value) is None
