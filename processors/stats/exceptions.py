"""Errors of the statistics package.

Only *misuse* raises (an alpha outside (0, 1), a negative count, statistics of
different kinds added together). Degenerate *data* — an empty arm, zero variance,
a control mean of zero for a relative difference — never raises: the functions
return a result whose ``reason`` says why no inference was made
(:class:`agentgym.processors.stats.results.Reason`), so a stream processor never stops on it.
"""

from __future__ import annotations

__all__ = ["StatsError", "InvalidParameterError"]


class StatsError(ValueError):
    """Base class of the statistics package's errors."""


class InvalidParameterError(StatsError):
    """A parameter is outside its domain (the message names it and the domain)."""
