"""``agentgym sql`` against a ClickHouse data directory that holds no Agent Gym store yet."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def _agentgym(*args: str) -> subprocess.CompletedProcess[str]:
    # a child process: chdb hosts one data directory per process, and other tests' stores may be open here
    return subprocess.run([sys.executable, "-c", "from agentgym.ops.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=120)


def test_sql_on_a_directory_without_tables_says_no_store_and_how_to_create_one(tmp_path: Path) -> None:
    empty = tmp_path / "ch"
    empty.mkdir()  # the engine starts here, but nothing has created the agentgym database
    out = _agentgym("sql", "SELECT count() FROM v_experiences", "--url", f"chdb://{empty}")
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith(f"error: no Agent Gym store at chdb://{empty} (database 'agentgym' does not exist yet)")
    assert "agentgym processors run" in lines[0] and "migrations" in lines[0]
    assert "UNKNOWN_DATABASE" not in out.stderr and "Traceback" not in out.stderr
