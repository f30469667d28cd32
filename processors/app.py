"""The one Faust app of Agent Gym: ``faust -A agentgym.processors.app worker`` or ``agentgym processors run``.

:func:`create_app` builds the app from :class:`ProcessorSettings` and calls the
``register(app, settings)`` of each processor named in ``AGENTGYM_PROCESSORS``.
Importing this module builds nothing: :data:`app` is built on first access (PEP 562
module ``__getattr__``), which is what ``faust -A`` does. Messages are Avro (see
``schemas/``), so topics carry raw bytes and each processor decodes with
:class:`agentgym.schemas.AvroCodec`; undecodable input goes to the dead-letter topic,
never crashes a worker.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import faust

from agentgym.processors import labeller, sink
from agentgym.processors.datasets import processor as datasets
from agentgym.processors.experiments import processor as experiments
from agentgym.processors.otel import processor as otel
from agentgym.processors import replication, shutdown
from agentgym.processors.membership import (
    HEARTBEAT_INTERVAL_S, SESSION_TIMEOUT_S, claim_instance_id, faust_instance_id, web_host,
)
from agentgym.processors.producer_flush import drain_on_flush
from agentgym.processors.settings import KNOWN_PROCESSORS, ProcessorSettings
from agentgym.producers.kafka_security import aiokafka_security
from agentgym.schemas.topics import TOPICS

__all__ = ["REGISTRATIONS", "app", "create_app"]

# name in AGENTGYM_PROCESSORS -> its register(app, settings); called in this order
REGISTRATIONS: dict[str, Callable[[faust.App, ProcessorSettings], Any]] = {
    "sink": sink.register,
    "labeller": labeller.register,
    "datasets": datasets.register,
    "experiments": experiments.register,
    "otel": otel.register,
}
assert tuple(REGISTRATIONS) == KNOWN_PROCESSORS


def create_app(settings: ProcessorSettings | None = None) -> faust.App:
    """Builds the Faust app and registers the processors ``settings.processors`` names.

    Args:
        settings: the processors' settings (default: read from the environment now).
    """
    settings = settings if settings is not None else ProcessorSettings()
    enabled = settings.enabled  # unknown names fail here, naming the setting
    datadir = settings.faust_datadir or str(settings.home / "faust")
    os.makedirs(datadir, exist_ok=True)  # Faust creates its app dir, not the parents
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.bootstrap_servers.replace(',', ';kafka://')}",
        value_serializer="raw",
        key_serializer="raw",
        store=settings.faust_store,  # tables are changelog-backed either way
        topic_partitions=TOPICS["experiences"].partitions,  # co-partitioned with the trace topics
        topic_replication_factor=1,  # until the worker starts: then from the cluster's size (replication.install)
        consumer_auto_offset_reset="earliest",
        web_port=settings.faust_web_port,
        web_bind=settings.faust_web_bind,  # Faust's own default is every interface
        web_host=web_host(settings.faust_web_bind),
        datadir=datadir,
        broker_commit_interval=1.0,
        # static membership and short sessions: a worker restarted after a crash takes
        # its old place at once instead of waiting out the dead member's session. Faust's
        # assignor requires the rejoining member's web URL to be the one it left with, so
        # the URL is part of the id (a worker restarted on another port joins as new).
        consumer_group_instance_id=faust_instance_id(
            claim_instance_id(settings.app_id, settings.home, settings.worker_id),
            web_host(settings.faust_web_bind), settings.faust_web_port),
        broker_session_timeout=SESSION_TIMEOUT_S,
        broker_heartbeat_interval=HEARTBEAT_INTERVAL_S,
        broker_credentials=broker_credentials(settings),  # None: PLAINTEXT
    )
    drain_on_flush(app)  # at-least-once on a loaded machine too: see processors/producer_flush.py
    for name, register in REGISTRATIONS.items():
        if name in enabled:
            register(app, settings)
    replication.install(app, settings)
    shutdown.install(app, settings)  # SIGTERM stops the worker within seconds, broker or not
    return app


def broker_credentials(settings: ProcessorSettings) -> faust.SASLCredentials | faust.SSLCredentials | None:
    """Faust's ``broker_credentials`` for ``AGENTGYM_KAFKA_*`` (None for PLAINTEXT); aiokafka underneath."""
    if settings.kafka_security_protocol == "PLAINTEXT":
        return None
    conf = aiokafka_security(settings)
    if settings.kafka_security_protocol == "SSL":
        return faust.SSLCredentials(conf["ssl_context"])
    from faust.types.auth import SASLMechanism

    return faust.SASLCredentials(
        username=conf["sasl_plain_username"], password=conf["sasl_plain_password"],
        mechanism=SASLMechanism(conf["sasl_mechanism"]), ssl_context=conf.get("ssl_context"),  # an SSL context: SASL_SSL
    )


_app: faust.App | None = None


def __getattr__(name: str) -> Any:
    # ``app`` is built on first access (``faust -A agentgym.processors.app`` asks for it)
    global _app
    if name == "app":
        if _app is None:
            _app = create_app()
        return _app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
