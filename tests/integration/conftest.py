"""Fixtures shared by the integration tests (the broker fixtures are in ``tests/conftest.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agentgym.trainers.registry import ModelRegistry


@pytest.fixture
def registry(bootstrap: str) -> Iterator[ModelRegistry]:
    """The model registry on the session's broker."""
    r = ModelRegistry(bootstrap)
    yield r
    r.close()
