"""Errors of the dataset builder and the dataset store."""

from __future__ import annotations

__all__ = ["DatasetError", "DatasetNotFoundError", "ChecksumMismatchError", "ScrubberConfigError"]


class DatasetError(Exception):
    """A dataset could not be built, written or read."""


class DatasetNotFoundError(DatasetError):
    """No dataset with that id (or at that URI) in the dataset store."""


class ChecksumMismatchError(DatasetError):
    """A dataset's shards do not hash to the checksum its manifest records."""


class ScrubberConfigError(DatasetError, ValueError):
    """An unknown built-in scrubber name, or an extra scrubber whose regex does not compile."""
