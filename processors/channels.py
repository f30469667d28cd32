"""The Faust channels of Agent Gym's topics, declared on a given app."""

from __future__ import annotations

import faust

from agentgym.schemas.topics import TOPICS

__all__ = ["topic"]


def topic(app: faust.App, base: str) -> faust.TopicT:
    """The Faust topic of an Agent Gym topic spec on ``app`` (raw bytes; decode with the codec)."""
    spec = TOPICS[base]
    return app.topic(spec.name, key_type=bytes, value_type=bytes, partitions=spec.partitions, internal=False)
