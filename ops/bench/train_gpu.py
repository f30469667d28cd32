"""Training throughput of the trainer's LoRA step on a Llama-3.2-1B-shaped model (a benchmark, not a test).

    python -m agentgym.ops.bench.train_gpu                      # one GPU: raw loop, trainer step, trainer step on Ray Train
    python -m agentgym.ops.bench.train_gpu --compile            # the same with torch.compile
    python -m agentgym.ops.bench.train_gpu --tiny               # a tiny shape on CPU: checks the script runs end to end

The model is built from its config with random weights (nothing is downloaded):
hidden 2048, 16 layers, 32 heads, 8 KV heads, intermediate 8192, vocab 128256, tied
embeddings (1.24 B parameters); LoRA r=16 on every linear layer, bf16, sequences of
2048 tokens. Three ways to run the same step:

* ``raw``: a hand-written loop (forward, backward, AdamW on the adapter) -- the floor
  of what the hardware gives this model, without any trainer;
* ``trainer``: the trainer's own step: :func:`agentgym.trainers.training.trainer.build_trainer`
  (TRL ``SFTTrainer`` + PEFT, completion-only loss) in this process;
* ``ray``: the same trainer inside a Ray Train ``TorchTrainer`` worker (1 GPU), whose
  throughput over ``trainer``'s is Ray's overhead.

Throughput is tokens per second over the measured steps (after warm-up steps, with
``torch.cuda.synchronize()`` at both ends). Model FLOPs utilisation is counted two ways
(Chowdhery et al., *PaLM*, 2022, appendix B):

* ``6N``: 6 FLOPs per parameter per token (forward 2N, backward 4N), the usual count;
* ``4N``: with LoRA the frozen weights get no weight gradients, so backward costs
  2N, not 4N;

each plus attention, 12·L·d·T per token (forward 4·L·d·T for QKᵀ and AV, backward
twice that; L layers, d model width, T sequence length; causal masking not
discounted, as in PaLM). N counts the base model's parameters (tied embeddings once);
the adapter adds ~0.9 %. Peak: dense bf16 of the card (H100/H200 SXM: 989 TFLOPS),
or ``--peak-tflops``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from typing import Any

from agentgym.trainers.training.job import TrainJob
from agentgym.trainers.training.launcher import ensure_ray
from agentgym.trainers.training.trainer import build_trainer, runtime_for

__all__ = ["LLAMA_1B", "TINY", "attention_flops_per_token", "model_flops_per_token", "peak_flops", "run_trainer",
           "run_raw", "run_ray", "main"]

# Llama-3.2-1B's shape (its config.json), random weights
LLAMA_1B: dict[str, Any] = {
    "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32,
    "num_key_value_heads": 8, "vocab_size": 128256, "tie_word_embeddings": True, "max_position_embeddings": 131072,
    "rope_theta": 500000.0, "rms_norm_eps": 1e-5, "head_dim": 64,
}
TINY: dict[str, Any] = {
    "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "vocab_size": 384, "tie_word_embeddings": True, "max_position_embeddings": 1024,
}

# dense bf16 peak FLOP/s by device name (NVIDIA data sheets; SXM parts)
_PEAKS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12}


def attention_flops_per_token(layers: int, d_model: int, seq: int) -> float:
    """12·L·d·T: QKᵀ and AV, forward and backward (PaLM, appendix B)."""
    return 12.0 * layers * d_model * seq


def model_flops_per_token(n_params: float, layers: int, d_model: int, seq: int, per_param: int) -> float:
    """``per_param``·N + attention: 6N for full training, 4N for LoRA (no weight gradients of frozen weights)."""
    return per_param * n_params + attention_flops_per_token(layers, d_model, seq)


def peak_flops(override_tflops: float | None = None) -> float | None:
    """The card's dense bf16 peak in FLOP/s (None on CPU or an unknown card without ``--peak-tflops``)."""
    if override_tflops:
        return override_tflops * 1e12
    import torch

    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    if "H100" in name and "PCIe" in name:
        return 756e12
    return next((v for k, v in _PEAKS.items() if k in name), None)


