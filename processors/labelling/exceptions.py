"""Errors of the labelling package."""

from __future__ import annotations

__all__ = ["LabellingError", "InvalidEventError", "RulesConfigError", "ModelConfigError"]


class LabellingError(Exception):
    """Base class of the labelling package's errors."""


class InvalidEventError(LabellingError, ValueError):
    """A record that decodes but makes no sense (e.g. a rating outside its scale).

    Attributes:
        record: the record name (``Feedback``, ``Experience``).
        field: the offending field.
        reason: what is wrong with it.
    """

    def __init__(self, record: str, field: str, reason: str) -> None:
        self.record = record
        self.field = field
        self.reason = reason
        super().__init__(f"{record}.{field}: {reason}")


class RulesConfigError(LabellingError, ValueError):
    """A labelling rules file or mapping is malformed; the message names where."""


class ModelConfigError(LabellingError, ValueError):
    """An outcome model asked for with an unknown kind or a parameter outside its domain; the message names it."""
