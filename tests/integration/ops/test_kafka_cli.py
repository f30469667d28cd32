"""``agentgym kafka start|status|stop`` and the topics the project creates, on a real broker."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from confluent_kafka.admin import AdminClient, ConfigResource

from agentgym.ops.cli import main
from agentgym.ops.kafka.broker import free_port
from agentgym.schemas import TOPICS


def test_start_status_stop(tmp_path: Path) -> None:
    runner = CliRunner()
    port = free_port()
    args = ["--port", str(port), "--data-dir", str(tmp_path / "kafka")]
    try:
        res = runner.invoke(main, ["kafka", "start", *args])
        assert res.exit_code == 0, res.output
        assert f"bootstrap 127.0.0.1:{port}" in res.output and "created topics: gym-experiences-v1" in res.output
        res = runner.invoke(main, ["kafka", "status", *args])
        assert res.exit_code == 0 and "serving metadata" in res.output
        # idempotent: a second start finds it running and creates nothing new
        res = runner.invoke(main, ["kafka", "start", *args])
        assert res.exit_code == 0 and "created topics" not in res.output
    finally:
        res = runner.invoke(main, ["kafka", "stop", *args])
    assert res.exit_code == 0 and "kafka stopped" in res.output
    res = runner.invoke(main, ["kafka", "status", *args])
    assert res.exit_code == 1 and "not running" in res.output


def test_topics_have_the_designed_layout(bootstrap: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    md = admin.list_topics(timeout=10)
    for spec in TOPICS.values():
        assert spec.name in md.topics, spec.name
        assert len(md.topics[spec.name].partitions) == spec.partitions, spec.name
    resources = [ConfigResource(ConfigResource.Type.TOPIC, s.name) for s in TOPICS.values()]
    for res, fut in admin.describe_configs(resources).items():
        policy = fut.result(10)["cleanup.policy"].value
        expected = "compact" if TOPICS_BY_NAME[res.name].compacted else "delete"
        assert policy == expected, f"{res.name}: cleanup.policy {policy}"


TOPICS_BY_NAME = {s.name: s for s in TOPICS.values()}
