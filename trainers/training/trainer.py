"""The Hugging Face trainer of a job: TRL's ``SFTTrainer`` or ``DPOTrainer`` with a PEFT LoRA adapter.

Kept apart from Ray so that unit tests and the GPU benchmark build exactly the
trainer the Ray workers run.

* **SFT, completion tokens only**: examples are TRL's conversational
  *prompt-completion* rows, so ``SFTTrainer`` renders them with the model's chat
  template and masks every prompt token (``completion_only_loss``; labels are -100
  on the prompt).
* **DPO** (Rafailov et al., 2023, eq. 7): ``DPOTrainer`` with the sigmoid loss
  ``-log σ(β[(log π(y_w|x) - log π_ref(y_w|x)) - (log π(y_l|x) - log π_ref(y_l|x))])``;
  with a fresh PEFT adapter the reference model is the base with the adapter disabled, so
  no second copy of the weights is held; starting from an adapter, TRL keeps a frozen copy
  of it (adapter ``ref``) as the reference, so the reference is the model trained from.
* **From an adapter** (``job.init_adapter``, e.g. the champion's): the model is that
  adapter loaded as a trainable ``PeftModel`` (:func:`from_adapter`) instead of a fresh
  LoRA, so training continues from its weights, and the result is again an adapter of
  the same base.
* **On GPU**: bf16 where supported, and sequence packing (TRL's best-fit-decreasing
  packing, padding-free: examples are concatenated with position ids restarting at
  each example, and transformers builds a block-diagonal causal mask from them, so no
  example attends to another). FlashAttention-2 takes the packed batch as variable-
  length sequences; without it (SDPA) a packed batch is one long row whose mask is
  quadratic in its length, so each step then takes one packed row per device and
  accumulates gradients over ``batch_size`` rows instead.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agentgym.trainers.modeling import local_copy
from agentgym.trainers.training.job import TrainJob

__all__ = ["Runtime", "runtime_for", "lora_config", "from_adapter", "is_peft", "to_hf_dataset", "build_trainer"]


@dataclass(frozen=True)
class Runtime:
    """How a job runs on this worker's hardware."""

    on_gpu: bool
    bf16: bool
    packing: bool
    attn_implementation: str
    per_device_batch_size: int
    grad_accum: int


def runtime_for(job: TrainJob, cuda_available: bool | None = None) -> Runtime:
    """Resolves the job's ``auto`` settings against the hardware."""
    import torch

    on_gpu = job.use_gpu and (torch.cuda.is_available() if cuda_available is None else cuda_available)
    bf16 = {"yes": True, "no": False}.get(job.bf16, on_gpu and torch.cuda.is_bf16_supported())
    packing = job.method == "sft" and {"yes": True, "no": False}.get(job.packing, on_gpu)
    flash = on_gpu and importlib.util.find_spec("flash_attn") is not None
    attn = "flash_attention_2" if flash else "sdpa"
    batch, accum = job.batch_size, job.grad_accum
    if packing and not flash:
        batch, accum = 1, job.batch_size * job.grad_accum
    return Runtime(on_gpu, bool(bf16), bool(packing), attn, batch, accum)


def lora_config(job: TrainJob) -> Any:
    """The PEFT LoRA configuration of a job (``all-linear``: every linear layer but the output head)."""
    from peft import LoraConfig

    spec = job.lora_target_modules
    targets: str | list[str] = spec if spec == "all-linear" else [t.strip() for t in spec.split(",") if t.strip()]
    return LoraConfig(r=job.lora_r, lora_alpha=job.lora_alpha, lora_dropout=job.lora_dropout,
                      target_modules=targets, task_type="CAUSAL_LM")


def is_peft(model: Any) -> bool:
    """Whether ``model`` already carries PEFT adapters."""
    return hasattr(model, "peft_config") and hasattr(model, "get_base_model")


