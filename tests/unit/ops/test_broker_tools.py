"""The local broker explains what to install when java or mvn is missing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agentgym.ops.exceptions import MissingToolError
from agentgym.ops.kafka.broker import KafkaBroker, resolve_jars
from tests.workers import wait_for


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


_FAKE_MVN = """#!/bin/sh
# a stand-in for mvn: records its start, waits for the test's release, then "resolves" the core jar
for a in "$@"; do case "$a" in -DoutputDirectory=*) out="${a#-DoutputDirectory=}";; esac; done
echo "start $$" >> "$MVN_LOG"
i=0
while [ ! -e "$MVN_RELEASE" ]; do sleep 0.05; i=$((i+1)); [ $i -gt 2400 ] && exit 3; done
touch "$out/kafka_2.13-4.1.1.jar"
"""


def _blocked_on_a_lock(pid: int) -> bool:
    """Whether process ``pid`` waits for a file lock (Linux's /proc/locks: ``1: -> FLOCK ADVISORY WRITE <pid> ...``)."""
    return any(f[1:2] == ["->"] and f[5:6] == [str(pid)] for f in map(str.split, Path("/proc/locks").read_text().splitlines()))


def test_processes_resolving_at_once_take_turns_and_mvn_runs_once(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "java").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "mvn").write_text(_FAKE_MVN)
    for tool in ("java", "mvn"):
        (bin_dir / tool).chmod(0o755)
    log, release = tmp_path / "mvn.log", tmp_path / "release"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "MVN_LOG": str(log), "MVN_RELEASE": str(release)}
    code = ("from pathlib import Path; from agentgym.ops.kafka.broker import resolve_jars; "
            f"print(resolve_jars('4.1.1', Path({str(tmp_path / 'cache')!r})))")

    def resolver() -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)

    first = resolver()
    try:
        wait_for(lambda: log.is_file() and log.read_text().count("start") == 1, 60, "the first mvn to start", every=0.05)
        second = resolver()
        try:
            # the second blocks on the lock while the first resolves (without the lock it would run mvn too)
            wait_for(lambda: _blocked_on_a_lock(second.pid), 60, "the second resolver to wait on the lock", every=0.05)
            assert log.read_text().count("start") == 1
            release.touch()
            out = [p.communicate(timeout=60) for p in (first, second)]
        finally:
            second.kill()
    finally:
        first.kill()
    libs = tmp_path / "cache" / "4.1.1" / "libs"
    assert [(p.returncode, o.strip()) for p, (o, _) in zip((first, second), out)] == [(0, str(libs))] * 2, out
    assert log.read_text().count("start") == 1  # mvn ran once; the second found the cache complete
    assert (libs / ".complete").read_text() == "4.1.1"
