"""The thin producer SDK agents import: ``from producers import AgentGym``."""

import logging

# A library does not configure logging: the agent's own handlers decide what shows.
logging.getLogger("agentgym").addHandler(logging.NullHandler())

from producers.assignment import Assignment
from producers.client import SDK_VERSION, AgentGym
from producers.exceptions import ConfigError, InvalidEventError
from producers.run import Run, Step
from producers.settings import ProducerSettings

__all__ = ["AgentGym", "Assignment", "ProducerSettings", "Run", "Step", "InvalidEventError", "ConfigError", "SDK_VERSION"]
