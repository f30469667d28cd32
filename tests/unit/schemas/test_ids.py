"""One id validator for every id that becomes a path, and every place that makes the path.

Each kind of id is tried with ``..``, absolute paths, NUL and separators, and each
store that turns an id into a path refuses them before touching the filesystem.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agentgym.schemas.exceptions import InvalidIdError
from agentgym.schemas.ids import ID_KINDS, MAX_ID_LENGTH, is_valid_id, validate_id

HOSTILE = [
    "..", ".", "../../../outside/pwned", "../x", "/etc/passwd", "/", "a/b", "a\\b", "..\\..\\x", "a\x00b", "\x00",
    "", ".hidden", "a b", "a\nb", "tab\t", "x" * (MAX_ID_LENGTH + 1), "C:\\windows", "~root", "a/..", "%2e%2e",
]
GOOD = ["acme", "support-bot", "job-20260101T000000-abc123", "bot-ft-20260101-deadbeef", "exp-v1:2", "ds_1.2",
        "user@example.com", "a=b+c", "x" * MAX_ID_LENGTH, "0"]


@pytest.mark.parametrize("kind", ID_KINDS)
@pytest.mark.parametrize("value", HOSTILE)
def test_every_kind_refuses_what_could_escape_its_directory(kind: str, value: str) -> None:
    with pytest.raises(InvalidIdError) as info:
        validate_id(value, kind)  # type: ignore[arg-type]
    assert info.value.kind == kind and info.value.value == value
    assert kind in str(info.value) and info.value.reason in str(info.value)
    assert not is_valid_id(value)


@pytest.mark.parametrize("kind", ID_KINDS)
@pytest.mark.parametrize("value", GOOD)
def test_ordinary_ids_pass_unchanged(kind: str, value: str) -> None:
    assert validate_id(value, kind) == value  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [None, 3, b"abc"])
def test_non_strings_are_refused(value: object) -> None:
    with pytest.raises(InvalidIdError, match="must be a string"):
        validate_id(value, "job_id")


def test_the_ids_generated_by_the_project_pass() -> None:
    from agentgym.trainers.registry import base_version_for
    from agentgym.trainers.training.job import model_version_for, new_job_id

    job_id = new_job_id()
    assert is_valid_id(job_id)
    assert is_valid_id(model_version_for("Support Bot/../x", job_id))
    assert is_valid_id(base_version_for("Support Bot/../x", "hf/llama"))


# -- every place an id becomes a path ------------------------------------------------

def _nothing_outside(root: Path) -> None:
    outside = root.parent / "outside"
    assert not outside.exists(), "a write escaped the store"


@pytest.mark.parametrize("job_id", ["../../../outside/pwned", "/tmp/pwned", "a\x00b", "..", "a/b"])
def test_job_store_refuses_unsafe_job_ids(tmp_path: Path, job_id: str) -> None:
    from agentgym.trainers.jobs import JobRecord, JobStore

    root = tmp_path / "deep" / "er" / "jobs"
    store = JobStore(str(root))
    with pytest.raises(InvalidIdError, match="job_id"):
        store.save(JobRecord(job_id=job_id, dataset_id="d", tenant_id="t", agent_id="a", kind="sft", status="queued"))
    with pytest.raises(InvalidIdError, match="job_id"):
        store.get(job_id)
    assert not list(tmp_path.rglob("pwned*")) and not list(tmp_path.rglob("*.json"))
    _nothing_outside(root)


@pytest.mark.parametrize("job_id", ["../../outside", "/abs", "a\x00", "x/../.."])
def test_training_progress_path_refuses_unsafe_job_ids(tmp_path: Path, job_id: str) -> None:
    from agentgym.trainers.jobs import JobRecord, JobStore
    from agentgym.trainers.training.launcher import progress_uri_for

    class _Job:  # only the two fields progress_uri_for reads
        storage_path = str(tmp_path / "ckpt")

    job = _Job()
    job.job_id = job_id  # type: ignore[attr-defined]
    with pytest.raises(InvalidIdError, match="job_id"):
        progress_uri_for(job)  # type: ignore[arg-type]
    rec = JobRecord(job_id=job_id, dataset_id="d", tenant_id="t", agent_id="a", kind="sft", status="queued")
    with pytest.raises(InvalidIdError, match="job_id"):
        JobStore(str(tmp_path / "jobs")).progress(rec, str(tmp_path / "ckpt"))


@pytest.mark.parametrize("dataset_id", ["..", "../outside", "/etc", "a\x00b", "a\\b", ".git"])
def test_dataset_store_refuses_unsafe_dataset_ids(tmp_path: Path, dataset_id: str) -> None:
    from agentgym.processors.datasets.store import DatasetStore

    store = DatasetStore(str(tmp_path / "datasets"))
    with pytest.raises(InvalidIdError, match="dataset_id"):
        store.uri(dataset_id)
    with pytest.raises(InvalidIdError, match="dataset_id"):
        store.manifest(dataset_id)
    with pytest.raises(InvalidIdError, match="dataset_id"):
        store.write(dataset_id=dataset_id, tenant_id="t", agent_id="a", kind="sft", created_ms=0, rows={"train": []})
    _nothing_outside(tmp_path / "datasets")


@pytest.mark.parametrize("version", ["../../outside", "/abs", "a\x00", "a/b"])
def test_model_store_and_registry_refuse_unsafe_model_versions(tmp_path: Path, version: str) -> None:
    from agentgym.trainers.registry import ModelRegistry, ModelVersion
    from agentgym.trainers.training.job import TrainJob

    fields = {name: f.default for name, f in TrainJob.model_fields.items() if not f.is_required()}
    job = TrainJob.model_construct(**fields, job_id="job-1", model_version=version, model_store=str(tmp_path / "models"),
                                   storage_path=str(tmp_path / "ckpt"))
    with pytest.raises(InvalidIdError, match="model_version"):
        _ = job.adapter_uri
    registry = ModelRegistry("127.0.0.1:1")  # refused before anything is sent
    with pytest.raises(InvalidIdError, match="model_version"):
        registry.register(ModelVersion(tenant_id="t", model_version=version, agent_id="a", base_model="b", status="candidate"))
    with pytest.raises(InvalidIdError, match="tenant_id"):
        registry.register(ModelVersion(tenant_id="../t", model_version="v1", agent_id="a", base_model="b", status="candidate"))
    with pytest.raises(InvalidIdError, match="agent_id"):
        registry.register(ModelVersion(tenant_id="t", model_version="v1", agent_id="a/b", base_model="b", status="candidate"))


@pytest.mark.parametrize("experiment_id", ["..", "../x", "/abs", "a\x00", "a/b"])
def test_experiment_config_refuses_unsafe_experiment_ids(experiment_id: str) -> None:
    from agentgym.processors.experiments import ExperimentConfig, MetricSpec, VariantSpec
    from agentgym.processors.experiments.exceptions import ExperimentConfigError

    c = ExperimentConfig(experiment_id=experiment_id, tenant_id="acme", agent_id="bot",
                         variants=(VariantSpec("control", "v3", 1.0, True), VariantSpec("treatment", "v4", 1.0)),
                         primary_metric=MetricSpec.of("success_rate"))
    with pytest.raises(ExperimentConfigError, match="experiment_id"):
        c.validate()
