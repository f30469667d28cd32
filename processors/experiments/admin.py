"""Creating and changing experiments: records on the compacted ``gym-experiments-v1`` topic.

Used by ``agentgym experiments ...`` and by the processor's decisions. Reads go
through an :class:`~agentgym.producers.follower.ExperimentFollower` (the topic read to its
end), writes go through the project's one acknowledged producer
(:class:`~agentgym.producers.records.RecordProducer`): idempotent, keyed by
``experiment_id``, waiting for the broker's acknowledgement. The ClickHouse sink
materialises the same records into the ``experiments`` table.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from agentgym.processors.experiments.config import ExperimentConfig
from agentgym.processors.experiments.exceptions import ExperimentConfigError, ExperimentNotFoundError, PublishError
from agentgym.producers.exceptions import DeliveryError
from agentgym.producers.follower import ExperimentFollower
from agentgym.producers.records import RecordProducer
from agentgym.schemas.topics import TOPICS

__all__ = ["ExperimentAdmin"]

log = logging.getLogger("agentgym.experiments")


class ExperimentAdmin:
    """Reads and writes experiment configurations.

    Args:
        bootstrap_servers: Kafka.
        timeout_s: how long reads wait for the topic and writes for the acknowledgement.
        follower: an already running follower to read from (the processor's); None
            starts one on first use.
    """

    def __init__(self, bootstrap_servers: str, *, timeout_s: float = 15.0, follower: ExperimentFollower | None = None) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.timeout_s = timeout_s
        self.topic = TOPICS["experiments"].name
        self._follower = follower
        self._own_follower = follower is None
        self._producer: RecordProducer | None = None

    # -- reads --------------------------------------------------------------------
    def _reader(self) -> ExperimentFollower:
        if self._follower is None:
            self._follower = ExperimentFollower(self.bootstrap_servers).start()
        if not self._follower.wait_ready(self.timeout_s):
            raise PublishError(f"could not read {self.topic} within {self.timeout_s:.0f}s ({self._follower.last_error or 'no answer'})")
        return self._follower

    def load_all(self) -> dict[str, ExperimentConfig]:
        """Every experiment's latest configuration, by id."""
        return {k: ExperimentConfig.from_record(r) for k, r in self._reader().configs().items()}

    def get(self, experiment_id: str) -> ExperimentConfig:
        """The latest configuration of ``experiment_id``; raises ExperimentNotFoundError."""
        record = self._reader().get(experiment_id)
        if record is None:
            raise ExperimentNotFoundError(f"no experiment {experiment_id!r} on {self.topic}")
        return ExperimentConfig.from_record(record)

    # -- writes -------------------------------------------------------------------
    def publish(self, config: ExperimentConfig) -> ExperimentConfig:
        """Validates ``config`` and writes it; returns it once the broker acknowledged it.

        Raises:
            ExperimentConfigError: the configuration is invalid (naming the field).
            PublishError: Kafka did not acknowledge the record within ``timeout_s``, or refused it.
        """
        config.validate()
        if self._producer is None:
            self._producer = RecordProducer(self.bootstrap_servers, timeout_s=self.timeout_s, linger_ms=0)
        try:
            self._producer.send("experiments", config.to_record())
        except DeliveryError as exc:
            raise PublishError(f"{self.topic}: configuration v{config.config_version} of {config.experiment_id} "
                               f"not acknowledged ({exc})") from exc
        log.info("experiments: %s v%d %s by %s", config.experiment_id, config.config_version, config.status, config.updated_by)
        return config

    def create(self, config: ExperimentConfig) -> ExperimentConfig:
        """Writes a new experiment; raises ExperimentConfigError if the id exists."""
        if self._reader().get(config.experiment_id) is not None:
            raise ExperimentConfigError("experiment_id", f"experiment {config.experiment_id!r} exists already")
        return self.publish(config)

    def change(self, experiment_id: str, change: Callable[[ExperimentConfig], ExperimentConfig]) -> ExperimentConfig:
        """Applies ``change`` (e.g. ``lambda c: c.pause("ops")``) to the latest version and writes the result."""
        return self.publish(change(self.get(experiment_id)))

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close()
        if self._own_follower and self._follower is not None:
            self._follower.close()

    def __enter__(self) -> "ExperimentAdmin":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