def _build(cfg: dict[str, Any]) -> tuple[Any, Any, Any, int]:
    """(model, tokenizer, device, parameter count) for a bench config."""
    import torch
    from transformers import ByT5Tokenizer, LlamaConfig, LlamaForCausalLM

    gpu = cfg["gpu"] and torch.cuda.is_available()
    device = torch.device("cuda" if gpu else "cpu")
    torch.manual_seed(0)
    config = LlamaConfig(**cfg["shape"], pad_token_id=0, eos_token_id=1, bos_token_id=None)
    with device:
        model: Any = LlamaForCausalLM(config)
    if gpu:
        model = model.to(torch.bfloat16)
    model.config._attn_implementation = "sdpa"
    n = sum(p.numel() for p in model.parameters())  # tied embeddings counted once
    return model, ByT5Tokenizer(), device, n


def _rows(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """Pre-tokenized full-length sequences: the second half is the completion (what the loss covers)."""
    import random

    rng = random.Random(0)
    seq, vocab = cfg["seq"], cfg["shape"]["vocab_size"]
    n = cfg["batch"] * (cfg["warmup"] + cfg["steps"])
    return [{"input_ids": [rng.randrange(3, vocab) for _ in range(seq)], "completion_mask": [0] * (seq // 2) + [1] * (seq - seq // 2)}
            for _ in range(n)]


def _job(cfg: dict[str, Any], gpu: bool) -> Any:
    return TrainJob(
        job_id="bench", model_version="bench", tenant_id="bench", agent_id="bench", dataset_id="bench",
        dataset_uri="memory://bench", kind="sft", method="sft", base_model="bench", base_path="", model_store="/tmp",
        storage_path="/tmp", use_gpu=gpu, lora_r=16, lora_alpha=32, max_steps=cfg["warmup"] + cfg["steps"],
        batch_size=cfg["batch"], max_length=cfg["seq"], packing="no", bf16="yes" if gpu else "no",
        torch_compile=cfg["compile"], save_steps=10**9, logging_steps=10**9, learning_rate=1e-4,
    )


def _result(cfg: dict[str, Any], mode: str, seconds: float, n_params: int) -> dict[str, Any]:
    tokens = cfg["batch"] * cfg["seq"] * cfg["steps"]
    tps = tokens / seconds
    shape = cfg["shape"]
    out: dict[str, Any] = {"mode": mode, "tokens_per_s": tps, "step_s": seconds / cfg["steps"], "params": n_params,
                           "batch": cfg["batch"], "seq": cfg["seq"], "steps": cfg["steps"], "compile": cfg["compile"]}
    peak = peak_flops(cfg.get("peak_tflops"))
    for per_param in (6, 4):
        flops = model_flops_per_token(n_params, shape["num_hidden_layers"], shape["hidden_size"], cfg["seq"], per_param)
        out[f"mfu_{per_param}n"] = tps * flops / peak if peak else None
    try:
        import torch

        if torch.cuda.is_available():
            out["device"] = torch.cuda.get_device_name()
            out["max_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    except Exception:  # pragma: no cover - informative only
        pass
    return out


def run_trainer(cfg: dict[str, Any]) -> dict[str, Any]:
    """The trainer's step (TRL SFTTrainer + PEFT LoRA, as :func:`build_trainer` makes it), timed after warm-up."""
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback

    model, tok, device, n = _build(cfg)
    job = _job(cfg, device.type == "cuda")
    rt = runtime_for(job)
    marks: dict[str, float] = {}

    class Timer(TrainerCallback):  # type: ignore[misc]
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step in (cfg["warmup"], cfg["warmup"] + cfg["steps"]):
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                marks[str(state.global_step)] = time.perf_counter()

    with tempfile.TemporaryDirectory() as out:
        # already tokenized rows: TRL uses them as they are (its collator masks the prompt half)
        trainer = build_trainer(job, model, tok, Dataset.from_list(_rows(cfg)), output_dir=out, runtime=rt,
                                callbacks=[Timer()])
        trainer.train()
    seconds = marks[str(cfg["warmup"] + cfg["steps"])] - marks[str(cfg["warmup"])]
    return _result(cfg, "trainer", seconds, n)


def run_raw(cfg: dict[str, Any]) -> dict[str, Any]:
    """A hand-written loop: PEFT LoRA, fused AdamW on the adapter, the same sequences and loss."""
    import torch
    from peft import LoraConfig, get_peft_model

    model, _tok, device, n = _build(cfg)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                                             task_type="CAUSAL_LM"))
    if cfg["compile"]:
        model = torch.compile(model)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, fused=device.type == "cuda")
    rows = _rows(cfg)
    b = cfg["batch"]
    start = 0.0
    for step in range(cfg["warmup"] + cfg["steps"]):
        if step == cfg["warmup"]:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        chunk = rows[step * b:(step + 1) * b]
        ids = torch.tensor([r["input_ids"] for r in chunk], device=device)
        labels = ids.masked_fill(torch.tensor([r["completion_mask"] for r in chunk], device=device) == 0, -100)
        loss = model(input_ids=ids, labels=labels, use_cache=False).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return _result(cfg, "raw", time.perf_counter() - start, n)


def _ray_worker(cfg: dict[str, Any]) -> None:
    import ray.train
    from ray.train import Checkpoint

    result = run_trainer(cfg)
    result["mode"] = "ray"
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "bench.json"), "w", encoding="utf-8") as fh:
            json.dump(result, fh)
        ray.train.report({"tokens_per_s": result["tokens_per_s"]}, checkpoint=Checkpoint.from_directory(d))


