"""Base models: a hub name or a local path for real use, ``tiny:<name>`` for tests and the demo.

``tiny:llama`` (alias ``tiny-llama``) is a Llama model built from a small
``LlamaConfig`` (hidden 64, 2 layers, 4 heads, 2 KV heads) with random weights from a
fixed seed, and the file-free byte-level ``ByT5Tokenizer`` with a small chat template.
It is materialised once into a local directory (``<home>/models/base/tiny-llama``)
so that every process that loads it -- Ray workers, the gate, the reload test -- gets
the same weights; nothing is downloaded.

Every tokenizer gets a chat template: the model's own when it has one, otherwise
:data:`DEFAULT_CHAT_TEMPLATE`; and a pad token (the EOS token when it has none).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from agentgym.producers.settings import SharedSettings
from agentgym.trainers.exceptions import BaseModelError

__all__ = [
    "TINY_PREFIX",
    "TINY_MODELS",
    "DEFAULT_CHAT_TEMPLATE",
    "is_tiny",
    "resolve_base",
    "build_tiny",
    "save_model_dir",
    "load_tokenizer",
    "load_model",
    "load_for_inference",
    "generate",
    "local_copy",
]

TINY_PREFIX = "tiny:"

# name -> LlamaConfig overrides; vocab and special ids come from the byte-level tokenizer
TINY_MODELS: dict[str, dict[str, int]] = {
    "llama": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 2, "max_position_embeddings": 1024},
}
_ALIASES = {"tiny-llama": "tiny:llama"}

# ChatML-like; the assistant turn ends with the EOS token so generation stops there.
# (transformers renders templates with trim_blocks: a newline right after a tag is
# dropped, hence the explicit '\n' expression.)
DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}"
    "{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}{{ '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def is_tiny(base: str) -> bool:
    return _ALIASES.get(base, base).startswith(TINY_PREFIX)


def resolve_base(base: str, cache_dir: str | os.PathLike[str] | None = None) -> str:
    """What ``from_pretrained`` should load for ``base``.

    Args:
        base: ``tiny:<name>`` (built locally), a local directory, or a hub model id.
        cache_dir: where tiny models are materialised (default ``<AGENTGYM_HOME>/models/base``).

    Raises:
        BaseModelError: an unknown tiny name.
    """
    base = _ALIASES.get(base, base)
    if base.startswith(TINY_PREFIX):
        name = base[len(TINY_PREFIX):]
        root = Path(cache_dir) if cache_dir else SharedSettings().home / "models" / "base"
        return str(build_tiny(name, root / f"tiny-{name}"))
    if base.startswith(("/", "./", "~")) or Path(base).expanduser().is_dir():
        path = Path(base).expanduser()
        if not path.is_dir():
            raise BaseModelError(f"base model directory {path} does not exist")
        return str(path.resolve())
    return base  # a hub id: from_pretrained resolves (and caches) it


def build_tiny(name: str, directory: Path) -> Path:
    """Materialises ``tiny:<name>`` into ``directory`` (once; concurrent callers are safe)."""
    if name not in TINY_MODELS:
        raise BaseModelError(f"unknown tiny model {name!r}; known: {', '.join(TINY_PREFIX + n for n in TINY_MODELS)}")
    directory = Path(directory)
    if (directory / "config.json").is_file() and (directory / "tokenizer_config.json").is_file():
        return directory
    import torch
    from transformers import ByT5Tokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = ByT5Tokenizer()
    tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE
    shape: dict[str, Any] = dict(TINY_MODELS[name])
    config = LlamaConfig(
        vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None, tie_word_embeddings=True, **shape,
    )
    gen = torch.random.fork_rng(devices=[])
    with gen:
        torch.manual_seed(0)
        model = LlamaForCausalLM(config)
    return save_model_dir(directory, model, tokenizer)


def save_model_dir(directory: Path, model: Any, tokenizer: Any, extra_files: dict[str, str] | None = None) -> Path:
    """Saves a model and its tokenizer (and ``extra_files``: name -> text) as ``directory``, atomically.

    Written to a temporary sibling and renamed: a reader sees the whole directory or
    none; of two concurrent writers one wins and the other's copy is dropped.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text, encoding="utf-8")
        try:
            os.rename(tmp, directory)  # atomic; loses the race harmlessly when another process won
        except OSError:
            if not (directory / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return directory


def load_tokenizer(path: str) -> Any:
    """The tokenizer at ``path``, with a chat template and a pad token."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(path: str, *, dtype: Any = None, attn_implementation: str | None = None, device: str | None = None) -> Any:
    """The causal LM at ``path`` (``dtype`` e.g. ``torch.bfloat16``; default float32)."""
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {}
    if dtype is not None:
        kwargs["dtype"] = dtype
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    model: Any = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    return model.to(device) if device else model


def load_for_inference(base: str, adapter_uri: str | None = None, *, device: str | None = None,
                       cache_dir: str | None = None) -> tuple[Any, Any]:
    """(model, tokenizer) of a base model with an optional LoRA adapter, in eval mode.

    ``adapter_uri`` may be any fsspec URL; a remote adapter is copied to a temporary
    directory first.
    """
    import torch

    path = resolve_base(base, cache_dir)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.startswith("cuda") and torch.cuda.is_bf16_supported() else None
    model = load_model(path, dtype=dtype, device=device)
    tokenizer = load_tokenizer(path)
    if adapter_uri:
        from peft import PeftModel

        with local_copy(adapter_uri) as local:
            model = PeftModel.from_pretrained(model, local)
            model = model.to(device)
    model.eval()
    return model, tokenizer


class local_copy:
    """A local directory holding the files at an fsspec URL (the URL itself when local), as a context manager.

    Raises (on entering):
        BaseModelError: a local directory that does not exist.
    """

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._tmp: str | None = None

    def __enter__(self) -> str:
        import fsspec

        fs, path = fsspec.core.url_to_fs(self.uri)
        if "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)):
            if not Path(path).is_dir():
                raise BaseModelError(f"adapter directory {path} does not exist")
            return path
        self._tmp = tempfile.mkdtemp(prefix="agentgym-adapter-")
        fs.get(path.rstrip("/") + "/", self._tmp, recursive=True)
        return self._tmp

    def __exit__(self, *exc: object) -> None:
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)


def generate(model: Any, tokenizer: Any, messages: list[dict[str, str]], max_new_tokens: int = 64) -> str:
    """Greedy generation of the assistant's reply to ``messages`` with the chat template."""
    import torch

    enc = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    enc = {k: v.to(model.device) for k, v in enc.items()}
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    return str(tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True))
