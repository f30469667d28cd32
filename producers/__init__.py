"""The thin producer SDK agents import: ``from producers import AgentGym``."""

import logging

# A library does not configure logging: the agent's own handlers decide what shows.
logging.getLogger("agentgym").addHandler(logging.NullHandler())

from agentgym.producers.assignment import Assignment
from agentgym.producers.client import SDK_VERSION, AgentGym
from agentgym.producers.exceptions import ConfigError, InvalidEventError
from agentgym.producers.run import Run, Step
from agentgym.producers.settings import ProducerSettings

__all__ = ["AgentGym", "Assignment", "ProducerSettings", "Run", "Step", "InvalidEventError", "ConfigError", "SDK_VERSION"]
