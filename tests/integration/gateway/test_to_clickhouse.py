"""Events accepted by the API reach ClickHouse through the real sink, with the key's tenant."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agentgym.processors.sink import ClickHouseSink
from agentgym.processors.store import migrate, open_store
from agentgym.processors.store.base import Store
from agentgym.schemas.topics import TOPICS
from tests.integration.gateway.conftest import Served, auth, call, experience, new_key
from tests.workers import wait_for


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"chdb://{tmp_path / 'ch'}")
    migrate(s)
    yield s
    s.close()


@pytest.mark.timeout(180)
def test_accepted_events_land_in_clickhouse(served: Served, bootstrap: str, store: Store, unique: str) -> None:
    tenant = f"t-{unique}"
    key = new_key(bootstrap, served, tenant)
    status, body, _ = call("POST", f"{served.url}/v1/experiences",
                           {"events": [experience(i, agent_id="ch-agent", tenant_id=tenant) for i in range(4)]}, auth(key))
    assert status == 202
    traces = body["trace_ids"]
    status, fb, _ = call("POST", f"{served.url}/v1/feedback", {"trace_id": traces[0], "thumbs_up": True, "agent_id": "ch-agent"}, auth(key))
    assert status == 202
    sink = ClickHouseSink(bootstrap, store, group=f"gw-{unique}", batch_size=5000, batch_ms=200,
                          specs=[TOPICS["experiences"], TOPICS["feedback"]])
    q_exp = "SELECT trace_id, agent_id FROM v_experiences WHERE tenant_id = {t:String} ORDER BY trace_id"
    q_fb = "SELECT trace_id, kind FROM v_feedback WHERE tenant_id = {t:String}"
    try:
        def landed() -> bool:
            sink.process_batch()
            return len(store.query(q_exp, {"t": tenant}).rows) == 4 and len(store.query(q_fb, {"t": tenant}).rows) == 1

        wait_for(landed, 120, "the sink to store the gateway's events", every=0.0)
    finally:
        sink.close()
    assert store.query(q_exp, {"t": tenant}).rows == [(t, "ch-agent") for t in sorted(traces)]
    assert store.query(q_fb, {"t": tenant}).rows == [(traces[0], "thumbs")]
