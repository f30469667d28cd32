"""Settings of the fine-tuning pipeline: one class per component.

* :class:`TrainSettings`: a training job (``agentgym train``, and the jobs the trainer
  service starts): Ray scaling, LoRA and optimisation hyperparameters, where adapters
  and checkpoints go.
* :class:`GateSettings`: the validation gate and the A/B experiment a candidate gets.
* :class:`TrainerServiceSettings`: the trainer service (``agentgym trainer run``): its
  consumer group, its policy (minimum size, cool-down), its job records, and the
  promotion of experiment winners in the registry.

Precedence everywhere: argument, then environment (``AGENTGYM_*``), then default.
Every field is documented in ``docs/configuration.md``. The dataset builder's settings are
:class:`agentgym.processors.datasets.settings.DatasetSettings` (dataset building is stream processing).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "TrainSettings",
    "GateSettings",
    "TrainerServiceSettings",
    "default_home",
]

def default_home() -> Path:
    """``~/.agentgym``: where the local stack keeps its state."""
    return Path.home() / ".agentgym"


def _under_home(home: Path, name: str) -> str:
    return str(home.expanduser().resolve() / name)


class TrainSettings(BaseSettings):
    """A training job: Ray scaling, LoRA, optimisation, and where its outputs go."""

    model_config = SettingsConfigDict(env_prefix="AGENTGYM_", extra="ignore")

    home: Path = Field(default_factory=default_home, description="state of the local stack")
    dataset_store: str = Field("", description="fsspec URL or path of the dataset store (default <home>/datasets)")
    model_store: str = Field("", description="fsspec URL or path where adapters are stored (default <home>/models)")
    train_checkpoint_store: str = Field("", description="Ray Train storage_path for checkpoints (default <home>/ray-runs)")
    train_ray_num_cpus: int | None = Field(None, ge=1, description="CPUs of a local ray.init() (None: all)")
    train_num_workers: int = Field(1, ge=1, description="Ray Train workers (one per GPU)")
    train_use_gpu: Literal["auto", "yes", "no"] = Field("auto", description="auto: GPUs when the cluster has them")
    train_method: Literal["auto", "sft", "dpo"] = Field("auto", description="auto: SFT for sft datasets, DPO for preference")
    train_lora_r: int = Field(16, ge=1)
    train_lora_alpha: int = Field(32, ge=1)
    train_lora_dropout: float = Field(0.05, ge=0, lt=1)
    train_lora_target_modules: str = Field("all-linear", description="PEFT target_modules: all-linear or a comma list")
    train_learning_rate: float = Field(2e-4, gt=0)
    train_epochs: float = Field(1.0, gt=0)
    train_max_steps: int = Field(-1, description="stop after this many optimiser steps (-1: epochs decide)")
    train_batch_size: int = Field(8, ge=1, description="sequences per worker per step")
    train_grad_accum: int = Field(1, ge=1)
    train_max_length: int = Field(2048, ge=8, description="tokens per sequence (and per packed row)")
    train_packing: Literal["auto", "yes", "no"] = Field("auto", description="auto: pack on GPU only")
    train_bf16: Literal["auto", "yes", "no"] = Field("auto", description="auto: bf16 where the GPU supports it")
    train_gradient_checkpointing: bool = Field(False)
    train_torch_compile: bool = Field(False)
    train_save_steps: int = Field(100, ge=1, description="checkpoint every this many steps")
    train_logging_steps: int = Field(10, ge=1, description="report metrics every this many steps")
    train_dpo_beta: float = Field(0.1, gt=0)
    train_seed: int = Field(42)
    train_max_failures: int = Field(1, ge=0, description="worker failures Ray Train recovers from (from the last checkpoint)")

    @model_validator(mode="after")
    def _defaults(self) -> "TrainSettings":
        if not self.dataset_store:
            self.dataset_store = _under_home(self.home, "datasets")
        if not self.model_store:
            self.model_store = _under_home(self.home, "models")
        if not self.train_checkpoint_store:
            self.train_checkpoint_store = _under_home(self.home, "ray-runs")
        return self


class GateSettings(BaseSettings):
    """The validation gate, and the experiment a candidate gets."""

    model_config = SettingsConfigDict(env_prefix="AGENTGYM_", extra="ignore")

    gate_loss_margin: float = Field(0.01, ge=0, lt=1, description="candidate's held-out loss must be this much lower (relative)")
    gate_success_margin: float = Field(0.0, ge=0, le=1, description="... and its task success this much higher (absolute)")
    gate_evaluator: str = Field("", description="'' (loss only), exact_match, contains_reference or module:function")
    gate_max_eval_examples: int = Field(256, ge=1, description="held-out examples the gate evaluates")
    gate_max_new_tokens: int = Field(128, ge=1, description="generation length for the evaluator")
    experiment_auto_start: bool = Field(True, description="start an A/B experiment for every new candidate")
    experiment_treatment_weight: float = Field(0.1, gt=0, lt=1, description="traffic share of the candidate")
    experiment_min_samples_per_arm: int = Field(100, ge=1)
    experiment_alpha: float = Field(0.05, gt=0, lt=1)


class TrainerServiceSettings(BaseSettings):
    """The trainer service: consumer, policy, job records."""

    model_config = SettingsConfigDict(env_prefix="AGENTGYM_", extra="ignore")

    home: Path = Field(default_factory=default_home, description="state of the local stack")
    bootstrap_servers: str = Field("127.0.0.1:9092", description="Kafka")
    trainer_group: str = Field("agentgym-trainer", description="consumer group of the trainer service")
    trainer_base_model: str = Field("tiny:llama", description="base model of automatic jobs when the agent has no champion")
    trainer_min_examples: int = Field(50, ge=1, description="policy: smaller datasets are not trained on")
    trainer_cooldown_s: float = Field(3600.0, ge=0, description="policy: seconds between jobs of one tenant and agent")
    trainer_kinds: str = Field("sft,preference", description="dataset kinds the service trains on")
    trainer_jobs_dir: str = Field("", description="where job records are kept (default <home>/trainer/jobs)")
    trainer_auto_promote: bool = Field(True, description="apply experiment decisions to the model registry (champion, retired)")
    trainer_promoter_group: str = Field("agentgym-promoter", description="consumer group of the promoter on gym-decisions-v1")

    @model_validator(mode="after")
    def _defaults(self) -> "TrainerServiceSettings":
        if not self.trainer_jobs_dir:
            self.trainer_jobs_dir = _under_home(self.home, "trainer/jobs")
        return self

    @property
    def kinds(self) -> set[str]:
        return {k.strip() for k in self.trainer_kinds.split(",") if k.strip()}
