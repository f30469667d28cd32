"""Analyst access: the read-only ClickHouse HTTP interface and ``agentgym sql``.

The real engine (chdb) owns a temporary directory in this process and serves it;
clickhouse-connect, urllib and the CLI read from it. Where a test needs another
process to own a directory, it starts one (a small Python script) and stops it.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import clickhouse_connect
import pytest
from clickhouse_connect.driver.client import Client
from click.testing import CliRunner

from agentgym.ops.cli import main as agentgym
from agentgym.processors.store import migrate, open_store
from agentgym.processors.store.chdb_store import ChdbStore
from agentgym.processors.store.exceptions import QueryError, ReadOnlyError
from agentgym.processors.store.http_server import ReadOnlyHTTPServer, serve_readonly
from agentgym.processors.store.readonly import EXTERNAL_FUNCTIONS, SAFE_TABLE_FUNCTIONS, check_readonly
from agentgym.processors.store.rows import insert_records, to_arrow
from agentgym.processors.store.server_store import ServerStore
from agentgym.processors.store.sqltext import split_statements
from tests import store_samples as samples

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TENANT = "http_tenant"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChdbStore]:
    s = open_store(f"chdb://{tmp_path_factory.mktemp('http') / 'clickhouse'}")
    assert isinstance(s, ChdbStore)
    migrate(s)
    runs = [samples.experience(TENANT, agent="support", latency_ms=100.0 * (i + 1)) for i in range(3)]
    runs.append(samples.experience(TENANT, agent="billing", latency_ms=50.0))
    insert_records(s, "Experience", runs)
    insert_records(s, "Experience", runs[:1])  # a replay: must not show
    insert_records(s, "Outcome", [samples.outcome(TENANT, runs[0]["trace_id"], label="success")])
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(scope="module")
def server(store: ChdbStore) -> Iterator[ReadOnlyHTTPServer]:
    srv = serve_readonly(store, port=0)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def client(server: ReadOnlyHTTPServer) -> Iterator[Client]:
    c = clickhouse_connect.get_client(host="127.0.0.1", port=server.port)
    try:
        yield c
    finally:
        c.close()


def _http(url: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def _url(server: ReadOnlyHTTPServer, **params: str) -> str:
    return f"{server.url}/?{urllib.parse.urlencode(params)}" if params else f"{server.url}/"


# --------------------------------------------------------------------------- clickhouse-connect
def test_the_port_is_recorded_in_the_data_directory(store: ChdbStore, server: ReadOnlyHTTPServer) -> None:
    assert (store.path / "http.port").read_text().strip() == str(server.port)


def test_clickhouse_connect_reads_rows(client: Client, store: ChdbStore) -> None:
    assert client.server_version == store.query("SELECT version()").scalar()
    res = client.query(
        "SELECT agent_id, count() AS runs, max(latency_ms) AS slowest, groupArray(outcome_label) AS labels "
        "FROM v_runs WHERE tenant_id = {tenant:String} GROUP BY agent_id ORDER BY agent_id",
        parameters={"tenant": TENANT},
    )
    assert res.column_names == ("agent_id", "runs", "slowest", "labels")
    assert res.result_rows == [("billing", 1, 50.0, []), ("support", 3, 300.0, ["success"])]
    # typed values: a DateTime64 and an array of named tuples come back as Python objects
    row = client.query(
        "SELECT ts, steps FROM v_experiences WHERE tenant_id = {tenant:String} AND agent_id = 'billing'",
        parameters={"tenant": TENANT},
    ).result_rows[0]
    assert row[0].year >= 2025 and row[1][0]["name"] == "plan" and row[1][1]["kind"] == "tool"
    assert client.query("SELECT event_id FROM v_experiences WHERE 0").result_rows == []
    assert client.command("SELECT count() FROM v_experiences WHERE tenant_id = %(t)s", parameters={"t": TENANT}) == 4


def test_clickhouse_connect_reads_dataframes_and_arrow(client: Client) -> None:
    sql = "SELECT agent_id, count() AS runs FROM v_runs WHERE tenant_id = {t:String} GROUP BY agent_id ORDER BY agent_id"
    df = client.query_df(sql, parameters={"t": TENANT})
    assert list(df.columns) == ["agent_id", "runs"]
    assert df.to_dict("records") == [{"agent_id": "billing", "runs": 1}, {"agent_id": "support", "runs": 3}]
    table = client.query_arrow(sql, parameters={"t": TENANT})
    assert table.to_pylist() == [{"agent_id": "billing", "runs": 1}, {"agent_id": "support", "runs": 3}]


def test_large_parameters_travel_as_a_multipart_form(server: ReadOnlyHTTPServer) -> None:
    c = clickhouse_connect.get_client(host="127.0.0.1", port=server.port, form_encode_query_params=True)
    try:
        agents = ["support", "nobody", *(f"agent-{i}" for i in range(300))]
        res = c.query(
            "SELECT count() FROM v_experiences WHERE tenant_id = {t:String} AND agent_id IN {agents:Array(String)}",
            parameters={"t": TENANT, "agents": agents},
        )
        assert res.result_rows == [(3,)]
    finally:
        c.close()


def test_server_store_reads_the_same_values_and_cannot_write(server: ReadOnlyHTTPServer, store: ChdbStore) -> None:
    reader = ServerStore(server.url, create_database=False)
    try:
        sql = "SELECT * FROM v_experiences WHERE tenant_id = {t:String} ORDER BY trace_id"
        direct, remote = store.query(sql, {"t": TENANT}), reader.query(sql, {"t": TENANT})
        assert len(remote.rows) == 4
        # both backends decode the same types: the store's interface does not depend on the backend
        assert (remote.column_names, remote.column_types, remote.rows) == (direct.column_names, direct.column_types, direct.rows)
        assert reader.query_arrow(sql, {"t": TENANT}).num_rows == 4
        assert reader.query_raw("SELECT 1 AS x", "JSONEachRow").data == b'{"x":1}\n'
        with pytest.raises(ReadOnlyError):
            reader.insert("experiences", to_arrow("Experience", [samples.experience(TENANT)]))
        with pytest.raises(ReadOnlyError):
            reader.command("DROP TABLE experiences")
    finally:
        reader.close()
    assert store.query("SELECT count() FROM v_experiences WHERE tenant_id = {t:String}", {"t": TENANT}).scalar() == 4


def test_readers_in_parallel_while_the_owner_writes(server: ReadOnlyHTTPServer, store: ChdbStore, unique: str) -> None:
    tenant = f"parallel_{unique}"
    batches, per_batch = 6, 300

    def write() -> None:
        for _ in range(batches):
            insert_records(store, "Experience", [samples.experience(tenant) for _ in range(per_batch)])

    def read() -> list[int]:
        c = clickhouse_connect.get_client(host="127.0.0.1", port=server.port)
        try:
            sql = "SELECT count() FROM v_experiences WHERE tenant_id = {t:String}"
            return [int(c.query(sql, parameters={"t": tenant}).result_rows[0][0]) for _ in range(15)]
        finally:
            c.close()

    with ThreadPoolExecutor(max_workers=4) as pool:
        writer = pool.submit(write)
        readers = [pool.submit(read) for _ in range(3)]
        counts = [r.result(timeout=120) for r in readers]
        writer.result(timeout=120)
    for seen in counts:
        assert seen == sorted(seen) and all(n % per_batch == 0 for n in seen)  # whole batches, never less
    assert read()[-1] == batches * per_batch


# --------------------------------------------------------------------------- plain HTTP
def test_urllib_query_in_the_url_with_default_format(server: ReadOnlyHTTPServer) -> None:
    sql = f"SELECT agent_id, count() AS runs FROM v_runs WHERE tenant_id = '{TENANT}' GROUP BY agent_id ORDER BY agent_id"
    status, headers, body = _http(_url(server, query=sql, default_format="JSONEachRow", database="agentgym", query_id="q-1"))
    assert status == 200
    assert [json.loads(line) for line in body.splitlines()] == [
        {"agent_id": "billing", "runs": 1},
        {"agent_id": "support", "runs": 3},
    ]
    assert headers["X-ClickHouse-Format"] == "JSONEachRow"
    assert headers["X-ClickHouse-Query-Id"] == "q-1"
    assert headers["X-ClickHouse-Timezone"]
    assert headers["X-ClickHouse-Server-Display-Name"]
    summary = json.loads(headers["X-ClickHouse-Summary"])
    assert int(summary["read_rows"]) > 0 and summary["written_rows"] == "0"


def test_query_in_the_body_and_the_format_clause(server: ReadOnlyHTTPServer) -> None:
    status, headers, body = _http(
        _url(server, query="SELECT agent_id, count() AS runs FROM v_runs"),
        data=f"WHERE tenant_id = '{TENANT}' GROUP BY agent_id ORDER BY agent_id FORMAT CSVWithNames".encode(),
    )
    assert status == 200, body
    assert body == b'"agent_id","runs"\n"billing",1\n"support",3\n'
    assert headers["X-ClickHouse-Format"] == "CSVWithNames"
    status, _, body = _http(_url(server), data=b"SELECT 1 AS one")
    assert (status, body) == (200, b"1\n")  # TabSeparated by default, as a server


def test_a_gzip_compressed_body(server: ReadOnlyHTTPServer) -> None:
    import gzip

    status, _, body = _http(_url(server), data=gzip.compress(b"SELECT 40 + 2"), headers={"Content-Encoding": "gzip"})
    assert (status, body) == (200, b"42\n")
    status, headers, body = _http(_url(server), data=b"x", headers={"Content-Encoding": "br"})
    assert status == 415 and headers["X-ClickHouse-Exception-Code"] == "779"


def test_settings_and_parameters_in_the_url(server: ReadOnlyHTTPServer) -> None:
    sql = "SELECT getSetting('max_threads'), {x:UInt8} + 1, {s:String}"
    status, _, body = _http(_url(server, query=sql, max_threads="3", param_x="41", param_s="a\\tb"))
    assert (status, body) == (200, b"3\t42\ta\\tb\n")
    status, headers, body = _http(_url(server, query="SELECT 1", no_such_setting="1"))
    assert status == 404 and headers["X-ClickHouse-Exception-Code"] == "115" and b"UNKNOWN_SETTING" in body


def test_engine_errors_carry_clickhouse_codes_and_statuses(server: ReadOnlyHTTPServer) -> None:
    status, headers, body = _http(_url(server, query="SELECT * FROM no_such_table"))
    assert status == 404 and headers["X-ClickHouse-Exception-Code"] == "60"
    assert body.startswith(b"Code: 60. DB::Exception:") and b"(UNKNOWN_TABLE)" in body
    status, headers, body = _http(_url(server), data=b"SELEKT 1")
    assert status == 403 and headers["X-ClickHouse-Exception-Code"] == "164"  # not a read keyword
    status, headers, body = _http(_url(server), data=b"SELECT 1 +")
    assert status == 400 and headers["X-ClickHouse-Exception-Code"] == "62" and b"SYNTAX_ERROR" in body


def test_ping_and_root(server: ReadOnlyHTTPServer) -> None:
    assert _http(f"{server.url}/ping")[::2] == (200, b"Ok.\n")
    assert _http(f"{server.url}/")[::2] == (200, b"Ok.\n")
    assert _http(f"{server.url}/play")[0] == 404


# --------------------------------------------------------------------------- writes are refused
REFUSED = [
    "INSERT INTO experiences (event_id, tenant_id) VALUES ('x', 'y')",
    "insert into experiences select * from experiences",
    "CREATE TABLE t (a UInt8) ENGINE = Memory",
    "CREATE TEMPORARY TABLE t (a UInt8)",
    "DROP TABLE experiences",
    "ALTER TABLE experiences DELETE WHERE 1",
    "TRUNCATE TABLE experiences",
    "RENAME TABLE experiences TO e2",
    "OPTIMIZE TABLE experiences FINAL",
    "SYSTEM FLUSH LOGS",
    "KILL QUERY WHERE 1",
    "GRANT SELECT ON *.* TO nobody",
    "/* a comment first */ DROP TABLE experiences",
    "INSERT INTO FUNCTION file('/tmp/agentgym-x.csv', 'CSV', 'a UInt8') VALUES (1)",
    "SELECT * FROM file('/etc/passwd', 'LineAsString')",
    "SELECT file('/etc/passwd')",
    "SELECT * FROM url('http://127.0.0.1:1/x', 'CSV', 'a String')",
    "SELECT * FROM `s3`('http://127.0.0.1:1/b/k', 'CSV')",
    "SELECT * FROM Python(anything)",
    "SELECT 1 INTO OUTFILE '/tmp/agentgym-out.csv'",
]


@pytest.mark.parametrize("sql", REFUSED)
def test_writes_ddl_and_outside_access_are_refused(server: ReadOnlyHTTPServer, sql: str) -> None:
    status, headers, body = _http(_url(server), data=sql.encode())
    assert status == 403, body
    assert headers["X-ClickHouse-Exception-Code"] == "164"
    text = body.decode()
    assert text.startswith("Code: 164. DB::Exception: ") and "refused: this interface is read-only" in text
    assert "(READONLY)" in text


def test_refusals_reach_clickhouse_connect_and_leave_the_data_alone(
    client: Client, store: ChdbStore, server: ReadOnlyHTTPServer
) -> None:
    before = store.query("SELECT count() FROM experiences").scalar()
    for sql in ("INSERT INTO experiences (event_id) VALUES ('x')", "CREATE TABLE t (a UInt8) ENGINE = Memory",
                "DROP TABLE experiences"):
        with pytest.raises(clickhouse_connect.driver.exceptions.DatabaseError) as info:
            client.command(sql)
        assert info.value.code == 164 and "READONLY" in str(info.value)
    status, _, body = _http(_url(server), data=b"SELECT 1; DROP TABLE experiences")
    assert status == 400 and b"Multi-statements are not allowed" in body
    assert store.query("SELECT count() FROM experiences").scalar() == before
    assert not Path("/tmp/agentgym-x.csv").exists() and not Path("/tmp/agentgym-out.csv").exists()


@pytest.mark.parametrize(
    "sql, keyword, fmt, returns",
    [
        ("SELECT 1", "SELECT", None, True),
        ("  -- DROP TABLE x\nSELECT 'INSERT INTO t' AS s FORMAT JSON;", "SELECT", "JSON", True),
        ("WITH 1 AS x SELECT x FORMAT CSV SETTINGS max_threads = 1", "WITH", "CSV", True),
        ("(SELECT 1) UNION ALL (SELECT 2)", "SELECT", None, True),
        ("SELECT format, `file` FROM t", "SELECT", None, True),
        ("SELECT * FROM numbers(3)", "SELECT", None, True),
        ("SHOW TABLES", "SHOW", None, True),
        ("DESCRIBE TABLE experiences", "DESCRIBE", None, True),
        ("EXISTS TABLE experiences", "EXISTS", None, True),
        ("EXPLAIN SELECT 1", "EXPLAIN", None, True),
        ("SET max_threads = 2", "SET", None, False),
        ("USE agentgym", "USE", None, False),
        ("SELECT $$DROP TABLE x; $$ AS s", "SELECT", None, True),
    ],
)
def test_the_guard_accepts_reads(sql: str, keyword: str, fmt: str | None, returns: bool) -> None:
    st = check_readonly(sql)
    assert (st.keyword, st.output_format, st.returns_result) == (keyword, fmt, returns)


@pytest.mark.parametrize("sql", [*REFUSED, "SELECT 1; DROP TABLE x", "", "  -- nothing\n"])
def test_the_guard_refuses_the_rest(sql: str) -> None:
    with pytest.raises(QueryError) as info:
        check_readonly(sql)
    assert info.value.code in (164, 62)
    assert isinstance(info.value, ReadOnlyError) == (info.value.code == 164)


def test_every_table_function_of_the_engine_is_classified(store: ChdbStore) -> None:
    names = {n.lower() for (n,) in store.query("SELECT name FROM system.table_functions").rows}
    unclassified = names - EXTERNAL_FUNCTIONS - SAFE_TABLE_FUNCTIONS
    assert not unclassified, f"decide whether these table functions are safe for the read-only interface: {unclassified}"


def test_statements_split_outside_literals_and_comments() -> None:
    script = "CREATE TABLE a (s String DEFAULT ';') ENGINE = Memory; -- x; y\nSELECT ';' /* ; */;\n\n"
    assert split_statements(script) == ["CREATE TABLE a (s String DEFAULT ';') ENGINE = Memory", "-- x; y\nSELECT ';' /* ; */"]


# --------------------------------------------------------------------------- agentgym sql
def test_sql_command_prints_a_table_csv_and_json(store: ChdbStore) -> None:
    runner = CliRunner()
    sql = f"SELECT agent_id, count() AS runs FROM v_runs WHERE tenant_id = '{TENANT}' GROUP BY agent_id ORDER BY agent_id"
    result = runner.invoke(agentgym, ["sql", sql, "--url", store.url])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "agent_id" in lines[0] and "runs" in lines[0] and lines[0].startswith("┌")
    assert [ln.split("│")[1:3] for ln in lines[1:3]] == [[" billing  ", "    1 "], [" support  ", "    3 "]]
    result = runner.invoke(agentgym, ["sql", sql, "--url", store.url, "--format", "csv"])
    assert result.exit_code == 0 and result.stdout == '"agent_id","runs"\n"billing",1\n"support",3\n'
    result = runner.invoke(agentgym, ["sql", sql, "--url", store.url, "--format", "json"])
    assert [json.loads(x) for x in result.stdout.splitlines()] == [{"agent_id": "billing", "runs": 1},
                                                                  {"agent_id": "support", "runs": 3}]
    result = runner.invoke(agentgym, ["sql", "SELECT {n:UInt8} * 2 AS twice", "-p", "n=21", "--url", store.url,
                                      "--format", "tsv"])
    assert result.exit_code == 0 and result.stdout == "twice\n42\n"


def test_sql_command_refuses_writes_unless_allowed(store: ChdbStore, unique: str) -> None:
    runner = CliRunner()
    result = runner.invoke(agentgym, ["sql", f"CREATE TABLE cli_{unique} (a UInt8) ENGINE = Memory", "--url", store.url])
    assert result.exit_code == 1 and "(READONLY)" in result.stderr and "refused" in result.stderr
    assert store.query(f"EXISTS TABLE cli_{unique}").scalar() == 0
    result = runner.invoke(agentgym, ["sql", f"CREATE TABLE cli_{unique} (a UInt8) ENGINE = Memory", "--url", store.url,
                                      "--allow-writes"])
    assert result.exit_code == 0, result.output
    assert store.query(f"EXISTS TABLE cli_{unique}").scalar() == 1
    store.command(f"DROP TABLE cli_{unique}")


def test_sql_command_explains_a_missing_store(tmp_path: Path) -> None:
    result = CliRunner().invoke(agentgym, ["sql", "SELECT 1", "--url", f"chdb://{tmp_path / 'nothing'}"])
    assert result.exit_code == 1 and "no ClickHouse data at" in result.stderr


_OWNER = r"""
import sys
from agentgym.processors.store import migrate, open_store, serve_readonly
from agentgym.processors.store.rows import insert_records, to_arrow
from agentgym.processors.store.server_store import ServerStore
from tests import store_samples as samples

