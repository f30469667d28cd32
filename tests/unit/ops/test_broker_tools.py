"""The local broker explains what to install when java or mvn is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentgym.ops.exceptions import MissingToolError
from agentgym.ops.kafka.broker import KafkaBroker, resolve_jars


@pytest.mark.parametrize("present", [set(), {"java"}])
def test_missing_java_or_maven_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, present: set[str]) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in present:
        exe = bin_dir / tool
        exe.write_text("#!/bin/sh\nexit 0\n")
        exe.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    missing = "java" if "java" not in present else "mvn"
    with pytest.raises(MissingToolError) as err:
        resolve_jars("4.1.1", tmp_path / "cache", quiet=True)
    assert f"`{missing}` not found" in str(err.value)
    assert "apt-get install" in str(err.value) and "maven" in str(err.value)


def test_cached_jars_need_no_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    libs = tmp_path / "cache" / "4.1.1" / "libs"
    libs.mkdir(parents=True)
    (libs / ".complete").write_text("4.1.1")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert resolve_jars("4.1.1", tmp_path / "cache", quiet=True) == libs


def test_broker_properties_are_kraft_on_loopback(tmp_path: Path) -> None:
    props = KafkaBroker(tmp_path, port=19092, controller_port=19093)._properties()
    lines = dict(line.split("=", 1) for line in props.splitlines() if line)
    assert lines["process.roles"] == "broker,controller"
    assert lines["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert lines["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert lines["auto.create.topics.enable"] == "false"
    assert not any("zookeeper" in k for k in lines)
