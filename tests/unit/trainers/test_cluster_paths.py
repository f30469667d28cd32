"""What a training worker on another node of a Ray cluster finds, and what the launcher warns about.

A job's paths are resolved where it is launched; a worker on another host sees them
only through shared storage. A missing local base model or dataset is an error naming
the node and what the cluster needs, not a hub lookup of a path or a bare "not found".
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from agentgym.processors.datasets.store import DatasetStore
from agentgym.trainers.exceptions import BaseModelError, TrainingError
from agentgym.trainers.settings import TrainSettings
from agentgym.trainers.training.job import TrainJob
from agentgym.trainers.training.launcher import node_local_paths
from agentgym.trainers.training.train_func import base_path_here, dataset_here


def job(**kw: Any) -> TrainJob:
    fields: dict[str, Any] = dict(
        job_id="job-x", model_version="m", tenant_id="t", agent_id="a", dataset_id="d", dataset_uri="s3://b/ds/d",
        kind="sft", method="sft", base_model="org/model", base_path="org/model", model_store="s3://b/models",
        storage_path="s3://b/runs")
    fields.update(kw)
    return TrainJob(**fields)


def test_a_local_base_model_missing_on_this_node_is_an_error_that_says_what_a_cluster_needs(tmp_path: Path) -> None:
    missing = str(tmp_path / "llama-8b")
    with pytest.raises(BaseModelError, match=r"llama-8b does not exist on .*every node needs the base model at the same path"):
        base_path_here(job(base_model=missing, base_path=missing))
    (tmp_path / "llama-8b").mkdir()
    assert base_path_here(job(base_model=missing, base_path=missing)) == missing
    assert base_path_here(job()) == "org/model"  # a hub id: every node resolves it itself


def test_a_tiny_base_missing_on_this_node_is_built_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTGYM_HOME", str(tmp_path / "node-home"))
    built = base_path_here(job(base_model="tiny:llama", base_path=str(tmp_path / "launcher-home" / "tiny-llama")))
    assert built == str(tmp_path / "node-home" / "models" / "base" / "tiny-llama")
    assert (Path(built) / "config.json").is_file()


def test_a_dataset_this_node_cannot_read_names_the_node_and_the_storage_it_needs(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match=r"cannot be read on .*every node reaches at the same URL"):
        dataset_here(job(dataset_uri=str(tmp_path / "datasets" / "ds-gone")))
    rows = {"train": [{"prompt": [{"role": "user", "content": "hi"}], "completion": [{"role": "assistant", "content": "HI!"}],
                       "trace_id": "t", "labeller_version": "v", "source": "success", "prompt_key": "k"}], "eval": []}
    written = DatasetStore(str(tmp_path / "datasets")).write(dataset_id="ds-here", tenant_id="t", agent_id="a", kind="sft",
                                                             created_ms=1, rows=rows)
    assert dataset_here(job(dataset_uri=written.uri)).dataset_id == "ds-here"


def test_the_launcher_lists_the_paths_that_must_be_shared_on_a_cluster(tmp_path: Path) -> None:
    assert node_local_paths(job()) == []  # URLs every node reaches
    local = job(dataset_uri="/data/ds/d", storage_path="file:///runs", model_store="/models", base_model="/llama",
                base_path="/llama")
    assert node_local_paths(local) == ["dataset /data/ds/d", "checkpoint store file:///runs", "model store /models",
                                       "base model /llama"]
    # a tiny base is rebuilt where it is missing; the defaults are local paths under AGENTGYM_HOME
    s = TrainSettings(home=tmp_path)
    tiny = job(base_model="tiny:llama", base_path=str(tmp_path / "tiny"), model_store=s.model_store,
               storage_path=s.train_checkpoint_store)
    assert node_local_paths(tiny) == [f"checkpoint store {s.train_checkpoint_store}", f"model store {s.model_store}"]


def test_the_controller_polls_every_half_second_unless_the_user_chose(monkeypatch) -> None:
    """A worker's ray.train.report waits for the controller's next poll: Ray's 2 s made short jobs mostly wait."""
    from agentgym.trainers.training import launcher

    monkeypatch.delenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", raising=False)
    launcher._ray_train_env()
    assert os.environ["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] == "0.5"
    monkeypatch.setenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "3")
    launcher._ray_train_env()
    assert os.environ["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] == "3"
