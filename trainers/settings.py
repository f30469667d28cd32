"""Settings of the fine-tuning pipeline: one class per component.

* :class:`TrainSettings`: a training job (``agentgym train``, and the jobs the trainer
  service starts): Ray scaling, LoRA and optimisation hyperparameters, where adapters
  and checkpoints go.
* :class:`GateSettings`: the validation gate and the A/B experiment a candidate gets.
* :class:`TrainerServiceSettings`: the trainer service (``agentgym trainer run``): its
  consumer group, its policy (minimum size, cool-down), its job records, and the
  promotion of experiment winners in the registry.

Each extends :class:`agentgym.producers.settings.SharedSettings` (home, Kafka, tenant,
stores). Precedence everywhere: argument, then environment (``AGENTGYM_*``), then default.
Every field is documented in ``docs/configuration.md``. The dataset builder's settings are
:class:`agentgym.processors.datasets.settings.DatasetSettings` (dataset building is stream processing).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from agentgym.producers.settings import SharedSettings, avro_enum_symbols, default_home, parse_choices
from agentgym.trainers.evaluation import BUILTIN_EVALUATORS

__all__ = [
    "TrainSettings",
    "GateSettings",
    "TrainerServiceSettings",
    "default_home",
]

class TrainSettings(SharedSettings):
    """Read by `agentgym train` and by the jobs the trainer service starts. Ray is found through
    `AGENTGYM_TRAIN_RAY_ADDRESS`, else Ray's own `RAY_ADDRESS` (neither: a local `ray.init()`). CLI
    options of `agentgym train` win over these variables."""

    model_store: str = Field(
        "", description="where finished adapters go (`<store>/<model_version>`), and where `tiny:` base models are "
        "materialised (local stores only): a directory or any fsspec URL",
        json_schema_extra={"doc_default": "unset (`<AGENTGYM_HOME>/models`)"})
    train_checkpoint_store: str = Field(
        "", description="Ray Train's `storage_path`: checkpoints and run state, one run per job id (starting a job id "
        "again resumes it); on a cluster, storage every worker reaches",
        json_schema_extra={"doc_default": "unset (`<AGENTGYM_HOME>/ray-runs`)"})
    train_ray_address: str = Field(
        "", description="the Ray cluster jobs run on: `<head>:<port>` (the GCS address `ray start --head` prints), "
        "`auto`, or `ray://<head>:10001`; unset: Ray's own `RAY_ADDRESS`, else a local Ray. On a cluster of several "
        "machines the dataset store, the model store and `AGENTGYM_TRAIN_CHECKPOINT_STORE` must be storage every node "
        "reaches at the same URL (an fsspec URL such as `s3://...`, or one shared mount)",
        json_schema_extra={"doc_default": "unset (`RAY_ADDRESS`, else a local Ray)"})
    train_ray_num_cpus: int | None = Field(
        None, ge=1, description="CPUs of a local Ray started by a job (unset: all of them)")
    train_placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = Field(
        "PACK", description="how Ray places the workers of a job on a cluster: `PACK` (as few nodes as possible), "
        "`SPREAD` (over as many nodes as possible, so losing a node stops fewer workers), or the `STRICT_` forms")
    train_num_workers: int = Field(1, ge=1, description="Ray Train workers (data parallel; one GPU each on GPU) (>= 1)")
    train_use_gpu: Literal["auto", "yes", "no"] = Field(
        "auto", description="`auto` (GPUs when the Ray cluster has one per worker), `yes` or `no`")
    train_method: Literal["auto", "sft", "dpo"] = Field(
        "auto", description="`auto` (SFT for `sft` datasets, DPO for `preference` datasets), `sft` or `dpo`")
    train_lora_r: int = Field(16, ge=1, description="LoRA rank (>= 1)")
    train_lora_alpha: int = Field(32, ge=1, description="LoRA alpha (>= 1)")
    train_lora_dropout: float = Field(0.05, ge=0, lt=1, description="LoRA dropout (0 <= p < 1)")
    train_lora_target_modules: str = Field(
        "all-linear", description="PEFT `target_modules`: `all-linear` (every linear layer except the output head) or a "
        "comma-separated list of module names")
    train_learning_rate: float = Field(2e-4, gt=0, description="peak learning rate (cosine schedule) (> 0)")
    train_epochs: float = Field(1.0, gt=0, description="passes over the training split (> 0)")
    train_max_steps: int = Field(-1, description="stop after this many optimiser steps (`-1`: the epochs decide)")
    train_batch_size: int = Field(
        8, ge=1, description="sequences per worker per step (>= 1); packed on GPU without FlashAttention-2: one packed "
        "row per micro-step and this many accumulated")
    train_grad_accum: int = Field(1, ge=1, description="gradient accumulation steps (>= 1)")
    train_max_length: int = Field(2048, ge=8, description="tokens per sequence, and per packed row (>= 8)")
    train_packing: Literal["auto", "yes", "no"] = Field(
        "auto", description="sequence packing for SFT (best-fit decreasing, padding-free, attention kept within each "
        "example): `auto` (on GPU only), `yes`, `no`")
    train_bf16: Literal["auto", "yes", "no"] = Field(
        "auto", description="bf16 mixed precision: `auto` (where the GPU supports it), `yes`, `no`")
    train_gradient_checkpointing: bool = Field(False, description="trade compute for activation memory")
    train_torch_compile: bool = Field(False, description="compile the model with `torch.compile`")
    train_save_steps: int = Field(100, ge=1, description="checkpoint (to Ray Train's storage) every this many steps (>= 1)")
    train_logging_steps: int = Field(
        10, ge=1, description="report metrics (loss, learning rate, tokens) every this many steps (>= 1)")
    train_dpo_beta: float = Field(0.1, gt=0, description="DPO's beta (> 0)")
    train_seed: int = Field(42, description="seed of the adapter's initialisation and the data order")
    train_max_failures: int = Field(
        1, ge=0, description="worker failures a run recovers from, resuming at its latest checkpoint (>= 0)")
    train_init_from: Literal["champion", "base"] = Field(
        "champion", description="what a job of the trainer service (and `agentgym train`) starts from: `champion` "
        "(the agent's champion's adapter, trained further as a trainable PEFT model, its LoRA shape winning over "
        "`AGENTGYM_TRAIN_LORA_R`, `AGENTGYM_TRAIN_LORA_ALPHA`, `AGENTGYM_TRAIN_LORA_DROPOUT` and "
        "`AGENTGYM_TRAIN_LORA_TARGET_MODULES`; a fresh LoRA when the champion is the base model) or `base` (a fresh LoRA on the "
        "base model every round)")

    @model_validator(mode="after")
    def _stores(self) -> "TrainSettings":
        if not self.model_store:
            self.model_store = self.under_home("models")
        if not self.train_checkpoint_store:
            self.train_checkpoint_store = self.under_home("ray-runs")
        return self

class GateSettings(SharedSettings):
    """Read by the trainer service and `agentgym train` (unless `--no-register`): a new adapter is
    compared with the agent's champion (the base model when it has none) on the dataset's
    held-out split, and registered as `candidate` only when it is better by the margins below;
    a candidate then gets an A/B experiment."""

    gate_loss_margin: float = Field(
        0.01, ge=0, lt=1, description="the candidate's held-out loss (mean NLL per completion token) must be at least "
        "this much lower than the champion's, relative (0.01 = 1 %) (0 <= m < 1)")
    gate_success_margin: float = Field(
        0.0, ge=0, le=1, description="with an evaluator: its task success must be at least the champion's plus this "
        "(absolute) (0-1)")
    gate_evaluator: str = Field(
        "", description="task success of greedy generations against the held-out references: empty (loss only), "
        "`exact_match`, `contains_reference`, or `package.module:function` taking the cases and returning a rate in "
        "[0, 1]", json_schema_extra={"doc_default": "unset (loss only)"})
    gate_max_eval_examples: int = Field(256, ge=1, description="held-out examples the gate scores (>= 1)")
    gate_max_new_tokens: int = Field(128, ge=1, description="generation length for the evaluator (>= 1)")
    experiment_auto_start: bool = Field(
        True, description="start an A/B experiment (candidate against champion) for every new candidate")
    experiment_treatment_weight: float = Field(
        0.1, gt=0, lt=1, description="the candidate's share of the traffic (0 < w < 1)")
    experiment_min_samples_per_arm: int = Field(100, ge=1, description="the experiment's `min_samples_per_arm` (>= 1)")
    experiment_alpha: float = Field(0.05, gt=0, lt=1, description="the experiment's `alpha` (0 < alpha < 1)")
    experiment_audit_rate: float = Field(
        0.0, ge=0, lt=1, description="the experiment's `audit_rate`: the fraction of units reviewers label through the "
        "annotation queue, whose gold labels correct `success_rate` (prediction-powered estimate); 0 = no audit sample "
        "(0 <= r < 1)")

    @field_validator("gate_evaluator")
    @classmethod
    def _evaluator_form(cls, value: str) -> str:
        module, sep, attr = value.partition(":")
        if value and value not in BUILTIN_EVALUATORS and not (sep and module and attr):
            raise ValueError(
                f"AGENTGYM_GATE_EVALUATOR {value!r}: allowed: '' (loss only), "
                f"{', '.join(repr(n) for n in BUILTIN_EVALUATORS)} or 'package.module:function'"
            )
        return value

class TrainerServiceSettings(SharedSettings):
    """Read by `agentgym trainer run|jobs` (and `agentgym models`, for Kafka). The service
    consumes `gym-datasets-v1` and starts a job for each dataset its policy admits; job records
    (status, reason, model version, verdict) are JSON files in `AGENTGYM_TRAINER_JOBS_DIR`.
    Alongside, its promoter consumes `gym-decisions-v1` and applies each decision to the model
    registry."""

    trainer_group: str = Field("agentgym-trainer", description="consumer group of the trainer service")
    trainer_base_model: str = Field(
        "tiny:llama", description="base model of a job when the agent has no champion yet (a hub id, a local path, or "
        "`tiny:llama` for demos); later jobs fine-tune the champion's base (from the champion's adapter: "
        "`AGENTGYM_TRAIN_INIT_FROM`)")
    trainer_min_examples: int = Field(50, ge=1, description="policy: datasets with fewer examples are skipped (>= 1)")
    trainer_cooldown_s: float = Field(
        3600.0, ge=0, description="policy: seconds between the starts of two jobs of one tenant and agent; a dataset "
        "arriving sooner waits (and a newer one replaces it) (>= 0)")
    trainer_kinds: str = Field(
        "sft,preference", description="dataset kinds the service trains on, comma-separated (the symbols of "
        "DatasetReady's `kind`: `sft`, `preference`, `eval`, `synthetic`); empty: none (the promoter still runs)")
    trainer_jobs_dir: str = Field(
        "", description="where job records are kept: a directory or any fsspec URL",
        json_schema_extra={"doc_default": "unset (`<AGENTGYM_HOME>/trainer/jobs`)"})
    trainer_auto_promote: bool = Field(
        True, description="apply the experiments' decisions to the model registry: a winner becomes champion (the "
        "previous one retires), a rolled-back candidate retires; `false` leaves the registry to "
        "`agentgym models promote` and `retire`")
    trainer_promoter_group: str = Field(
        "agentgym-promoter", description="consumer group of the promoter on `gym-decisions-v1`")

    @field_validator("trainer_kinds")
    @classmethod
    def _known_kinds(cls, value: str) -> str:
        parse_choices(value, variable="AGENTGYM_TRAINER_KINDS", allowed=avro_enum_symbols("DatasetReady", "kind"),
                      what="kind")
        return value

    @model_validator(mode="after")
    def _jobs_dir(self) -> "TrainerServiceSettings":
        if not self.trainer_jobs_dir:
            self.trainer_jobs_dir = self.under_home("trainer/jobs")
        return self

    @property
    def kinds(self) -> set[str]:
        """The dataset kinds the service trains on."""
        return {k.strip() for k in self.trainer_kinds.split(",") if k.strip()}