def run_ray(cfg: dict[str, Any]) -> dict[str, Any]:
    """The trainer's step inside one Ray Train worker (a GPU when there is one)."""
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    ensure_ray(None if cfg["gpu"] else 2)
    with tempfile.TemporaryDirectory() as storage:
        trainer = TorchTrainer(_ray_worker, train_loop_config=cfg,
                               scaling_config=ScalingConfig(num_workers=1, use_gpu=bool(cfg["gpu"])),
                               run_config=RunConfig(name=f"bench-{int(time.time())}", storage_path=storage))
        result = trainer.fit()
        assert result.checkpoint is not None, "the Ray worker reported no result"
        with result.checkpoint.as_directory() as d, open(os.path.join(d, "bench.json"), encoding="utf-8") as fh:
            return dict(json.load(fh))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true", help="a tiny shape on CPU (checks the script, measures nothing useful)")
    p.add_argument("--modes", default="raw,trainer,ray", help="comma-separated: raw, trainer, ray")
    p.add_argument("--batch", type=int, default=None, help="sequences per step [8; tiny: 2]")
    p.add_argument("--seq", type=int, default=None, help="tokens per sequence [2048; tiny: 64]")
    p.add_argument("--steps", type=int, default=None, help="measured steps [20; tiny: 2]")
    p.add_argument("--warmup", type=int, default=None, help="steps before measuring [5; tiny: 1]")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--peak-tflops", type=float, default=None, help="the card's dense bf16 peak, when not detected")
    p.add_argument("--json", default=None, help="also write the results here")
    a = p.parse_args(argv)
    tiny = a.tiny
    cfg: dict[str, Any] = {
        "shape": TINY if tiny else LLAMA_1B, "gpu": not tiny, "compile": a.compile, "peak_tflops": a.peak_tflops,
        "batch": a.batch or (2 if tiny else 8), "seq": a.seq or (64 if tiny else 2048),
        "steps": a.steps or (2 if tiny else 20), "warmup": a.warmup or (1 if tiny else 5),
    }
    if not tiny:
        import torch

        if not torch.cuda.is_available():
            print("no CUDA GPU here: run with --tiny to check the script on CPU", file=sys.stderr)
            return 2
    runners = {"raw": run_raw, "trainer": run_trainer, "ray": run_ray}
    results = []
    for mode in [m.strip() for m in a.modes.split(",") if m.strip()]:
        r = runners[mode](cfg)
        results.append(r)
        mfu6 = "n/a" if r["mfu_6n"] is None else f"{r['mfu_6n']:.1%}"
        mfu4 = "n/a" if r["mfu_4n"] is None else f"{r['mfu_4n']:.1%}"
        print(f"{mode:<8} {r['tokens_per_s']:>10,.0f} tokens/s  {r['step_s'] * 1000:8.1f} ms/step  "
              f"MFU 6N {mfu6:>6}  4N {mfu4:>6}  ({r['params'] / 1e9:.3f} B params, batch {r['batch']} x {r['seq']})",
              flush=True)
    by = {r["mode"]: r for r in results}
    if "ray" in by and "trainer" in by:
        ratio = by["ray"]["tokens_per_s"] / by["trainer"]["tokens_per_s"]
        print(f"Ray Train / plain trainer: {ratio:.3f} ({(1 - ratio):+.1%} overhead)")
    if a.json:
        with open(a.json, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=2)
    return 0 if all(math.isfinite(r["tokens_per_s"]) for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
