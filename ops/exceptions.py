"""Errors of the local stack."""

__all__ = ["StackError", "MissingToolError", "ReportError", "ConfigDocError"]


class StackError(RuntimeError):
    """A local service could not be provisioned, started or stopped."""


class MissingToolError(StackError):
    """A required program (java, mvn) is not installed; the message says what to install."""


class ReportError(ValueError):
    """The demo report was given a value outside its domain (e.g. more successes than trials)."""


class ConfigDocError(RuntimeError):
    """A settings field cannot be documented (no description, a computed default without ``doc_default``)."""
