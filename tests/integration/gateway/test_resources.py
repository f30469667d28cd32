"""The API's resource routes against the real broker: experiments (and their live stream), datasets,
models and training jobs; and the isolation matrix: tenant A's key against every one of tenant B's
resources answers 403 or 404, never B's data, and changes nothing of B's."""

from __future__ import annotations

import json
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agentgym.gateway.experiments import EXPERIMENTS
from agentgym.gateway.openapi import openapi_document
from agentgym.processors.datasets.store import DatasetStore, Manifest
from agentgym.producers.records import RecordProducer
from agentgym.trainers.fsutil import write_json
from agentgym.trainers.registry import ModelRegistry, ModelVersion
from agentgym.trainers.service import TrainerService
from agentgym.processors.datasets.settings import DatasetSettings
from agentgym.trainers.settings import TrainerServiceSettings, TrainSettings
from agentgym.trainers.synth.jobs import SynthJobStore, run_queued
from agentgym.trainers.synth.service import SynthService
from agentgym.trainers.synth.settings import SynthSettings
from tests.integration.gateway.conftest import Served, ServedGateway, auth, call, new_key, test_settings
from tests.store_samples import decision, stats_snapshot
from tests.workers import wait_for

ROUTE_PREFIXES = ("/v1/experiments", "/v1/datasets", "/v1/models", "/v1/training-jobs", "/v1/synthetic-jobs", "/v1/annotations",
                  "/v1/privacy/deletions")


@dataclass
class World:
    served: Served
    app: Any  # the served aiohttp application
    home: Path
    a: str  # tenant A's admin (and read) key
    a_read: str  # tenant A's read-only key
    b: str  # tenant B's admin key
    tenant_a: str
    tenant_b: str
    b_experiment: str
    b_dataset: Manifest
    b_model: str
    b_job: str
    b_synth_job: str


def _rows(n: int, tag: str) -> list[dict[str, Any]]:
    return [{"prompt": [{"role": "user", "content": f"{tag} question {i}"}], "completion": [{"role": "assistant", "content": f"answer {i}"}],
             "trace_id": f"{tag}-t{i}", "labeller_version": "rules-2", "source": "real", "prompt_key": f"k{i}"} for i in range(n)]


def write_dataset(home: Path, dataset_id: str, tenant: str, train: int = 60) -> Manifest:
    return DatasetStore(str(home / "datasets")).write(
        dataset_id=dataset_id, tenant_id=tenant, agent_id="bot", kind="sft", created_ms=1_700_000_000_000,
        rows={"train": _rows(train, dataset_id), "eval": _rows(4, dataset_id + "-eval")}, lineage={"trace_ids": ["secret-trace"]})


def experiment_body(name: str, **extra: Any) -> dict[str, Any]:
    return {"experiment_id": name, "agent_id": "bot", "variants": [
        {"name": "control", "model_version": "v1", "weight": 0.5}, {"name": "candidate", "model_version": "v2", "weight": 0.5}],
        "primary_metric": "success_rate", "guardrails": [{"name": "latency_ms", "limit": 0.1, "cap": 30000}], **extra}


