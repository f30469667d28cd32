"""Small fsspec helpers shared by the trainers (no heavy imports)."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["write_json", "read_json"]


def write_json(uri: str, payload: dict[str, Any]) -> None:
    """Writes ``payload`` as JSON to ``uri`` (any fsspec URL or path), replacing it."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(uri)
    parent = path.rsplit("/", 1)[0]
    if parent:
        fs.makedirs(parent, exist_ok=True)
    fs.pipe_file(path, json.dumps(payload, sort_keys=True).encode())


def read_json(uri: str) -> dict[str, Any] | None:
    """The JSON object at ``uri``, or None when there is nothing there."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(uri)
    try:
        return dict(json.loads(fs.cat_file(path)))
    except FileNotFoundError:
        return None
