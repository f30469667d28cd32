"""The local cluster's layout and properties, and ``agentgym kafka`` on a cluster's data directory (no JVM)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from agentgym.ops.cli import main
from agentgym.ops.exceptions import StackError
from agentgym.ops.kafka.broker import CLUSTER_FILE, KafkaBroker, KafkaCluster, free_ports
from agentgym.schemas.topics import replication_for


def _props(broker: KafkaBroker) -> dict[str, str]:
    return dict(line.split("=", 1) for line in broker._properties().splitlines() if line)


@pytest.mark.parametrize(("brokers", "expected"), [(1, (1, 1)), (2, (2, 1)), (3, (3, 2)), (4, (3, 2)), (9, (3, 2))])
def test_replication_follows_the_cluster_size(brokers: int, expected: tuple[int, int]) -> None:
    assert replication_for(brokers) == expected


def test_replication_of_no_broker_is_an_error() -> None:
    with pytest.raises(ValueError, match="brokers must be >= 1, got 0"):
        replication_for(0)


def test_a_single_broker_keeps_one_replica(tmp_path: Path) -> None:
    lines = _props(KafkaBroker(tmp_path, port=19092, controller_port=19093))
    assert lines["node.id"] == "1" and lines["controller.quorum.voters"] == "1@127.0.0.1:19093"
    for key in ("offsets.topic.replication.factor", "transaction.state.log.replication.factor", "default.replication.factor",
                "min.insync.replicas", "transaction.state.log.min.isr"):
        assert lines[key] == "1", key


def test_cluster_members_form_one_quorum_with_three_replicas_and_two_in_sync(tmp_path: Path) -> None:
    c = KafkaCluster(tmp_path / "c", 3, port=20000, properties={"broker.session.timeout.ms": "3000"})
    assert [(m.node_id, m.port, m.controller_port) for m in c.members] == [(1, 20000, 20001), (2, 20002, 20003), (3, 20004, 20005)]
    assert c.bootstrap_servers == "127.0.0.1:20000,127.0.0.1:20002,127.0.0.1:20004"
    assert len({m.data_dir for m in c.members}) == 3 and all(m.data_dir.parent == tmp_path / "c" for m in c.members)
    assert {m.cluster_id for m in c.members} == {c.cluster_id}
    for m in c.members:
        lines = _props(m)
        assert lines["node.id"] == str(m.node_id)
        assert lines["process.roles"] == "broker,controller"
        assert lines["controller.quorum.voters"] == "1@127.0.0.1:20001,2@127.0.0.1:20003,3@127.0.0.1:20005"
        assert lines["listeners"] == f"PLAINTEXT://127.0.0.1:{m.port},CONTROLLER://127.0.0.1:{m.controller_port}"
        assert lines["log.dirs"] == str(m.data_dir / "logs")
        assert (lines["default.replication.factor"], lines["offsets.topic.replication.factor"],
                lines["transaction.state.log.replication.factor"]) == ("3", "3", "3")
        assert (lines["min.insync.replicas"], lines["transaction.state.log.min.isr"]) == ("2", "2")
        assert lines["broker.session.timeout.ms"] == "3000"


def test_a_cluster_directory_keeps_its_layout(tmp_path: Path) -> None:
    layout = {"cluster_id": "q1Sh-9_ASKSVu2Zc4HYxbA",
              "members": [{"node_id": n, "port": 21000 + 2 * n, "controller_port": 21001 + 2 * n} for n in (1, 2, 3)]}
    (tmp_path / CLUSTER_FILE).write_text(json.dumps(layout))
    c = KafkaCluster(tmp_path, 5, port=9092)  # the directory's layout wins over the arguments
    assert c.cluster_id == layout["cluster_id"] and c.brokers == 3
    assert [m.port for m in c.members] == [21002, 21004, 21006]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"brokers": 0}, "brokers must be >= 1"),
    ({"brokers": 2, "ports": [(1, 2)]}, "1 pairs given for 2 brokers"),
    ({"brokers": 2, "ports": [(1, 2), (2, 3)]}, "its own client and controller port"),
])
def test_bad_cluster_layouts_are_refused(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(StackError, match=message):
        KafkaCluster(tmp_path, **kwargs)


def test_a_single_brokers_storage_is_not_started_as_a_cluster(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "meta.properties").write_text("node.id=1\n")
    with pytest.raises(StackError, match="holds a single broker's storage"):
        KafkaCluster(tmp_path, 3, port=22000).start()


def test_free_ports_are_distinct_and_below_the_ephemeral_range() -> None:
    ports = free_ports(6)
    assert len(set(ports)) == 6 and all(20000 <= p < 32000 for p in ports)
    # free_port() too (brokers, controllers and HTTP ports of the tests and the demo): an ephemeral port can be
    # taken by any process's outgoing connection before its taker binds it; and none is handed out twice in a row
    from agentgym.ops.kafka.broker import free_port

    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    singles = [free_port() for _ in range(100)]
    assert len(set(singles + ports)) == 106 and all(20000 <= p < min(32000, low) for p in singles)


def _layout_dir(tmp_path: Path, n: int = 3) -> Path:
    d = tmp_path / "kafka"
    ports = free_ports(2 * n)
    KafkaCluster(d, n, ports=list(zip(ports[::2], ports[1::2])))._write_layout()
    return d


def test_cli_status_and_stop_cover_every_member(tmp_path: Path) -> None:
    d = _layout_dir(tmp_path)
    res = CliRunner().invoke(main, ["kafka", "status", "--data-dir", str(d)])
    assert res.exit_code == 1, res.output
    assert [line.split(":")[0] for line in res.output.splitlines()[:3]] == ["kafka node 1", "kafka node 2", "kafka node 3"]
    assert "0 of 3 brokers serving" in res.output
    res = CliRunner().invoke(main, ["kafka", "stop", "--data-dir", str(d)])
    assert res.exit_code == 0 and "kafka was not running" in res.output


def test_cli_refuses_another_size_for_a_clusters_directory(tmp_path: Path) -> None:
    d = _layout_dir(tmp_path)
    res = CliRunner().invoke(main, ["kafka", "start", "--brokers", "2", "--data-dir", str(d)])
    assert res.exit_code == 2 and "holds a cluster of 3 broker(s), not 2" in res.output


def test_cli_cluster_is_plaintext_only(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["kafka", "start", "--brokers", "3", "--sasl", "--data-dir", str(tmp_path / "k")])
    assert res.exit_code == 2 and "--sasl and --tls are for a single broker" in res.output
    assert not (tmp_path / "k").exists()


def test_topics_create_waits_for_the_brokers_and_says_when_they_are_missing() -> None:
    from agentgym.ops.kafka.broker import free_port

    res = CliRunner().invoke(main, ["topics", "create", "--bootstrap-servers", f"127.0.0.1:{free_port()}",
                                    "--brokers", "3", "--wait", "1"])
    assert res.exit_code == 1
    assert "lists 0 of 3 brokers after 1s" in res.output


def test_cluster_heap_is_small_unless_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from agentgym.ops.commands.kafka import _cluster

    cluster = _cluster(None, tmp_path / "a", 3)
    assert cluster is not None and {m.heap for m in cluster.members} == {"384m"}
    monkeypatch.setenv("AGENTGYM_KAFKA_HEAP", "300m")
    cluster = _cluster(None, tmp_path / "b", 3)
    assert cluster is not None and {m.heap for m in cluster.members} == {"300m"}
    assert _cluster(None, tmp_path / "c", None) is None  # one broker: the default