def from_adapter(model: Any, adapter_uri: str) -> Any:
    """``model`` (the base) with the LoRA adapter at ``adapter_uri`` (any fsspec URL) as a trainable ``PeftModel``.

    Raises:
        BaseModelError: a local adapter directory that does not exist.
    """
    from peft import PeftModel

    with local_copy(adapter_uri) as local:  # a remote adapter is copied here first (another node, object storage)
        return PeftModel.from_pretrained(model, local, is_trainable=True)


def to_hf_dataset(rows: Sequence[dict[str, Any]] | Any, method: str) -> Any:
    """A ``datasets.Dataset`` with only the columns TRL reads (a ``Dataset`` passes through as is:
    e.g. already tokenized rows with ``input_ids`` and ``completion_mask``)."""
    from datasets import Dataset

    if isinstance(rows, Dataset):
        return rows
    cols = ("prompt", "completion") if method == "sft" else ("prompt", "chosen", "rejected")
    return Dataset.from_dict({c: [r[c] for r in rows] for c in cols})


def build_trainer(
    job: TrainJob,
    model: Any,
    tokenizer: Any,
    train_rows: Sequence[dict[str, Any]] | Any,
    eval_rows: Sequence[dict[str, Any]] = (),
    *,
    output_dir: str,
    runtime: Runtime | None = None,
    callbacks: Sequence[Any] = (),
    peft: bool = True,
) -> Any:
    """The TRL trainer for ``job`` (SFT or DPO, LoRA through PEFT when ``peft``).

    ``train_rows``: dataset rows (conversational prompt-completion or preference), or a
    ready ``datasets.Dataset`` (pre-tokenized rows are used as they are).

    With ``peft``: a ``model`` that is a ``PeftModel`` already is trained as it is; else,
    with ``job.init_adapter``, that adapter is loaded onto ``model`` as a trainable
    ``PeftModel`` (:func:`from_adapter`); else a fresh LoRA (:func:`lora_config`).
    """
    rt = runtime or runtime_for(job)
    common: dict[str, Any] = {
        "output_dir": output_dir,
        "learning_rate": job.learning_rate,
        "num_train_epochs": job.epochs,
        "max_steps": job.max_steps,
        "per_device_train_batch_size": rt.per_device_batch_size,
        "per_device_eval_batch_size": max(1, rt.per_device_batch_size),
        "gradient_accumulation_steps": rt.grad_accum,
        "max_length": job.max_length,
        "bf16": rt.bf16,
        "use_cpu": not rt.on_gpu,
        "logging_steps": job.logging_steps,
        "logging_first_step": True,
        "save_strategy": "steps",
        "save_steps": job.save_steps,
        "save_total_limit": 2,
        "eval_strategy": "no",
        "report_to": [],
        "seed": job.seed,
        "data_seed": job.seed,
        "gradient_checkpointing": job.gradient_checkpointing,
        "torch_compile": job.torch_compile,
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        "lr_scheduler_type": "cosine",
        "warmup_steps": 0,
    }
    train = to_hf_dataset(train_rows, job.method)
    evals = to_hf_dataset(eval_rows, job.method) if eval_rows else None
    peft_config = None
    if peft and not is_peft(model):
        if job.init_adapter:
            model = from_adapter(model, job.init_adapter)
        else:
            peft_config = lora_config(job)
    if job.method == "sft":
        from trl import SFTConfig, SFTTrainer

        sft_args = SFTConfig(**common, completion_only_loss=True, packing=rt.packing, packing_strategy="bfd",
                             eval_packing=False)
        return SFTTrainer(model=model, args=sft_args, train_dataset=train, eval_dataset=evals, processing_class=tokenizer,
                          peft_config=peft_config, callbacks=list(callbacks))
    from trl import DPOConfig, DPOTrainer

    dpo_args = DPOConfig(**common, beta=job.dpo_beta, loss_type=["sigmoid"])
    return DPOTrainer(model=model, args=dpo_args, train_dataset=train, eval_dataset=evals, processing_class=tokenizer,
                      peft_config=peft_config, callbacks=list(callbacks))
