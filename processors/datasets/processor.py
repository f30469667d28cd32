"""The dataset builder in the Faust app: a leader-only timer around :class:`agentgym.processors.datasets.builder.DatasetBuilder`.

Enabled with ``AGENTGYM_PROCESSORS`` containing ``datasets``. Every
``AGENTGYM_DATASET_INTERVAL_S`` the leader worker asks ClickHouse which tenants and
agents have a finished dataset (size or age threshold), builds them in a thread (the
event loop keeps serving the other agents), writes them to the dataset store and
announces each on ``gym-datasets-v1``, from where the sink records it in ClickHouse
and the trainer service picks it up. Why the builder reads ClickHouse rather than the
trace topics is explained in :mod:`agentgym.processors.datasets.builder`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from agentgym.processors.datasets.builder import DatasetBuilder
from agentgym.processors.deletions import DeletionLog
from agentgym.processors.datasets.settings import DatasetSettings
from agentgym.processors.datasets.store import Manifest
from agentgym.processors.store import StoreError, StoreSettings, open_reader
from agentgym.processors.store.chdb_store import ChdbStore, directory_owner, open_paths, parse_chdb_url, read_port_file
from agentgym.processors.store.server_store import ServerStore
from agentgym.processors.store.base import Store
from agentgym.producers.records import RecordProducer

__all__ = ["PROCESSOR", "register", "open_shared_reader"]

log = logging.getLogger("agentgym.datasets")

PROCESSOR = "datasets"


def register(app: Any, processor_settings: Any) -> None:
    """Registers the builder's timer on ``app`` (the one Faust app)."""
    settings = DatasetSettings(bootstrap_servers=processor_settings.bootstrap_servers)
    state: dict[str, Any] = {}

    def _builder() -> DatasetBuilder | None:
        builder = state.get("builder")
        if builder is not None:
            return builder

        try:
            store = open_shared_reader()
        except StoreError as exc:  # nothing stored yet, or the owner's read interface is not up yet
            log.info("datasets: the store is not readable yet (%s); next check in %.0fs", exc, settings.dataset_interval_s)
            return None
        if "producer" not in state:  # made once: a builder is made again after its store failed
            state["producer"] = RecordProducer(settings.bootstrap_servers)
            state["deletions"] = DeletionLog(settings.bootstrap_servers)  # deleted users' runs never enter a dataset
        producer = state["producer"]

        def announce(manifest: Manifest) -> None:
            producer.send("datasets", manifest.announcement())

        builder = state["builder"] = DatasetBuilder(store, settings, announce=announce, deletions=state["deletions"])
        return builder

    def _check() -> int:
        builder = _builder()
        if builder is None:
            return 0
        try:
            return len(builder.run_once())
        except StoreError:
            # e.g. the embedded store's owner died and another worker took it over, on another
            # port: the next check opens the store again, wherever it is served now
            state.pop("builder", None)
            builder.store.close()
            raise

    @app.timer(settings.dataset_interval_s, on_leader=True, name="datasets-build")
    async def build_datasets() -> None:
        try:
            n = await asyncio.get_running_loop().run_in_executor(None, _check)
        except Exception:  # a failed check is retried at the next tick; the worker stays up
            log.exception("datasets: check failed")
            return
        if n:
            log.info("datasets: %d dataset(s) finished", n)


def open_shared_reader(url: str | None = None) -> Store:
    """The store for the builder: read through the process that owns an embedded store.

    Unlike :func:`open_reader`, it never takes a free embedded directory itself (unless this
    process already has it open, i.e. its own sink does): with several workers the builder runs
    on the leader, and a leader that took the directory while its owner was being replaced would
    keep every sink out of it. A free directory is a :class:`StoreError` (checked again later).
    """
    url = url or StoreSettings().clickhouse_url
    if not url.startswith("chdb://"):
        return open_reader(url)
    path = parse_chdb_url(url)
    mine = str(path) in open_paths()
    port = read_port_file(path)
    if mine and port is not None:
        # this worker's sink owns the store: read through its HTTP interface too, not a second
        # engine session in this process (one left open when the sink closed the engine
        # crashed the worker at exit)
        return ServerStore(f"http://127.0.0.1:{port}", StoreSettings().clickhouse_database, create_database=False,
                           connect_timeout_s=3.0)
    if not mine and directory_owner(path) is None:
        raise StoreError(f"no worker owns the embedded ClickHouse at {path} now (its sink is starting or being taken over)")
    store = open_reader(url)
    if isinstance(store, ChdbStore) and not mine:  # the owner went between the check and the open
        store.close()
        raise StoreError(f"no worker owns the embedded ClickHouse at {path} now (its sink is starting or being taken over)")
    return store
