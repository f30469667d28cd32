"""Expiry of dataset and model files by each tenant's retention (docs/privacy.md, Retention).

* a dataset's directory (manifest and shards) is deleted once ``created_ms`` + the tenant's
  ``datasets_days`` has passed;
* a model's adapter directory is deleted once ``created_ms`` + the tenant's ``models_days``
  has passed, unless the model is its agent's ``champion`` or a ``candidate`` in an
  experiment (what agents serve is never pulled from under them). Its registry entry stays,
  with its metrics, for the lineage; only the weights go.

Only paths inside the configured dataset and model stores are ever deleted. The trainer
service (``agentgym trainer run``) runs :class:`FileRetentionLoop` every
``AGENTGYM_RETENTION_INTERVAL_S``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from agentgym.processors.datasets.store import DatasetStore
from agentgym.processors.retention import Retention, RetentionSettings, tenant_retentions
from agentgym.producers.kafka_security import librdkafka_security
from agentgym.producers.records import read_topic
from agentgym.trainers.registry import ModelRegistry, ModelVersion

__all__ = ["Expired", "expire_datasets", "expire_models", "expire_files", "FileRetentionLoop"]

log = logging.getLogger(__name__)

_DAY_MS = 86_400_000
_KEPT_STATUSES = ("champion", "candidate")


@dataclass
class Expired:
    """What one pass deleted."""

    datasets: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)


def _days(tenants: Mapping[str, Retention], defaults: Retention, tenant: str, kind: str) -> int:
    days = tenants.get(tenant, Retention()).over(defaults).days(kind)
    assert days is not None
    return days


def expire_datasets(store_url: str, tenants: Mapping[str, Retention], defaults: Retention,
                    now_ms: int | None = None) -> list[str]:
    """Deletes the datasets of ``store_url`` past their tenant's retention; returns their ids."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    store = DatasetStore(store_url)
    gone = []
    for m in store.list():
        if m.created_ms + _days(tenants, defaults, m.tenant_id, "datasets") * _DAY_MS > now_ms:
            continue
        store.fs.rm(f"{store.root}/{m.dataset_id}", recursive=True)
        gone.append(m.dataset_id)
        log.info("retention: dataset %s of tenant %s expired; files deleted", m.dataset_id, m.tenant_id)
    return gone


def expire_models(store_url: str, versions: Iterable[ModelVersion], tenants: Mapping[str, Retention],
                  defaults: Retention, now_ms: int | None = None) -> list[str]:
    """Deletes the adapter directories (inside ``store_url``) of expired models; returns their versions."""
    import fsspec

    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    fs, root = fsspec.core.url_to_fs(store_url)
    root = root.rstrip("/")
    gone = []
    for mv in versions:
        if mv.status in _KEPT_STATUSES or not mv.adapter_uri:
            continue
        if mv.created_ms + _days(tenants, defaults, mv.tenant_id, "models") * _DAY_MS > now_ms:
            continue
        afs, path = fsspec.core.url_to_fs(mv.adapter_uri)
        path = path.rstrip("/")
        if type(afs) is not type(fs) or not path.startswith(root + "/") or ".." in path.split("/"):
            continue  # not ours to delete (a path outside the model store)
        if not fs.exists(path):
            continue
        fs.rm(path, recursive=True)
        gone.append(mv.model_version)
        log.info("retention: model %s of tenant %s (%s) expired; adapter %s deleted", mv.model_version, mv.tenant_id,
                 mv.status, mv.adapter_uri)
    return gone


def expire_files(settings: RetentionSettings, model_store: str, now_ms: int | None = None) -> Expired:
    """One pass over the dataset store (``AGENTGYM_DATASET_STORE``) and ``model_store`` with the
    tenants' retention read from ``gym-tenants-v1`` and the models from the registry."""
    plans = read_topic(settings.bootstrap_servers, "tenants", security=librdkafka_security(settings))
    tenants = tenant_retentions(plans)
    defaults = settings.defaults
    out = Expired()
    out.datasets = expire_datasets(settings.dataset_store, tenants, defaults, now_ms)
    registry = ModelRegistry(settings.bootstrap_servers)
    try:
        out.models = expire_models(model_store, registry.versions(), tenants, defaults, now_ms)
    finally:
        registry.close()
    return out


class FileRetentionLoop:
    """:func:`expire_files` every ``retention_interval_s`` in a thread until ``stop`` is set; a failed
    pass is logged and retried at the next."""

    def __init__(self, settings: RetentionSettings, model_store: str, stop: threading.Event) -> None:
        self.settings, self.model_store, self.stop = settings, model_store, stop
        self._thread = threading.Thread(target=self._run, name="agentgym-file-retention", daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                expire_files(self.settings, self.model_store)
            except Exception:
                log.exception("retention: file expiry failed; retrying in %.0f s", self.settings.retention_interval_s)
            self.stop.wait(self.settings.retention_interval_s)

    def start(self) -> "FileRetentionLoop":
        self._thread.start()
        return self

    def join(self, timeout_s: float = 30.0) -> None:
        self._thread.join(timeout_s)
