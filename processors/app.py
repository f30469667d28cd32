"""The one Faust app of Agent Gym: ``faust -A agentgym.processors.app worker`` or ``agentgym processors run``.

Processors register themselves on :data:`app` when their module is imported at the
bottom of this file. Messages are Avro (see ``schemas/``), so topics carry raw bytes
and each processor decodes with :class:`agentgym.schemas.AvroCodec`; undecodable input goes
to the dead-letter topic, never crashes a worker.
"""

from __future__ import annotations

import os

import faust

from agentgym.processors.settings import ProcessorSettings
from agentgym.schemas.topics import TOPICS

__all__ = ["app", "settings", "topic"]

settings = ProcessorSettings()
_datadir = settings.faust_datadir or os.path.join(os.environ.get("AGENTGYM_HOME", os.path.expanduser("~/.agentgym")), "faust")
os.makedirs(_datadir, exist_ok=True)  # Faust creates its app dir, not the parents

app = faust.App(
    settings.app_id,
    broker=f"kafka://{settings.bootstrap_servers.replace(',', ';kafka://')}",
    value_serializer="raw",
    key_serializer="raw",
    store=settings.faust_store,  # tables are changelog-backed either way
    topic_partitions=TOPICS["experiences"].partitions,  # co-partitioned with the trace topics
    topic_replication_factor=1,
    consumer_auto_offset_reset="earliest",
    web_port=settings.faust_web_port,
    web_host="127.0.0.1",
    datadir=_datadir,
    broker_commit_interval=1.0,
)


def topic(base: str) -> faust.TopicT:
    """The Faust topic of an Agent Gym topic spec (raw bytes; decode with the codec)."""
    spec = TOPICS[base]
    return app.topic(spec.name, key_type=bytes, value_type=bytes, partitions=spec.partitions, internal=False)


# Processors register on import (keep at the bottom); AGENTGYM_PROCESSORS picks them.
_enabled = settings.enabled
if "sink" in _enabled:
    from agentgym.processors import sink as _sink  # noqa: E402

    _sink.register(app, settings)
if "labeller" in _enabled:
    from agentgym.processors import labeller as _labeller  # noqa: E402,F401
if "datasets" in _enabled:
    from agentgym.processors.datasets import processor as _datasets  # noqa: E402

    _datasets.register(app, settings)
if "experiments" in _enabled:
    from agentgym.processors.experiments import processor as _experiments  # noqa: E402,F401
