"""The trainer's losses on a tiny model (no Ray): completion-only masking, packing, DPO's sign."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from agentgym.trainers.modeling import generate, load_model, load_tokenizer, resolve_base
from agentgym.trainers.training.job import TrainJob
from agentgym.trainers.training.trainer import Runtime, build_trainer


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> str:
    return resolve_base("tiny:llama", tmp_path_factory.mktemp("models"))


def job(method: str, **kw: Any) -> TrainJob:
    fields: dict[str, Any] = dict(
        job_id="job-x", model_version="m", tenant_id="t", agent_id="a", dataset_id="d", dataset_uri="file:///nowhere",
        kind="sft" if method == "sft" else "preference", method=method, base_model="tiny:llama", base_path="",
        model_store="/tmp", storage_path="/tmp", lora_r=8, lora_alpha=16, max_length=256, logging_steps=1,
        save_steps=1000, batch_size=4,
    )
    fields.update(kw)
    return TrainJob(**fields)


CPU = Runtime(on_gpu=False, bf16=False, packing=False, attn_implementation="sdpa", per_device_batch_size=4, grad_accum=1)


def sft_rows(n: int) -> list[dict[str, Any]]:
    return [{"prompt": [{"role": "system", "content": "be brief"}, {"role": "user", "content": f"shout word {i}"}],
             "completion": [{"role": "assistant", "content": f"WORD {i}!" + "!" * (i % 5)}]} for i in range(n)]


def test_tiny_model_is_built_once_from_a_config_and_chats(tiny: str, tmp_path: Path) -> None:
    assert (Path(tiny) / "config.json").is_file()
    assert resolve_base("tiny:llama", Path(tiny).parent) == tiny  # materialised once, then reused
    again = resolve_base("tiny-llama", tmp_path)  # the alias, elsewhere: same weights from the fixed seed
    a, b = load_model(tiny), load_model(again)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    tok = load_tokenizer(tiny)
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False)
    assert text == "<|user|>\nhi\n<|assistant|>\n"
    assert isinstance(generate(a, tok, [{"role": "user", "content": "hi"}], max_new_tokens=5), str)


def test_sft_loss_is_on_completion_tokens_only(tiny: str, tmp_path: Path) -> None:
    tok = load_tokenizer(tiny)
    rows = sft_rows(6)
    trainer = build_trainer(job("sft"), load_model(tiny), tok, rows, output_dir=str(tmp_path), runtime=CPU)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(rows))])
    by_prompt = {r["prompt"][1]["content"]: r for r in rows}
    for ids, labels, mask in zip(batch["input_ids"], batch["labels"], batch["attention_mask"]):
        ids, labels = ids[mask.bool()], labels[mask.bool()]
        scored = labels != -100
        n_prompt = int((~scored).sum())
        assert bool(scored[n_prompt:].all()), "the scored tokens are one suffix: the completion"
        assert torch.equal(labels[scored], ids[scored])
        prompt_text = tok.decode(ids[:n_prompt])
        row = next(r for q, r in by_prompt.items() if q in prompt_text)
        # the prompt is exactly the chat template's rendering up to the assistant's turn
        assert prompt_text == tok.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=False)
        assert tok.decode(ids[scored], skip_special_tokens=True).strip() == row["completion"][0]["content"]
        assert int(ids[scored][-1]) == tok.eos_token_id  # the model learns to stop


def _summed_loss(model: Any, batch: dict[str, torch.Tensor]) -> tuple[float, int]:
    """Sum of per-token NLL over scored tokens, and their count (labels shifted inside the model)."""
    inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "position_ids")}
    with torch.no_grad():
        logits = model(**inputs, use_cache=False).logits.float()
    labels = batch["labels"][:, 1:]
    logp = torch.log_softmax(logits[:, :-1], -1)
    mask = labels != -100
    nll = -logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return float(nll[mask].sum()), int(mask.sum())


def test_packed_batches_give_the_same_loss_as_unpacked_ones(tiny: str, tmp_path: Path) -> None:
    """Packing (GPU path) concatenates examples; position ids restart per example, so none attends to another."""
    tok = load_tokenizer(tiny)
    model = load_model(tiny, attn_implementation="sdpa")
    model.eval()
    rows = sft_rows(12)
    packed_rt = Runtime(on_gpu=False, bf16=False, packing=True, attn_implementation="sdpa", per_device_batch_size=1, grad_accum=4)
    packed = build_trainer(job("sft", max_length=512), model, tok, rows, output_dir=str(tmp_path / "p"), runtime=packed_rt, peft=False)
    plain = build_trainer(job("sft", max_length=512), model, tok, rows, output_dir=str(tmp_path / "u"), runtime=CPU, peft=False)
    assert len(packed.train_dataset) < len(rows), "examples were packed into fewer rows"
    p_sum, p_n = 0.0, 0
    for i in range(len(packed.train_dataset)):
        b = packed.data_collator([packed.train_dataset[i]])
        assert "position_ids" in b and b.get("attention_mask") is None, "padding-free: no mask, position ids restart"
        s, n = _summed_loss(model, b)
        p_sum, p_n = p_sum + s, p_n + n
    u_sum, u_n = 0.0, 0
    for i in range(len(plain.train_dataset)):
        s, n = _summed_loss(model, plain.data_collator([plain.train_dataset[i]]))
        u_sum, u_n = u_sum + s, u_n + n
    assert p_n == u_n
    assert p_sum == pytest.approx(u_sum, rel=1e-4)


def _completion_logps(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    ids, cmask = batch["input_ids"], batch["completion_mask"]
    logits = model(input_ids=ids, attention_mask=batch["attention_mask"], use_cache=False).logits.float()
    logp = torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    return (logp * cmask[:, 1:]).sum(-1)


def _dpo_pairs(n: int) -> list[dict[str, Any]]:
    return [{"prompt": [{"role": "user", "content": f"is order {i} late?"}],
             "chosen": [{"role": "assistant", "content": f"Order {i} arrives today."}],
             "rejected": [{"role": "assistant", "content": "no idea lol"}]} for i in range(n)]


def test_dpo_loss_has_the_right_sign(tiny: str, tmp_path: Path) -> None:
    """loss = -log σ(β[(log π(c) - log π_ref(c)) - (log π(r) - log π_ref(r))]) (Rafailov et al. 2023, eq. 7)."""
    tok = load_tokenizer(tiny)
    j = job("dpo", max_steps=12, learning_rate=5e-3, dpo_beta=0.5)
    trainer = build_trainer(j, load_model(tiny), tok, _dpo_pairs(8), output_dir=str(tmp_path), runtime=CPU)
    batch = next(iter(trainer.get_train_dataloader()))
    model = trainer.model

    def margin_and_loss() -> tuple[float, float]:
        model.eval()
        with torch.no_grad():
            logps = _completion_logps(model, batch)
            with model.disable_adapter():
                ref = _completion_logps(model, batch)
            loss = float(trainer.compute_loss(model, batch))
        chosen, rejected = (logps - ref).chunk(2)
        margin = chosen - rejected
        expected = float(-torch.nn.functional.logsigmoid(j.dpo_beta * margin).mean())
        assert loss == pytest.approx(expected, rel=1e-3, abs=1e-4), "TRL's loss is eq. 7 with chosen first"
        return float(margin.mean()), loss

    margin0, loss0 = margin_and_loss()
    assert margin0 == pytest.approx(0.0, abs=1e-5) and loss0 == pytest.approx(math.log(2), abs=1e-4)  # adapter starts at 0
    trainer.train()
    margin1, loss1 = margin_and_loss()
    # training raised the chosen completions' likelihood relative to the rejected ones
    assert margin1 > 0 and loss1 < math.log(2)


def test_runtime_resolves_packing_precision_and_batch_on_cpu() -> None:
    from agentgym.trainers.training.trainer import runtime_for

    rt = runtime_for(job("sft", use_gpu=False, batch_size=4, grad_accum=2), cuda_available=False)
    assert (rt.on_gpu, rt.bf16, rt.packing, rt.per_device_batch_size, rt.grad_accum) == (False, False, False, 4, 2)
    # packing forced on without FlashAttention-2: one packed row per micro-step, the batch accumulated
    rt = runtime_for(job("sft", use_gpu=False, packing="yes", batch_size=4, grad_accum=2), cuda_available=False)
    assert (rt.packing, rt.attn_implementation, rt.per_device_batch_size, rt.grad_accum) == (True, "sdpa", 1, 8)
    assert runtime_for(job("dpo", use_gpu=False, packing="yes"), cuda_available=False).packing is False


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_step_uses_bf16_and_packing(tiny: str, tmp_path: Path) -> None:
    """On a GPU the trainer's defaults turn on bf16 and packing, and a few steps train."""
    from agentgym.trainers.training.trainer import runtime_for

    j = job("sft", use_gpu=True, max_steps=3, learning_rate=1e-2)
    rt = runtime_for(j)
    assert rt.on_gpu and rt.packing and rt.bf16 == torch.cuda.is_bf16_supported()
    model = load_model(tiny, dtype=torch.bfloat16 if rt.bf16 else None, attn_implementation=rt.attn_implementation)
    trainer = build_trainer(j, model, load_tokenizer(tiny), sft_rows(32), output_dir=str(tmp_path), runtime=rt)
    assert trainer.args.bf16 is rt.bf16 and len(trainer.train_dataset) < 32  # packed
    out = trainer.train()
    assert math.isfinite(out.training_loss) and next(trainer.model.parameters()).is_cuda
