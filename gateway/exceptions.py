"""Errors of the HTTP gateway.

:class:`ApiError` is what a request handler raises to answer with a 4xx: it carries
the HTTP status, a short error code, the field at fault and the reason, and becomes
the JSON body ``{"error": ..., "field": ..., "reason": ...}``. The others are raised
by the gateway's library functions (key and plan administration).
"""

from __future__ import annotations

__all__ = ["GatewayError", "ApiError", "KeyNotFoundError", "InvalidIdError", "PlanError", "AuditError"]


class GatewayError(Exception):
    """Base of the gateway's errors."""


class ApiError(GatewayError):
    """A request the gateway refuses, answered as JSON with ``status``.

    Attributes:
        status: the HTTP status (4xx).
        error: a short machine-readable code (``unauthorized``, ``invalid_event``, ...).
        field: the request field at fault ("" when none).
        reason: what is wrong, for people.
        index: the position of the event in a batch, when one event is at fault.
        headers: extra response headers (``Retry-After``, ``WWW-Authenticate``).
    """

    def __init__(self, status: int, error: str, field: str, reason: str, *, index: int | None = None,
                 headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.error = error
        self.field = field
        self.reason = reason
        self.index = index
        self.headers = headers or {}
        super().__init__(f"{status} {error}: {field}: {reason}")

    def body(self) -> dict[str, object]:
        out: dict[str, object] = {"error": self.error, "field": self.field, "reason": self.reason}
        if self.index is not None:
            out["index"] = self.index
        return out


class KeyNotFoundError(GatewayError, LookupError):
    """No API key with that id."""


class InvalidIdError(GatewayError, ValueError):
    """An id (tenant, agent, key) is empty, too long or has characters outside its alphabet."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class PlanError(GatewayError, ValueError):
    """A tenant plan's name or limits are invalid."""


class AuditError(GatewayError, ValueError):
    """An audit record's outcome or action is invalid."""
