"""The replication of the topics a Faust worker creates itself, from the cluster's size.

Faust creates its own topics (tables' changelogs, repartition and leader topics) with
``app.conf.topic_replication_factor``. A worker sets it when it starts, before the app
declares any topic, to what :func:`agentgym.producers.admin.cluster_replication` says for
the brokers the cluster has then: 1 on one broker, 3 on three or more. The topics'
``min.insync.replicas`` is the brokers' default (``agentgym kafka start --brokers 3`` and
``compose.yaml`` set 2). Topics Agent Gym creates through the admin client get both from
:func:`agentgym.producers.admin.create_topics`.
"""

from __future__ import annotations

import logging
from typing import Any

from agentgym.producers.admin import cluster_replication
from agentgym.producers.exceptions import TopicUnavailableError
from agentgym.producers.kafka_security import librdkafka_security

__all__ = ["install"]

log = logging.getLogger("agentgym.processors")


def install(app: Any, settings: Any, timeout_s: float = 30.0) -> None:
    """On ``faust worker`` start-up (``on_worker_init``, before the app starts), sets the
    replication of the topics Faust will create from the size of the cluster.

    A cluster that does not answer within ``timeout_s`` leaves Faust's setting as it is (1),
    with a warning: the worker cannot create topics before the cluster answers anyway.
    """

    def _on_worker_init(sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        try:
            rf, min_isr = cluster_replication(settings.bootstrap_servers, timeout_s,
                                               security=librdkafka_security(settings))
        except TopicUnavailableError as exc:
            log.warning("replication: %s; Faust's topics keep replication factor %s", exc,
                        app.conf.topic_replication_factor)
            return
        app.conf.topic_replication_factor = rf
        log.info("replication: Faust's topics get %d replica(s) (min.insync.replicas %d from the brokers)", rf, min_isr)

    app.on_worker_init.connect(_on_worker_init)
