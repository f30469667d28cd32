"""A training job's complete description: what ``train_func`` receives on every worker.

A :class:`TrainJob` is plain data (pydantic), so it travels to Ray workers as a dict
and is stored with the job record and, as ``hyperparameters``, in the registry.

A job either trains a fresh LoRA adapter on its base model, or continues training an
existing adapter (``init_adapter``: the agent's champion's, or one named by hand). The
new adapter is then still an adapter of the same base (serving: base + adapter), and its
LoRA shape (rank, alpha, dropout, target modules) is the initial adapter's: when the
job's settings say otherwise, the adapter's ``adapter_config.json`` wins (and a warning
says so), so the recorded hyperparameters are the ones trained.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import time
from datetime import datetime, timezone
from typing import Literal

from pydantic import BaseModel, Field

from agentgym.processors.datasets.store import Manifest
from agentgym.trainers.exceptions import DatasetKindError, InitAdapterError
from agentgym.trainers.fsutil import read_json
from agentgym.trainers.modeling import resolve_base
from agentgym.trainers.settings import TrainSettings
from agentgym.schemas.ids import validate_id

__all__ = ["TrainJob", "new_job_id", "model_version_for", "adapter_lora_shape", "HYPERPARAMETERS", "INIT_FROM"]

log = logging.getLogger("agentgym.train")

# the fields recorded as a model version's hyperparameters
HYPERPARAMETERS = (
    "method", "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "learning_rate", "epochs", "max_steps",
    "batch_size", "grad_accum", "max_length", "packing", "bf16", "dpo_beta", "seed", "num_workers", "use_gpu",
    "init_from", "init_adapter",
)

INIT_FROM = ("base", "champion", "adapter")
"""What a job's weights start from: a fresh LoRA on the base, the champion's adapter, or an adapter named by hand."""


def adapter_lora_shape(adapter_uri: str) -> dict[str, object]:
    """The LoRA shape of the adapter at ``adapter_uri`` (any fsspec URL), as :class:`TrainJob` fields.

    Raises:
        InitAdapterError: no ``adapter_config.json`` there, or not a LoRA adapter.
    """
    try:
        cfg = read_json(f"{adapter_uri.rstrip('/')}/adapter_config.json")
    except (OSError, ValueError) as exc:
        raise InitAdapterError(f"init_adapter {adapter_uri}: cannot read adapter_config.json: {exc}") from exc
    if cfg is None:
        raise InitAdapterError(f"init_adapter {adapter_uri}: no adapter_config.json there (not a PEFT adapter directory)")
    if cfg.get("peft_type") != "LORA":
        raise InitAdapterError(f"init_adapter {adapter_uri}: a {cfg.get('peft_type')} adapter; only LoRA adapters can be "
                               "trained further")
    targets = cfg.get("target_modules")
    if isinstance(targets, (list, tuple, set)):
        targets = ",".join(sorted(str(t) for t in targets))
    return {"lora_r": int(cfg["r"]), "lora_alpha": int(cfg["lora_alpha"]),
            "lora_dropout": float(cfg.get("lora_dropout") or 0.0), "lora_target_modules": str(targets or "all-linear")}


def _slug(text: str, n: int = 24) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:n] or "x"


def new_job_id(now_ms: int | None = None) -> str:
    """``job-<UTC time>-<random>``."""
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    return f"job-{datetime.fromtimestamp(now / 1000, tz=timezone.utc).strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(3)}"


def model_version_for(agent_id: str, job_id: str) -> str:
    """The model version a job registers: ``<agent>-ft-<job time>-<hash>``."""
    digest = hashlib.sha256(job_id.encode()).hexdigest()[:6]
    stamp = job_id.split("-")[1] if job_id.count("-") >= 2 else "x"
    return f"{_slug(agent_id)}-ft-{stamp.lower()}-{digest}"


class TrainJob(BaseModel):
    """Everything a training run needs; also what ``train_func(config)`` receives as ``config``."""

    job_id: str
    model_version: str
    tenant_id: str
    agent_id: str
    dataset_id: str
    dataset_uri: str
    kind: Literal["sft", "preference"]
    method: Literal["sft", "dpo"]
    base_model: str = Field(description="as the user named it: tiny:llama, a hub id or a path")
    base_path: str = Field(description="what from_pretrained loads (materialised tiny model, path or hub id)")
    model_store: str
    storage_path: str
    num_workers: int = 1
    use_gpu: bool = False
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: str = "all-linear"
    learning_rate: float = 2e-4
    epochs: float = 1.0
    max_steps: int = -1
    batch_size: int = 8
    grad_accum: int = 1
    max_length: int = 2048
    packing: Literal["auto", "yes", "no"] = "auto"
    bf16: Literal["auto", "yes", "no"] = "auto"
    gradient_checkpointing: bool = False
    torch_compile: bool = False
    save_steps: int = 100
    logging_steps: int = 10
    dpo_beta: float = 0.1
    seed: int = 42
    max_failures: int = 1
    init_adapter: str | None = Field(
        None, description="an adapter (any fsspec URL) whose weights training starts from, as a trainable PeftModel; "
        "None: a fresh LoRA on the base")
    init_from: Literal["base", "champion", "adapter"] = Field(
        "base", description="what init_adapter is: the champion's adapter, or one named by hand (base: none)")

    @property
    def adapter_uri(self) -> str:
        """Where the finished adapter is stored: ``<model_store>/<model_version>``."""
        return f"{self.model_store.rstrip('/')}/{validate_id(self.model_version, 'model_version')}"

    def hyperparameters(self) -> dict[str, str]:
        """The registry's ``hyperparameters`` map (strings)."""
        d = self.model_dump()
        return {k: "" if d[k] is None else str(d[k]) for k in HYPERPARAMETERS}

    @classmethod
    def for_dataset(
        cls,
        manifest: Manifest,
        base_model: str,
        settings: TrainSettings | None = None,
        *,
        job_id: str | None = None,
        use_gpu: bool | None = None,
        init_adapter: str | None = None,
        init_from: str | None = None,
        **overrides: object,
    ) -> "TrainJob":
        """A job on ``manifest`` with ``settings`` (overridden field by field by ``overrides``).

        ``use_gpu`` None follows ``train_use_gpu`` (``auto`` means no here; the launcher
        resolves ``auto`` against the cluster's resources).

        ``init_adapter``: train that adapter further instead of a fresh LoRA (``init_from``
        says what it is: ``champion`` or ``adapter``, the default). Its LoRA shape replaces
        the settings' (and ``overrides'``) ``lora_*`` fields, with a warning when they differ.

        Raises:
            DatasetKindError: the dataset's kind does not fit the method.
            InitAdapterError: ``init_adapter`` is not a readable LoRA adapter.
        """
        s = settings or TrainSettings()
        if manifest.kind not in ("sft", "preference"):
            raise DatasetKindError(f"dataset {manifest.dataset_id} is a {manifest.kind} dataset; training needs sft or preference")
        method = s.train_method if s.train_method != "auto" else ("dpo" if manifest.kind == "preference" else "sft")
        if method == "dpo" and manifest.kind != "preference":
            raise DatasetKindError(f"DPO needs a preference dataset; {manifest.dataset_id} is {manifest.kind}")
        if method == "sft" and manifest.kind != "sft":
            raise DatasetKindError(f"SFT needs an sft dataset; {manifest.dataset_id} is {manifest.kind}")
        job_id = job_id or new_job_id()
        fields: dict[str, object] = {
            "job_id": job_id,
            "model_version": model_version_for(manifest.agent_id, job_id),
            "tenant_id": manifest.tenant_id,
            "agent_id": manifest.agent_id,
            "dataset_id": manifest.dataset_id,
            "dataset_uri": manifest.uri,
            "kind": manifest.kind,
            "method": method,
            "base_model": base_model,
            "base_path": resolve_base(base_model, f"{s.model_store.rstrip('/')}/base" if "://" not in s.model_store else None),
            "model_store": s.model_store,
            "storage_path": s.train_checkpoint_store,
            "num_workers": s.train_num_workers, "placement_strategy": s.train_placement_strategy,
            "use_gpu": use_gpu if use_gpu is not None else s.train_use_gpu == "yes",
            "lora_r": s.train_lora_r, "lora_alpha": s.train_lora_alpha, "lora_dropout": s.train_lora_dropout,
            "lora_target_modules": s.train_lora_target_modules, "learning_rate": s.train_learning_rate,
            "epochs": s.train_epochs, "max_steps": s.train_max_steps, "batch_size": s.train_batch_size,
            "grad_accum": s.train_grad_accum, "max_length": s.train_max_length, "packing": s.train_packing,
            "bf16": s.train_bf16, "gradient_checkpointing": s.train_gradient_checkpointing,
            "torch_compile": s.train_torch_compile, "save_steps": s.train_save_steps,
            "logging_steps": s.train_logging_steps, "dpo_beta": s.train_dpo_beta, "seed": s.train_seed,
            "max_failures": s.train_max_failures,
        }
        fields.update(overrides)
        if init_adapter:
            shape = adapter_lora_shape(init_adapter)
            differ = {k: (fields[k], v) for k, v in shape.items() if str(fields[k]) != str(v)}
            if differ:
                log.warning("train: %s starts from %s, whose LoRA shape wins over the job's settings: %s", job_id,
                            init_adapter, ", ".join(f"{k} {a} -> {b}" for k, (a, b) in sorted(differ.items())))
            fields.update(shape, init_adapter=init_adapter, init_from=init_from or "adapter")
        else:
            fields.update(init_adapter=None, init_from="base")
        return cls.model_validate(fields)
