"""The thin producer SDK agents import: ``from producers import AgentGym``."""

import logging

# A library does not configure logging: the agent's own handlers decide what shows.
logging.getLogger("agentgym").addHandler(logging.NullHandler())

from agentgym.producers.ratelog import RateLimitFilter  # noqa: E402

# librdkafka (relayed to "agentgym.kafka" by every client here) repeats the same line
# many times a second while a broker is away: at most one per kind per 30 s.
if not any(isinstance(f, RateLimitFilter) for f in logging.getLogger("agentgym.kafka").filters):
    logging.getLogger("agentgym.kafka").addFilter(RateLimitFilter())

from agentgym.producers.assignment import Assignment
from agentgym.producers.client import SDK_VERSION, AgentGym
from agentgym.producers.exceptions import ConfigError, InvalidEventError
from agentgym.producers.run import Run, Step
from agentgym.producers.settings import ProducerSettings

__all__ = ["AgentGym", "Assignment", "ProducerSettings", "Run", "Step", "InvalidEventError", "ConfigError", "SDK_VERSION"]
