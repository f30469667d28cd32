"""The SDK imports and records from an app directory whose own modules shadow generic names."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

from agentgym.producers.records import watermarks
from agentgym.schemas import default_schema_set
from agentgym.schemas.codec import AvroCodec


def test_sdk_records_from_a_directory_holding_schemas_ops_and_producers(bootstrap: str, tmp_path: Path, unique: str) -> None:
    app = tmp_path / "app"
    (app / "ops").mkdir(parents=True)
    (app / "ops" / "__init__.py").write_text("raise ImportError('the app ops package must not be imported by agentgym')\n")
    (app / "schemas.py").write_text("from pydantic import BaseModel\n\nclass Item(BaseModel):\n    name: str\n")
    (app / "producers.py").write_text("raise ImportError('the app producers module must not be imported by agentgym')\n")
    script = textwrap.dedent(
        f"""
        import json, schemas
        from agentgym import AgentGym
        gym = AgentGym(bootstrap_servers={bootstrap!r}, tenant_id="t-{unique}", agent_id="a-{unique}")
        trace_id = gym.record_experience(input="hi", output="hello", model_name="m", model_version="v1", latency_ms=12.5)
        gym.close()
        print(json.dumps({{"trace_id": trace_id, "app_schemas": schemas.__file__}}))
        """
    )
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{unique}", "enable.auto.commit": False})
    topic = "gym-experiences-v1"
    partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
    start = [TopicPartition(topic, p, watermarks(consumer, topic, p)[1]) for p in partitions]
    out = subprocess.run([sys.executable, "-c", script], cwd=app, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["app_schemas"].startswith(str(app))

    codec = AvroCodec(default_schema_set())
    consumer.assign(start)  # only what was written after the offsets read before the agent ran
    try:
        found = None
        deadline = time.monotonic() + 60
        while found is None and time.monotonic() < deadline:
            for msg in consumer.consume(500, 0.5):
                if msg.error() is None and msg.key() and msg.key().decode() == result["trace_id"]:
                    found = codec.decode(msg.value())
                    break
        assert found is not None, "the experience never reached Kafka"
        assert found.record["tenant_id"] == f"t-{unique}"
    finally:
        consumer.close()
