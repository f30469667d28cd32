"""The demo's base model: a tiny byte-level Llama pre-trained on the routing format.

It starts from ``tiny:llama``'s architecture (:mod:`agentgym.trainers.modeling`, random
weights from a fixed seed) and is trained, fully, on requests answered by
:func:`agentgym.ops.demo.task.base_answer`: it learns the call format and to copy the argument,
and carries the base's blind spots (refunds and FAQ questions go to the wrong tool).
That takes about a minute on two cores, once: the result is kept under
``<home>/models/base/<name>`` keyed by a hash of everything that shapes it, so re-runs
load it, and every process (agents, Ray workers, the gate) loads the same weights.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentgym.ops.demo.task import base_answer, messages_for, sample_task
from agentgym.trainers.modeling import DEFAULT_CHAT_TEMPLATE, TINY_MODELS, save_model_dir

__all__ = ["BASE_SHAPE", "DEFAULT_STEPS", "base_model_dir", "pretrain_base"]

BASE_SHAPE: dict[str, int] = {**TINY_MODELS["llama"], "max_position_embeddings": 256}
# with this recipe the argument-copying skill appears after ~1,200 steps (the loss falls from ~0.3 to ~0.01)
_RECIPE: dict[str, Any] = {"shape": BASE_SHAPE, "lr": 5e-3, "batch": 16, "seed": 1234, "generic_share": 0.3,
                           "version": 2}
DEFAULT_STEPS = 2000


def base_model_dir(home: Path, steps: int) -> Path:
    """Where the base pre-trained for ``steps`` lives (the name hashes the recipe)."""
    digest = hashlib.sha256(json.dumps({**_RECIPE, "steps": steps}, sort_keys=True).encode()).hexdigest()[:10]
    return Path(home) / "models" / "base" / f"demo-router-{digest}"


_SYLLABLES = ("get", "set", "find", "send", "make", "list", "check", "open", "close", "book", "pay", "ship", "track",
              "order", "user", "item", "note", "file", "mail", "card", "plan", "city", "code", "date", "task")
_WORDS = ("alpha", "harbor", "violet", "summit", "copper", "meadow", "rocket", "pixel", "lantern", "quartz", "maple",
          "tundra", "ember", "falcon", "orchid", "canyon", "velvet", "glacier", "sonnet", "marble")
_GENERIC = ("Call {name} with {arg}", "Run {name} on {arg}", "Use the {name} tool for {arg}", "{name} please: {arg}",
            "I need {name} for {arg}")


def _generic(rng: random.Random) -> tuple[str, str]:
    """A request naming an arbitrary tool and argument: teaches the model to copy both, whatever they are.

    Without these, copying the argument is learnt only after the four known call
    prefixes, and a fine-tune that teaches a new tool name loses the argument.
    """
    name = "_".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 3)))
    arg = str(rng.randint(10, 999999)) if rng.random() < 0.5 else rng.choice(_WORDS)
    return rng.choice(_GENERIC).format(name=name, arg=arg), f"{name}({arg})"


def _encode(tokenizer: Any, request: str, answer: str) -> tuple[list[int], int]:
    msgs = messages_for(request)
    prompt = tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
    full = tokenizer.apply_chat_template(msgs + [{"role": "assistant", "content": answer}], tokenize=True,
                                         return_dict=True)["input_ids"]
    return list(full), len(prompt)


def pretrain_base(home: Path, steps: int = DEFAULT_STEPS, progress: Callable[[int, float], None] | None = None) -> Path:
    """Pre-trains the base (or finds it done) and returns its directory.

    Args:
        home: the stack's home (``AGENTGYM_HOME``).
        steps: optimiser steps (batches of 16 requests).
        progress: called with (step, loss) every 10 steps.
    """
    directory = base_model_dir(home, steps)
    if (directory / "config.json").is_file() and (directory / "tokenizer_config.json").is_file():
        return directory
    import torch
    from transformers import ByT5Tokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = ByT5Tokenizer()
    tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE
    shape: dict[str, Any] = dict(BASE_SHAPE)
    config = LlamaConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id, bos_token_id=None, tie_word_embeddings=True, **shape)
    rng = random.Random(int(_RECIPE["seed"]))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(_RECIPE["seed"]))
        model = LlamaForCausalLM(config)
        opt = torch.optim.AdamW(model.parameters(), lr=float(_RECIPE["lr"]), weight_decay=0.0)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=float(_RECIPE["lr"]), total_steps=steps,
                                                    pct_start=0.1)
        model.train()
        batch_size = int(_RECIPE["batch"])
        for step in range(1, steps + 1):
            rows = []
            for _ in range(batch_size):
                if rng.random() < float(_RECIPE["generic_share"]):
                    rows.append(_encode(tokenizer, *_generic(rng)))
                else:
                    task = sample_task(rng)
                    rows.append(_encode(tokenizer, task.request, base_answer(task)))
            width = max(len(ids) for ids, _ in rows)
            ids = torch.full((batch_size, width), tokenizer.pad_token_id)
            labels = torch.full((batch_size, width), -100)
            mask = torch.zeros((batch_size, width), dtype=torch.long)
            for i, (row, n_prompt) in enumerate(rows):
                ids[i, :len(row)] = torch.tensor(row)
                labels[i, n_prompt:len(row)] = torch.tensor(row[n_prompt:])
                mask[i, :len(row)] = 1
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            if progress is not None and step % 10 == 0:
                progress(step, float(loss.detach()))
    model.eval()
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the demo's own progress bar is enough
    recipe = json.dumps({**_RECIPE, "steps": steps, "built_at": time.time()})
    return save_model_dir(directory, model, tokenizer, {"agentgym-base.json": recipe})
