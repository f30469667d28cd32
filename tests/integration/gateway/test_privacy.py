"""Deleting a user's data through the API: POST/GET /v1/privacy/deletions (scope admin, audited), applied by the real
sink on the embedded engine, and the models trained on the rewritten dataset flagged by the gateway."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentgym.processors.datasets.store import DatasetStore
from agentgym.processors.sink import ClickHouseSink
from agentgym.processors.store import migrate, open_store
from agentgym.processors.store.rows import insert_records
from agentgym.producers.records import read_topic
from agentgym.schemas.topics import TOPICS
from agentgym.trainers.registry import DELETED_DATA_FLAG, ModelRegistry, ModelVersion
from tests import store_samples, trainer_samples
from tests.integration.gateway.conftest import ServedGateway, auth, call, new_key, test_settings
from tests.workers import wait_for


@pytest.mark.timeout(120)
def test_an_admin_deletes_a_user_and_the_models_trained_on_them_are_flagged(
        bootstrap: str, registry: ModelRegistry, tmp_path: Path, unique: str) -> None:
    tenant, user = f"tp-{unique}", f"user-{unique}"
    store = open_store(f"chdb://{tmp_path / 'ch'}")
    migrate(store)
    exps, _ = trainer_samples.runs(tenant, "bot", 4, start_ms=store_samples.now_ms() - 60_000)
    exps[0]["user_id"] = exps[1]["user_id"] = user
    insert_records(store, "Experience", exps)
    datasets = DatasetStore(str(tmp_path / "datasets"))
    rows = [{"prompt": [{"role": "user", "content": f"q{i}"}], "completion": [{"role": "assistant", "content": "a"}],
             "trace_id": e["trace_id"], "labeller_version": "rules-2", "source": "real", "prompt_key": f"k{i}"} for i, e in enumerate(exps)]
    ds = datasets.write(dataset_id=f"ds-{unique}", tenant_id=tenant, agent_id="bot", kind="sft", created_ms=store_samples.now_ms(),
                        rows={"train": rows}, lineage={"trace_ids": [e["trace_id"] for e in exps]})
    # the gateway's dataset store (under its home) holds a copy the worker does not rewrite: exports leave the user out
    copy = DatasetStore(str(tmp_path / "home" / "datasets")).write(
        dataset_id=f"copy-{unique}", tenant_id=tenant, agent_id="bot", kind="sft", created_ms=store_samples.now_ms(),
        rows={"train": rows}, lineage={"trace_ids": [e["trace_id"] for e in exps]})
    registry.register(ModelVersion(tenant_id=tenant, model_version=f"mv-{unique}", agent_id="bot", base_model="tiny",
                                   status="candidate", dataset_id=ds.dataset_id))
    with ServedGateway(test_settings(bootstrap, tmp_path / "spool", home=tmp_path / "home")) as served:
        url = f"{served.url}/v1/privacy/deletions"
        admin, read = new_key(bootstrap, served, tenant, "read,admin"), new_key(bootstrap, served, tenant, "read")
        for body, field in (({"user_id": ""}, "user_id"), ({}, "user_id"), ({"user_id": "u", "why": 1}, "why"),
                            ({"user_id": "x" * 513}, "user_id"), (["u"], "body")):
            status, answer, _ = call("POST", url, body, auth(admin))
            assert (status, answer["field"]) == (400, field), answer
        assert call("POST", url, {"user_id": user}, auth(read))[0] == 403
        status, answer, _ = call("POST", url, {"user_id": user}, auth(admin))
        assert status == 202 and answer["status"] == "requested" and answer["tenant_id"] == tenant, answer
        deletion = answer["deletion_id"]
        status, listed, _ = call("GET", url, headers=auth(admin))
        assert status == 200 and [d["deletion_id"] for d in listed["deletions"]] == [deletion]

        # the sink (the store's owner) applies it once it holds partition 0 of the runs' topic (its group's
        # assignment arrives with a batch): rows deleted, the dataset rewritten
        sink = ClickHouseSink(bootstrap, store, group=f"privacy-{unique}", batch_ms=100, datasets_url=datasets.url,
                              specs=[TOPICS["experiences"]])

        def left() -> set[str]:
            return {r[0] for r in store.query("SELECT trace_id FROM v_experiences WHERE tenant_id = {t:String}", {"t": tenant}).rows}

        kept = {exps[2]["trace_id"], exps[3]["trace_id"]}
        try:
            wait_for(lambda: (sink.process_batch(), left() == kept)[1], 60, "the sink to apply the deletion")
        finally:
            sink.close()
        assert left() == kept
        rewritten = datasets.manifest(ds.dataset_id)
        assert rewritten.num_examples == 2 and rewritten.checksum != ds.checksum

        def applied() -> dict | None:
            got = call("GET", url + "?status=applied", headers=auth(admin))[1]["deletions"]
            return got[0] if got else None

        shown = wait_for(applied, 30, "the applied deletion in the API")
        assert shown["deletion_id"] == deletion and shown["deleted_rows"]["experiences"] == 2 and shown["datasets"] == [ds.dataset_id]
        status, text, _ = call("GET", f"{served.url}/v1/datasets/{copy.dataset_id}/export", headers=auth(read))
        assert status == 200 and sorted(json.loads(line)["trace_id"] for line in text.splitlines()) == sorted(kept)
        wait_for(lambda: deletion in registry.get(f"mv-{unique}").hyperparameters.get(DELETED_DATA_FLAG, ""), 30,
                 "the model trained on the dataset flagged")
    store.close()
    audit = read_topic(bootstrap, "audit", match=lambda r: r["tenant_id"] == tenant and r["action"] == "privacy.delete")
    assert ("ok", deletion) in {(r["outcome"], r["target"]) for r in audit}
    assert sum(r["outcome"] == "refused" for r in audit) == 6  # the five bad bodies and the read key
    assert not any(user in (r["detail"] or "") + r["target"] for r in audit)  # the log names the user by no id
