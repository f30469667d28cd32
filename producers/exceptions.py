"""Errors of the producers package.

The agent-facing SDK (:class:`~agentgym.producers.client.AgentGym`) raises only on misuse
(:class:`InvalidEventError`, :class:`ConfigError`): Kafka trouble never raises there. The
pipeline's acknowledged producer and readers (:mod:`agentgym.producers.records`), topic
administration and the experiment follower raise :class:`BrokerError` and its subclasses
when Kafka does not do what was asked in time.
"""

from agentgym.schemas.exceptions import SchemaValidationError

__all__ = [
    "InvalidEventError",
    "ConfigError",
    "BrokerError",
    "DeliveryError",
    "TopicUnavailableError",
    "ReadTimeoutError",
]


class InvalidEventError(SchemaValidationError):
    """An event argument is missing, of the wrong type or out of range; names the field."""


class ConfigError(ValueError):
    """The client's configuration is invalid or contradicts the SDK's guarantees."""


class BrokerError(RuntimeError):
    """Kafka did not do what was asked in time (acknowledge a record, show a topic, serve a read).

    A ``RuntimeError`` so that callers written before the typed errors keep working.
    """


class DeliveryError(BrokerError):
    """Kafka did not acknowledge a record within the timeout, or refused it."""


class TopicUnavailableError(BrokerError):
    """A topic is missing from the broker's metadata, or reports an error there."""


class ReadTimeoutError(BrokerError):
    """A topic could not be read to its end within the timeout."""
