"""Agent Gym, under one import name.

The SDK agents import is ``from agentgym import AgentGym``; the rest of the platform
lives in ``agentgym.schemas``, ``agentgym.producers``, ``agentgym.processors``,
``agentgym.trainers``, ``agentgym.gateway`` and ``agentgym.ops`` (the repository's
top-level folders, mapped under this name by ``pyproject.toml``).

The SDK's names are imported on first use, so ``import agentgym.processors`` does not
pay for the producer.
"""

from __future__ import annotations

from typing import Any

__all__ = ["AgentGym", "Assignment", "ConfigError", "InvalidEventError", "ProducerSettings", "Run", "SDK_VERSION", "Step"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from agentgym import producers

        return getattr(producers, name)
    raise AttributeError(f"module 'agentgym' has no attribute {name!r}")
