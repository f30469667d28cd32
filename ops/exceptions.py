"""Errors of the local stack."""

__all__ = ["StackError", "MissingToolError"]


class StackError(RuntimeError):
    """A local service could not be provisioned, started or stopped."""


class MissingToolError(StackError):
    """A required program (java, mvn) is not installed; the message says what to install."""
