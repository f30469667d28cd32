"""Errors of the statistics package.

Only *misuse* raises (an alpha outside (0, 1), a negative count, statistics of
different kinds added together). Degenerate *data* — an empty arm, zero variance,
a control mean of zero for a relative difference — never raises: the functions
return a result whose ``reason`` says why no inference was made
(:class:`agentgym.processors.stats.results.Reason`), so a stream processor never stops on it.
"""

from __future__ import annotations

__all__ = ["StatsError", "InvalidParameterError", "UnknownArmError"]


class StatsError(ValueError):
    """Base class of the statistics package's errors."""


class InvalidParameterError(StatsError):
    """A parameter is outside its domain (the message names it and the domain)."""


class UnknownArmError(StatsError, KeyError):
    """An arm (variant) named as the control has no statistic (a ``KeyError`` too, for lookups written before it)."""

    def __str__(self) -> str:  # KeyError's own str() would quote the message
        return str(self.args[0]) if self.args else "unknown arm"