@pytest.fixture(scope="module")
def world(bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    base = tmp_path_factory.mktemp("resources")
    home = base / "home"
    settings = test_settings(bootstrap, base / "spool", home=home, max_streams=2)
    suffix = uuid.uuid4().hex[:8]
    tenant_a, tenant_b = f"ta-{suffix}", f"tb-{suffix}"
    gateway = ServedGateway(settings)
    with gateway as served:
        a = new_key(bootstrap, served, tenant_a, "read,admin")
        a_read = new_key(bootstrap, served, tenant_a, "read")
        b = new_key(bootstrap, served, tenant_b, "read,admin")
        status, exp, _ = call("POST", f"{served.url}/v1/experiments", experiment_body("b-exp"), auth(b))
        assert status == 201, exp
        manifest = write_dataset(home, f"ds-{tenant_b}", tenant_b)
        status, job, _ = call("POST", f"{served.url}/v1/training-jobs", {"dataset_id": manifest.dataset_id}, auth(b))
        assert status == 202, job
        status, synth_job, _ = call("POST", f"{served.url}/v1/synthetic-jobs", {"agent_id": "bot", "n": 3}, auth(b))
        assert status == 202, synth_job
        registry = ModelRegistry(bootstrap)
        try:
            registry.register(ModelVersion(tenant_id=tenant_b, model_version=f"mv-{tenant_b}", agent_id="bot", base_model="tiny:llama",
                                           status="candidate", adapter_uri="file:///secret/adapter"))
        finally:
            registry.close()
        yield World(served, gateway.app, home, a, a_read, b, tenant_a, tenant_b, exp["experiment_id"], manifest, f"mv-{tenant_b}", job["job_id"],
                    synth_job["job_id"])


# -- experiments -------------------------------------------------------------------------
def test_experiments_lifecycle_through_the_api(world: World, unique: str) -> None:
    url, key = world.served.url, world.a
    status, exp, _ = call("POST", f"{url}/v1/experiments", experiment_body(f"e-{unique}", draft=True), auth(key))
    assert status == 201
    exp_id = exp["experiment_id"]
    assert exp_id == f"{world.tenant_a}:e-{unique}" and exp["tenant_id"] == world.tenant_a and exp["status"] == "draft"
    assert [v["is_control"] for v in exp["variants"]] == [True, False]
    assert call("POST", f"{url}/v1/experiments", experiment_body(f"e-{unique}"), auth(key))[0] == 409
    got = call("GET", f"{url}/v1/experiments/{exp_id}", headers=auth(world.a_read))
    assert got[0] == 200 and got[1]["config_version"] == 1
    steps = [("start", "running"), ("pause", "paused"), ("resume", "running"), ("rollback", "rolled_back")]
    for version, (verb, expected) in enumerate(steps, start=2):
        status, body, _ = call("POST", f"{url}/v1/experiments/{exp_id}/{verb}", headers=auth(key))
        assert (status, body["status"], body["config_version"]) == (200, expected, version), verb
        # read-your-writes: the answer came once this process's follower held the change
        assert call("GET", f"{url}/v1/experiments/{exp_id}", headers=auth(key))[1]["status"] == expected
    assert [v["weight"] for v in body["variants"]] == [1.0, 0.0]
    status, body, _ = call("POST", f"{url}/v1/experiments/{exp_id}/stop", headers=auth(key))
    assert status == 409 and body["field"] == "status" and "rolled_back" in body["reason"]
    assigned = call("GET", f"{url}/v1/experiments/{exp_id}/assignment?unit_id=u1", headers=auth(key))[1]["assignment"]
    assert assigned["variant"] == "control"  # rolled back: everyone on the control
    listed = call("GET", f"{url}/v1/experiments?status=rolled_back", headers=auth(key))[1]["experiments"]
    assert exp_id in [e["experiment_id"] for e in listed]
    assert call("GET", f"{url}/v1/experiments?status=active", headers=auth(key))[1]["experiments"] == [
        e for e in call("GET", f"{url}/v1/experiments", headers=auth(key))[1]["experiments"] if e["status"] in ("draft", "running", "paused")]


def test_experiment_requests_are_checked_field_by_field(world: World, unique: str) -> None:
    url = world.served.url
    cases = [
        (experiment_body("x:y"), 400, "experiment_id"),
        ({**experiment_body(f"f-{unique}"), "variants": [{"name": "only", "model_version": "v1"}]}, 400, "variants"),
        ({**experiment_body(f"f-{unique}"), "primary_metric": "happiness"}, 400, "primary_metric.name"),
        ({**experiment_body(f"f-{unique}"), "guardrails": [{"name": "latency_ms"}]}, 400, "guardrails[0].limit"),
        ({**experiment_body(f"f-{unique}"), "alpha": 2}, 400, "alpha"),
        ({**experiment_body(f"f-{unique}"), "colour": "red"}, 400, "colour"),
        ({**experiment_body(f"f-{unique}"), "agent_id": "../etc"}, 400, "agent_id"),
        ({**experiment_body(f"f-{unique}"), "variants": [{"name": "a", "model_version": "v1"}, {"name": "b", "model_version": "v/2"}]},
         400, "variants[1].model_version"),
        ({**experiment_body(f"f-{unique}"), "tenant_id": world.tenant_b}, 403, "tenant_id"),
    ]
    for body, status, field in cases:
        got = call("POST", f"{url}/v1/experiments", body, auth(world.a))
        assert (got[0], got[1]["field"]) == (status, field), body
    read_only = call("POST", f"{url}/v1/experiments", experiment_body(f"g-{unique}"), auth(world.a_read))
    assert read_only[0] == 403 and read_only[1]["error"] == "forbidden_scope"
    assert call("GET", f"{url}/v1/experiments/{world.tenant_a}:f-{unique}", headers=auth(world.a))[0] == 404  # nothing was written


class SSE:
    """A Server-Sent Events client reading one stream in a thread (so the test can close it)."""

    def __init__(self, url: str, key: str) -> None:
        self.resp = urllib.request.urlopen(urllib.request.Request(url, headers=auth(key)), timeout=30)

    def next_event(self) -> tuple[str, dict[str, Any]]:
        event, data = "", ""
        while True:
            line = self.resp.readline().decode()
            assert line, "the stream ended"
            if line.startswith("event: "):
                event = line[7:].strip()
            elif line.startswith("data: "):
                data = line[6:].strip()
            elif line == "\n" and event:
                return event, json.loads(data)

    def close(self) -> None:
        self.resp.close()


def test_the_live_stream_carries_the_experiments_snapshots_and_decisions(world: World, bootstrap: str, unique: str) -> None:
    url = world.served.url
    exp_id = call("POST", f"{url}/v1/experiments", experiment_body(f"s-{unique}"), auth(world.a))[1]["experiment_id"]
    other = call("POST", f"{url}/v1/experiments", experiment_body(f"o-{unique}"), auth(world.a))[1]["experiment_id"]
    stream = SSE(f"{url}/v1/experiments/{exp_id}/stream", world.a_read)
    try:
        assert stream.next_event() == ("ready", {"experiment_id": exp_id})
        mine, theirs, decided = stats_snapshot(world.tenant_a, exp_id), stats_snapshot(world.tenant_a, other), decision(world.tenant_a, exp_id)
        with RecordProducer(bootstrap) as producer:
            producer.send("experiment-stats", theirs)
            producer.send("experiment-stats", mine)
            producer.send("decisions", decided)
        got = [stream.next_event(), stream.next_event()]
        assert sorted((e, d["event_id"]) for e, d in got) == sorted([("stats", mine["event_id"]), ("decision", decided["event_id"])])
        stats = next(d for e, d in got if e == "stats")
        assert stats["arms"][1]["n"] == 110 and stats["experiment_id"] == exp_id
        # bounded: this gateway allows 2 open streams
        second = SSE(f"{url}/v1/experiments/{exp_id}/stream", world.a)
        try:
            status, body, headers = call("GET", f"{url}/v1/experiments/{exp_id}/stream", headers=auth(world.a))
            assert status == 503 and body["error"] == "too_many_streams" and headers["Retry-After"]
        finally:
            second.close()
    finally:
        stream.close()
    live = world.app[EXPERIMENTS].streams  # closed clients are unsubscribed
    wait_for(lambda: live.open_streams == 0, 30, "the closed streams to be cleaned up")
    # a shutting-down server ends its streams (on_shutdown), so it need not wait for the clients
    last = SSE(f"{url}/v1/experiments/{exp_id}/stream", world.a)
    try:
        assert last.next_event()[0] == "ready"
        live.end_all()
        assert last.resp.readline() == b""  # the response ended
    finally:
        last.close()
    wait_for(lambda: live.open_streams == 0, 30, "the ended stream to be cleaned up")


# -- datasets ------------------------------------------------------------------------------
def test_datasets_list_show_and_export(world: World, unique: str) -> None:
    url, key = world.served.url, world.a_read
    m = write_dataset(world.home, f"ds-{unique}", world.tenant_a, train=25)
    listed = call("GET", f"{url}/v1/datasets?kind=sft", headers=auth(key))[1]["datasets"]
    assert [d["dataset_id"] for d in listed] == [m.dataset_id]  # the tenant's only; B's is not there
    status, shown, _ = call("GET", f"{url}/v1/datasets/{m.dataset_id}", headers=auth(key))
    assert status == 200 and shown["splits"] == {"train": 25, "eval": 4} and shown["checksum"] == m.checksum
    assert "secret-trace" not in json.dumps(shown) and shown["lineage"]["source_trace_count"] == 1
    req = urllib.request.Request(f"{url}/v1/datasets/{m.dataset_id}/export", headers=auth(key))
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.headers["Content-Type"].startswith("application/x-ndjson") and resp.headers["X-AgentGym-Examples"] == "29"
        lines = [json.loads(line) for line in resp.read().splitlines()]
    store = DatasetStore(str(world.home / "datasets"))
    assert [{k: v for k, v in r.items() if k != "split"} for r in lines] == store.read(m, "train") + store.read(m, "eval")
    assert [r["split"] for r in lines] == ["train"] * 25 + ["eval"] * 4
    evals = call("GET", f"{url}/v1/datasets/{m.dataset_id}/export?split=eval", headers=auth(key))[1]
    assert len(evals.splitlines()) == 4
    assert call("GET", f"{url}/v1/datasets/{m.dataset_id}/export?split=test", headers=auth(key))[1]["field"] == "split"


# -- models ----------------------------------------------------------------------------------
def test_models_list_show_promote_and_retire(world: World, registry: ModelRegistry, unique: str) -> None:
    url, key = world.served.url, world.a
    agent = f"bot-{unique}"
    for version, status in ((f"champ-{unique}", "champion"), (f"cand-{unique}", "candidate"), (f"rej-{unique}", "rejected")):
        registry.register(ModelVersion(tenant_id=world.tenant_a, model_version=version, agent_id=agent, base_model="tiny:llama", status=status))
    wait_for(lambda: len(call("GET", f"{url}/v1/models?agent_id={agent}", headers=auth(key))[1]["models"]) == 3, 30, "the registry follower")
    status, body, _ = call("POST", f"{url}/v1/models/cand-{unique}/promote", headers=auth(key))
    assert (status, body["status"]) == (200, "champion")
    statuses = {m["model_version"]: m["status"] for m in call("GET", f"{url}/v1/models?agent_id={agent}", headers=auth(world.a_read))[1]["models"]}
    assert statuses[f"champ-{unique}"] == "retired" and statuses[f"cand-{unique}"] == "champion"  # the previous champion retired
    assert registry.get(f"cand-{unique}").status == "champion"  # on the registry's topic, as the CLI sees it
    rejected = call("POST", f"{url}/v1/models/rej-{unique}/promote", headers=auth(key))
    assert rejected[0] == 409 and "rejected" in rejected[1]["reason"]
    assert call("POST", f"{url}/v1/models/cand-{unique}/retire", headers=auth(key))[1]["status"] == "retired"
    assert call("GET", f"{url}/v1/models/cand-{unique}", headers=auth(key))[1]["status"] == "retired"
    assert call("POST", f"{url}/v1/models/cand-{unique}/retire", headers=auth(world.a_read))[0] == 403


def test_a_version_registered_elsewhere_is_found_at_once(world: World, registry: ModelRegistry, unique: str) -> None:
    # the registry acknowledged each record; the gateway's follower reads it a moment later: a lookup
    # that misses reads the topic up to its end first, so no read right after the write answers 404
    for i in range(5):
        version = f"fresh-{unique}-{i}"
        registry.register(ModelVersion(tenant_id=world.tenant_a, model_version=version, agent_id="bot", base_model="tiny:llama", status="candidate"))
        status, body, _ = call("GET", f"{world.served.url}/v1/models/{version}", headers=auth(world.a_read))
        assert (status, body.get("model_version")) == (200, version), body
    assert call("GET", f"{world.served.url}/v1/models/fresh-{unique}-9", headers=auth(world.a))[0] == 404


# -- training jobs -----------------------------------------------------------------------------
def test_a_training_job_is_requested_for_the_trainer_service(world: World, bootstrap: str, unique: str) -> None:
    url, key = world.served.url, world.a
    m = write_dataset(world.home, f"dj-{unique}", world.tenant_a)
    small = write_dataset(world.home, f"dk-{unique}", world.tenant_a, train=3)
    status, job, _ = call("POST", f"{url}/v1/training-jobs", {"dataset_id": m.dataset_id}, auth(key))
    assert status == 202 and job["status"] == "deferred" and job["dataset_id"] == m.dataset_id and job["tenant_id"] == world.tenant_a
    again = call("POST", f"{url}/v1/training-jobs", {"dataset_id": m.dataset_id}, auth(key))
    assert again[0] == 409 and job["job_id"] in again[1]["reason"]
    too_small = call("POST", f"{url}/v1/training-jobs", {"dataset_id": small.dataset_id}, auth(key))
    assert too_small[0] == 409 and "MIN_EXAMPLES" in too_small[1]["reason"]
    assert call("POST", f"{url}/v1/training-jobs", {"dataset_id": "nope"}, auth(key))[0] == 404
    assert call("POST", f"{url}/v1/training-jobs", {}, auth(key))[1]["field"] == "dataset_id"
    # the trainer service sees it as its own: the builder's announcement of the same dataset is not trained twice
    settings = TrainerServiceSettings(home=world.home, bootstrap_servers=bootstrap, trainer_auto_promote=False)
    service = TrainerService(settings, TrainSettings(home=world.home))
    try:
        admitted = service.admit(m.announcement())
    finally:
        service.close()
    assert admitted.status == "skipped" and job["job_id"] in admitted.reason
    shown = call("GET", f"{url}/v1/training-jobs/{job['job_id']}", headers=auth(world.a_read))[1]
    assert shown["status"] == "deferred" and shown["progress"] is None
    checkpoints = TrainSettings(home=world.home).train_checkpoint_store
    write_json(f"{checkpoints}/{job['job_id']}/agentgym-progress.json", {"metrics": {"step": 7, "loss": 1.25}})
    shown = call("GET", f"{url}/v1/training-jobs/{job['job_id']}", headers=auth(world.a_read))[1]
    assert shown["progress"]["metrics"] == {"step": 7, "loss": 1.25}
    listed = call("GET", f"{url}/v1/training-jobs?dataset_id={m.dataset_id}", headers=auth(world.a_read))[1]["jobs"]
    assert {j["job_id"]: j["status"] for j in listed} == {job["job_id"]: "deferred", admitted.job_id: "skipped"}


# -- synthetic jobs ----------------------------------------------------------------------------
def test_a_synthetic_job_is_queued_and_run_by_the_synth_runner(world: World, bootstrap: str, unique: str) -> None:
    url, key = world.served.url, world.a
    agent = f"bot-{unique}"
    for body, field in (({"agent_id": agent, "n": 3, "generators": ["evil.module:attr"]}, "generators"),
                        ({"agent_id": agent, "n": 3, "specs": ["/etc/passwd"]}, "specs"),
                        ({"agent_id": agent, "n": 0}, "n"), ({"agent_id": "../x", "n": 3}, "agent_id"),
                        ({"agent_id": agent, "n": 3, "generators": [], "specs": []}, "generators")):
        status, answer, _ = call("POST", f"{url}/v1/synthetic-jobs", body, auth(key))
        assert (status, answer["field"]) == (400, field), body
    status, job, _ = call("POST", f"{url}/v1/synthetic-jobs", {"agent_id": agent, "n": 6, "seed": 3, "generators": [],
                                                               "specs": ["tool_routing"]}, auth(key))
    assert status == 202 and job["status"] == "queued" and job["tenant_id"] == world.tenant_a
    assert call("POST", f"{url}/v1/synthetic-jobs", {"agent_id": agent, "n": 3}, auth(world.a_read))[0] == 403
    # what `agentgym synth serve` does with the queue (no ClickHouse: a spec-only job mines nothing)
    settings = SynthSettings(home=world.home, bootstrap_servers=bootstrap)
    dataset_settings = DatasetSettings(home=world.home)
    service = SynthService(None, DatasetStore(dataset_settings.dataset_store), settings, dataset_settings)
    ran = run_queued(SynthJobStore(settings.jobs_dir), service)
    assert [(j.job_id, j.status) for j in ran if j.tenant_id == world.tenant_a] == [(job["job_id"], "succeeded")]
    shown = call("GET", f"{url}/v1/synthetic-jobs/{job['job_id']}", headers=auth(world.a_read))[1]
    assert shown["status"] == "succeeded" and shown["scenarios"] == 6 and shown["dataset_id"]
    datasets = call("GET", f"{url}/v1/datasets?kind=synthetic&agent_id={agent}", headers=auth(key))[1]["datasets"]
    assert [(d["dataset_id"], d["num_examples"]) for d in datasets] == [(shown["dataset_id"], 6)]
    listed = call("GET", f"{url}/v1/synthetic-jobs?agent_id={agent}", headers=auth(key))[1]["jobs"]
    assert [j["job_id"] for j in listed] == [job["job_id"]]


# -- isolation ---------------------------------------------------------------------------------
def _matrix(w: World) -> list[tuple[str, str, Any]]:
    e, d, mv, j = w.b_experiment, w.b_dataset.dataset_id, w.b_model, w.b_job
    return [
        ("GET", f"/v1/experiments/{e}", None),
        *[("POST", f"/v1/experiments/{e}/{verb}", None) for verb in ("start", "pause", "resume", "stop", "rollback")],
        ("GET", f"/v1/experiments/{e}/stream", None),
        ("GET", f"/v1/experiments/{e}/assignment?unit_id=u1", None),
        ("POST", "/v1/experiments", {**experiment_body("b-exp"), "tenant_id": w.tenant_b}),
        ("GET", f"/v1/datasets/{d}", None),
        ("GET", f"/v1/datasets/{d}/export", None),
        ("GET", f"/v1/models/{mv}", None),
        ("POST", f"/v1/models/{mv}/promote", None),
        ("POST", f"/v1/models/{mv}/retire", None),
        ("POST", "/v1/training-jobs", {"dataset_id": d}),
        ("GET", f"/v1/training-jobs/{j}", None),
        ("POST", "/v1/synthetic-jobs", {"agent_id": "bot", "n": 3, "tenant_id": w.tenant_b}),
        ("GET", f"/v1/synthetic-jobs/{w.b_synth_job}", None),
        ("GET", f"/v1/annotations/next?experiment_id={e}", None),
        # naming B's experiment, refused before any read of the store (tests/integration/gateway/test_annotations.py
        # checks the store-scoped refusal of another tenant's trace without it)
        ("POST", "/v1/annotations/b-trace", {"success": True, "experiment_id": e}),
        # deleting a user of B's: the tenant is the key's, a body naming B is refused
        ("POST", "/v1/privacy/deletions", {"user_id": "u1", "tenant_id": w.tenant_b}),
    ]


def test_isolation_matrix_tenant_a_against_tenant_b(world: World) -> None:
    url, w = world.served.url, world
    matrix = _matrix(w)
    covered = {(m, p.split("?")[0].replace(w.b_experiment, "{experiment_id}").replace(w.b_dataset.dataset_id, "{dataset_id}")
                .replace(w.b_model, "{model_version}").replace(w.b_job, "{job_id}").replace(w.b_synth_job, "{job_id}")
                .replace("b-trace", "{trace_id}")) for m, p, _ in matrix}
    documented = {(m.upper(), p) for p, ops in openapi_document()["paths"].items() if p.startswith(ROUTE_PREFIXES) for m in ops}
    lists = {("GET", p) for p in ROUTE_PREFIXES}  # lists take no id: checked below
    assert documented - lists <= covered, f"routes missing from the isolation matrix: {sorted(documented - lists - covered)}"
    b_views = [f"/v1/experiments/{w.b_experiment}", f"/v1/models/{w.b_model}", f"/v1/datasets/{w.b_dataset.dataset_id}",
               f"/v1/training-jobs/{w.b_job}", f"/v1/synthetic-jobs/{w.b_synth_job}", "/v1/training-jobs"]
    status, deletion, _ = call("POST", url + "/v1/privacy/deletions", {"user_id": "secret-user-of-b"}, auth(w.b))
    assert status == 202 and deletion["tenant_id"] == w.tenant_b, deletion
    before = [call("GET", url + v, headers=auth(w.b)) for v in b_views]
    assert all(status == 200 for status, _, _ in before), [(v, status, answer) for v, (status, answer, _) in zip(b_views, before) if status != 200]
    secrets = (w.b_experiment, w.b_dataset.dataset_id, w.b_dataset.checksum, w.b_model, w.b_job, w.b_synth_job, w.tenant_b, "secret")
    for method, path, body in matrix:
        for key in (w.a, w.a_read):
            status, answer, _ = call(method, url + path, body, auth(key))
            assert status in (403, 404), (method, path, status, answer)
            sent = path + json.dumps(body)  # an answer may name what the request sent, nothing else of B's
            assert not [s for s in secrets if s in json.dumps(answer) and s not in sent], (method, path, answer)
    for prefix, field in (("/v1/experiments", "experiments"), ("/v1/datasets", "datasets"), ("/v1/models", "models"),
                          ("/v1/training-jobs", "jobs"), ("/v1/synthetic-jobs", "jobs"),
                          ("/v1/privacy/deletions", "deletions")):  # (/v1/annotations has no list)
        status, answer, _ = call("GET", url + prefix, headers=auth(w.a))
        assert status == 200 and not any(s in json.dumps(answer) for s in secrets), prefix
    # and nothing of B's changed
    assert [call("GET", url + v, headers=auth(w.b))[1] for v in b_views] == [b for _, b, _ in before]
    assert [j["job_id"] for j in before[-1][1]["jobs"]] == [w.b_job]
