"""Training from an adapter (the champion's) on the tiny model, without Ray: the job takes the adapter's
LoRA shape, the trainer starts from its weights (also from an fsspec URL), and the result is again an
adapter of the same base."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import fsspec
import pytest
import torch
from safetensors.torch import load_file

from agentgym.processors.datasets.store import DatasetStore, Manifest
from agentgym.trainers.exceptions import InitAdapterError
from agentgym.trainers.modeling import load_model, load_tokenizer, resolve_base
from agentgym.trainers.settings import TrainSettings
from agentgym.trainers.training.job import TrainJob
from agentgym.trainers.training.trainer import Runtime, build_trainer, is_peft
from tests import trainer_samples

CPU = Runtime(on_gpu=False, bf16=False, packing=False, attn_implementation="sdpa", per_device_batch_size=4, grad_accum=1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> str:
    return resolve_base("tiny:llama", tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def champion(tiny: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA adapter of the tiny model (r=4 on q/v, non-zero B so that it changes the model), saved like a finished job's."""
    from peft import LoraConfig, get_peft_model

    gen = torch.Generator().manual_seed(7)
    model = get_peft_model(load_model(tiny), LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"],
                                                       task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    out = tmp_path_factory.mktemp("store") / "bot-ft-champion"
    model.save_pretrained(out)
    return out


def dataset(home: Path) -> Manifest:
    rng = random.Random(0)
    rows: dict[str, list[dict[str, Any]]] = {"train": [], "eval": []}
    for i in range(24):
        word, number = rng.choice(trainer_samples.WORDS), rng.randint(1, 999)
        rows["eval" if i % 4 == 0 else "train"].append({
            "prompt": [{"role": "user", "content": f"shout {word} {number}"}],
            "completion": [{"role": "assistant", "content": trainer_samples.answer(word, number)}],
            "trace_id": f"t{i}", "labeller_version": "rules-2", "source": "success", "prompt_key": f"k{i}",
        })
    return DatasetStore(str(home / "datasets")).write(dataset_id="ds-init", tenant_id="acme", agent_id="bot", kind="sft",
                                                      created_ms=1, rows=rows)


def settings(home: Path) -> TrainSettings:
    # the job's own LoRA settings differ from the champion's: the champion's win
    return TrainSettings(home=home, train_lora_r=16, train_lora_alpha=32, train_lora_target_modules="all-linear",
                         train_max_steps=2, train_batch_size=4, train_learning_rate=5e-2, train_logging_steps=1,
                         train_max_length=64, train_use_gpu="no", train_lora_dropout=0.0)


def lora_weights(model: Any) -> dict[str, torch.Tensor]:
    """The ``default`` adapter's LoRA tensors, keyed as in ``adapter_model.safetensors``."""
    from peft import get_peft_model_state_dict

    return {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()}


@pytest.mark.timeout(120)
def test_a_job_from_the_champion_starts_from_its_weights_and_stays_an_adapter_of_the_base(
        tiny: str, champion: Path, tmp_path: Path) -> None:
    started = time.monotonic()
    manifest = dataset(tmp_path)
    # an fsspec URL (another node would see object storage): the job reads the shape there, the trainer copies it here
    mem = fsspec.filesystem("memory")
    for f in champion.iterdir():
        mem.pipe_file(f"/champ-{tmp_path.name}/{f.name}", f.read_bytes())
    uri = f"memory:///champ-{tmp_path.name}"
    job = TrainJob.for_dataset(manifest, "tiny:llama", settings(tmp_path), job_id="job-20261203T000000-abcdef",
                               init_adapter=uri, init_from="champion", base_path=tiny)
    assert (job.lora_r, job.lora_alpha, job.lora_target_modules) == (4, 8, "q_proj,v_proj"), "the champion's shape wins"
    hyper = job.hyperparameters()
    assert (hyper["init_from"], hyper["init_adapter"], hyper["lora_r"]) == ("champion", uri, "4")

    tok = load_tokenizer(tiny)
    store = DatasetStore(str(tmp_path / "datasets"))
    train_rows, eval_rows = store.read(manifest, "train"), store.read(manifest, "eval")
    trainer = build_trainer(job, load_model(tiny), tok, train_rows, eval_rows, output_dir=str(tmp_path / "hf"), runtime=CPU)
    model = trainer.model
    assert is_peft(model)
    saved = load_file(str(champion / "adapter_model.safetensors"))
    initial = lora_weights(model)
    assert initial.keys() == saved.keys()
    assert all(torch.equal(initial[k], saved[k]) for k in saved), "the initial LoRA weights are the champion's"
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable), "only the adapter trains; the base stays frozen"

    # its held-out loss before training is the champion's, not the base's
    champion_loss = trainer.evaluate()["eval_loss"]
    with model.disable_adapter():
        base_loss = trainer.evaluate()["eval_loss"]
    print(f"\nheld-out loss: champion {champion_loss:.4f}, base {base_loss:.4f}")
    assert abs(champion_loss - base_loss) > 1e-3

    trainer.train()
    after = lora_weights(trainer.model)
    assert any(not torch.equal(after[k], saved[k]) for k in saved), "training moved the weights"
    out = tmp_path / "final"
    trainer.model.save_pretrained(out)
    reloaded = load_file(str(out / "adapter_model.safetensors"))
    assert reloaded.keys() == saved.keys()  # the same LoRA shape, on the same base modules
    assert all(reloaded[k].shape == saved[k].shape for k in saved)
    print(f"init-from-adapter test: {time.monotonic() - started:.1f}s")


def test_a_missing_or_foreign_init_adapter_is_a_clear_error(tiny: str, tmp_path: Path) -> None:
    manifest = dataset(tmp_path)
    with pytest.raises(InitAdapterError, match=r"init_adapter .*nowhere.*no adapter_config\.json"):
        TrainJob.for_dataset(manifest, "tiny:llama", settings(tmp_path), init_adapter=str(tmp_path / "nowhere"),
                             base_path=tiny)
    (tmp_path / "ia3").mkdir()
    (tmp_path / "ia3" / "adapter_config.json").write_text('{"peft_type": "IA3"}')
    with pytest.raises(InitAdapterError, match="a IA3 adapter; only LoRA"):
        TrainJob.for_dataset(manifest, "tiny:llama", settings(tmp_path), init_adapter=str(tmp_path / "ia3"), base_path=tiny)
    fresh = TrainJob.for_dataset(manifest, "tiny:llama", settings(tmp_path), base_path=tiny)
    assert (fresh.init_adapter, fresh.init_from, fresh.lora_r) == (None, "base", 16)
    assert (fresh.hyperparameters()["init_from"], fresh.hyperparameters()["init_adapter"]) == ("base", "")