store = open_store(sys.argv[1])
migrate(store)
insert_records(store, "Experience", [samples.experience("owner", agent=a) for a in ("a1", "a1", "a2")])
if sys.argv[2] == "serve":
    serve_readonly(store)
print("ready", flush=True)
sys.stdin.read()  # until the test closes our stdin
store.close()
"""


class _Owner:
    """Another process owning a chdb directory, optionally serving it read-only."""

    def __init__(self, directory: Path, serve: bool) -> None:
        self.url = f"chdb://{directory}"
        self.directory = directory
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _OWNER, self.url, "serve" if serve else "no"],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        deadline = time.monotonic() + 120
        line = ""
        assert self.proc.stdout is not None
        while time.monotonic() < deadline and self.proc.poll() is None:
            ready, _, _ = select.select([self.proc.stdout], [], [], 1.0)
            if ready:
                line = self.proc.stdout.readline()
                break
        if line.strip() != "ready":
            self.stop()
            raise AssertionError(f"owner process did not start: {line!r} {self.proc.stderr.read() if self.proc.stderr else ''}")

    def stop(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def owner_factory(tmp_path: Path) -> Iterator[list[_Owner]]:
    owners: list[_Owner] = []
    try:
        yield owners
    finally:
        for o in owners:
            o.stop()


def test_sql_command_reads_through_the_owners_http_interface(tmp_path: Path, owner_factory: list[_Owner]) -> None:
    owner = _Owner(tmp_path / "owned", serve=True)
    owner_factory.append(owner)
    runner = CliRunner()
    sql = "SELECT agent_id, count() AS runs FROM v_runs GROUP BY agent_id ORDER BY agent_id"
    result = runner.invoke(agentgym, ["sql", sql, "--url", owner.url, "--format", "csv"])
    assert result.exit_code == 0, result.output
    assert result.stdout == '"agent_id","runs"\n"a1",2\n"a2",1\n'
    result = runner.invoke(agentgym, ["sql", "DROP TABLE experiences", "--url", owner.url])
    assert result.exit_code == 1 and "(READONLY)" in result.stderr
    result = runner.invoke(agentgym, ["sql", "SELECT count() FROM experiences", "--url", owner.url, "--allow-writes"])
    assert result.exit_code == 1 and f"in use by process {owner.proc.pid}" in result.stderr
    owner.stop()
    assert owner.proc.returncode == 0
    assert not (owner.directory / "http.port").exists()


def test_sql_command_explains_an_owner_without_a_read_interface(tmp_path: Path, owner_factory: list[_Owner]) -> None:
    owner = _Owner(tmp_path / "owned", serve=False)
    owner_factory.append(owner)
    result = CliRunner().invoke(agentgym, ["sql", "SELECT 1", "--url", owner.url])
    assert result.exit_code == 1
    assert f"in use by process {owner.proc.pid}" in result.stderr and "serves no read-only HTTP interface" in result.stderr


def test_another_process_cannot_open_an_owned_directory(store: ChdbStore, server: ReadOnlyHTTPServer) -> None:
    code = (
        "import sys\n"
        "from processors.store import open_store, StoreLockedError\n"
        "try:\n"
        f"    open_store({store.url!r})\n"
        "except StoreLockedError as exc:\n"
        "    print(exc.owner_pid, exc)\n"
        "    sys.exit(3)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout.startswith(f"{os.getpid()} ")
    assert "chdb allows one process per directory" in proc.stdout and "http.port" in proc.stdout
