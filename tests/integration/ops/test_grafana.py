"""The Grafana dashboards that ``compose.yaml`` provisions, against the real embedded ClickHouse engine.

Docker is not available here, so Grafana itself never runs in these tests. What they check
instead: every dashboard under ``ops/grafana/dashboards/`` is well-formed Grafana dashboard
JSON wired to the provisioned ClickHouse data source, compose mounts the dashboards where
the provider looks, and every panel's and template variable's SQL runs against the
project's migrated schema, after the ClickHouse data source plugin's macros and Grafana's
template variables are expanded the way the plugin expands them (:func:`expand`). Seeded
runs of two tenants show the overview's run count and that no panel shows another tenant's
rows.
"""

from __future__ import annotations

import calendar
import datetime as dt
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentgym.processors.store import migrate, open_store
from agentgym.processors.store.base import QueryResult, Store
from agentgym.processors.store.rows import insert_records
from tests import store_samples as samples

ROOT = Path(__file__).resolve().parents[3]
GRAFANA = ROOT / "ops" / "grafana"
DASHBOARD_FILES = sorted((GRAFANA / "dashboards").glob("*.json"))
DATASOURCES_FILE = GRAFANA / "provisioning" / "datasources" / "clickhouse.yaml"
PROVIDERS_DIR = GRAFANA / "provisioning" / "dashboards"
PLUGIN = "grafana-clickhouse-datasource"

T0_S = calendar.timegm((2026, 11, 15, 10, 0, 0))
T0 = T0_S * 1000
FROM_S, TO_S = T0_S - 3600, T0_S + 86_400  # the dashboards' time range in every run below


# --------------------------------------------------------------------------- the plugin's expansion


class UnexpandedError(AssertionError):
    """A macro or variable that the expansion does not know, or text left unexpanded."""


@dataclass(frozen=True)
class Var:
    """A template variable's selection: ``values`` (all the options when ``all``), and whether "All" is picked."""

    values: tuple[str, ...]
    all: bool = False
    multi: bool = False

    @classmethod
    def one(cls, value: str) -> Var:
        return cls((value,))


@dataclass(frozen=True)
class QueryContext:
    """What Grafana sends with a query: the time range (Unix seconds), the interval and the variables."""

    from_s: int = FROM_S
    to_s: int = TO_S
    interval_s: int = 60
    variables: dict[str, Var] = field(default_factory=dict)


def _macro_args(sql: str, open_paren: int) -> tuple[list[str], int]:
    """The comma-separated arguments of the call whose ``(`` is at ``open_paren`` (commas in nested
    parentheses stay inside their argument), and the index just past its ``)``."""
    depth, args, start = 0, [], open_paren + 1
    for i in range(open_paren, len(sql)):
        ch = sql[i]
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                args.append(sql[start:i])
                return args, i + 1
        elif ch == "," and depth == 1:
            args.append(sql[start:i])
            start = i + 1
    raise UnexpandedError(f"unbalanced parentheses after position {open_paren}: {sql[open_paren:open_paren + 60]!r}")


def _conditional_all(sql: str, variables: dict[str, Var]) -> str:
    # CHDatasource.applyConditionalAll (the plugin's frontend, before variables are interpolated):
    # $__conditionalAll(phrase, $var) is `1=1` when $var is "All" or empty, else the phrase.
    macro = "$__conditionalAll("
    while (at := sql.rfind(macro)) != -1:
        args, end = _macro_args(sql, at + len(macro) - 1)
        if len(args) != 2:
            raise UnexpandedError(f"$__conditionalAll takes 2 arguments, got {len(args)}: {sql[at:end]!r}")
        m = re.search(r"(?<=\$\{)\w+(?=\})|(?<=\$)\w+", args[1].strip())
        if m is None or m.group(0) not in variables:
            raise UnexpandedError(f"$__conditionalAll names no known variable: {args[1]!r}")
        var = variables[m.group(0)]
        phrase = "1=1" if var.all or not var.values or var.values == ("",) else args[0]
        sql = sql[:at] + phrase + sql[end:]
    return sql


_VARIABLE_RE = re.compile(r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?::([^}]+))?\}")


def _format(var: Var, fmt: str | None) -> str:
    # Grafana's templateSrv.replace with the plugin's format function (CHDatasource.format): a
    # multi-value selection (or "All") is 'a','b', a single value goes in raw; the `singlequote`
    # format quotes each value and escapes ' as \'.
    values = list(var.values)
    if fmt == "singlequote":
        return ",".join("'" + v.replace("'", "\\'") + "'" for v in values)
    if fmt not in (None, "raw"):
        raise UnexpandedError(f"variable format {fmt!r} is not implemented here")
    if var.multi or var.all:
        return "'" + "','".join(values) + "'"
    return values[0]


def _variables(sql: str, variables: dict[str, Var]) -> str:
    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(4)
        if name not in variables:
            return m.group(0)  # Grafana leaves what it does not know (the backend's $__ macros)
        return _format(variables[name], m.group(3) or m.group(5))

    return _VARIABLE_RE.sub(sub, sql)


def _dt(s: int) -> str:
    return f"toDateTime({s})"


def _dt64(s: int) -> str:
    return f"fromUnixTimestamp64Milli({s * 1000})"


def _date(s: int) -> str:
    return f"toDate('{dt.datetime.fromtimestamp(s, dt.timezone.utc):%Y-%m-%d}')"


def _backend_macro(name: str, args: list[str], ctx: QueryContext) -> str:
    # pkg/macros/macros.go of grafana/clickhouse-datasource (the plugin's backend, run on the
    # interpolated SQL); also its documentation's macro table.
    f, t = ctx.from_s, ctx.to_s
    col = args[0].strip() if args else ""
    n_args = {"timeFilter": 1, "timeFilter_ms": 1, "dateFilter": 1, "dateTimeFilter": 2, "dt": 2,
              "timeInterval": 1, "timeInterval_ms": 1}
    if name in n_args and len(args) != n_args[name]:
        raise UnexpandedError(f"$__{name} takes {n_args[name]} argument(s), got {len(args)}")
    if name == "fromTime":
        return _dt(f)
    if name == "toTime":
        return _dt(t)
    if name == "fromTime_ms":
        return _dt64(f)
    if name == "toTime_ms":
        return _dt64(t)
    if name == "timeFilter":
        return f"{col} >= {_dt(f)} AND {col} <= {_dt(t)}"
    if name == "timeFilter_ms":
        return f"{col} >= {_dt64(f)} AND {col} <= {_dt64(t)}"
    if name == "dateFilter":
        return f"{col} >= {_date(f)} AND {col} <= {_date(t)}"
    if name in ("dateTimeFilter", "dt"):
        d, c = args[0].strip(), args[1].strip()
        return f"({d} >= {_date(f)} AND {d} <= {_date(t)}) AND ({c} >= {_dt(f)} AND {c} <= {_dt(t)})"
    if name == "timeInterval":
        return f"toStartOfInterval(toDateTime({col}), INTERVAL {max(ctx.interval_s, 1)} second)"
    if name == "timeInterval_ms":
        return f"toStartOfInterval(toDateTime64({col}, 3), INTERVAL {max(ctx.interval_s * 1000, 1)} millisecond)"
    if name == "interval_s":
        return str(max(ctx.interval_s, 1))
    raise UnexpandedError(f"unknown macro $__{name}")


_TAKES_ARGS = {"timeFilter", "timeFilter_ms", "dateFilter", "dateTimeFilter", "dt", "timeInterval", "timeInterval_ms"}


def _backend_macros(sql: str, ctx: QueryContext) -> str:
    out, pos = [], 0
    for m in re.finditer(r"\$__(\w+)", sql):
        if m.start() < pos:
            continue
        name, end = m.group(1), m.end()
        args: list[str] = []
        if name in _TAKES_ARGS:
            if end >= len(sql) or sql[end] != "(":
                raise UnexpandedError(f"$__{name} without its arguments")
            args, end = _macro_args(sql, end)
        out.append(sql[pos:m.start()])
        out.append(_backend_macro(name, args, ctx))
        pos = end
    out.append(sql[pos:])
    return "".join(out)


def expand(sql: str, ctx: QueryContext) -> str:
    """The SQL that reaches ClickHouse when Grafana runs ``sql`` with the ClickHouse data source.

    Follows the plugin (grafana/clickhouse-datasource, README "Macros" and its code):
    1. ``$__conditionalAll(phrase, $var)`` (frontend): ``1=1`` when ``$var`` is All or empty;
    2. template variables (frontend, Grafana's ``templateSrv.replace`` with the plugin's format):
       ``$var``, ``${var}``, ``${var:singlequote}``, ``[[var]]``;
    3. the backend's macros: ``$__timeFilter(c)`` → ``c >= toDateTime(from) AND c <= toDateTime(to)``,
       ``$__timeFilter_ms``, ``$__dateFilter``, ``$__dateTimeFilter``/``$__dt``, ``$__fromTime``,
       ``$__toTime`` (``toDateTime(s)``), ``$__fromTime_ms``/``$__toTime_ms``
       (``fromUnixTimestamp64Milli(ms)``), ``$__timeInterval(c)`` →
       ``toStartOfInterval(toDateTime(c), INTERVAL n second)``, ``$__timeInterval_ms``, ``$__interval_s``.

    Raises:
        UnexpandedError: an unknown macro or variable format, or any ``$``/``[[`` left afterwards.
    """
    out = _backend_macros(_variables(_conditional_all(sql, ctx.variables), ctx.variables), ctx)
    left = re.search(r"\$\{?\w+|\[\[\w+", out)
    if left:
        raise UnexpandedError(f"left unexpanded: {left.group(0)!r} in {out!r}")
    return out


def test_the_expansion_follows_the_plugin() -> None:
    ctx = QueryContext(from_s=1, to_s=2, interval_s=30, variables={
        "tenant": Var.one("o'brien"), "agent": Var(("a", "b"), all=True, multi=True), "one": Var(("x",), multi=True)})
    assert expand("$__timeFilter(ts)", ctx) == "ts >= toDateTime(1) AND ts <= toDateTime(2)"
    assert expand("$__timeFilter_ms(e.ts)", ctx) == "e.ts >= fromUnixTimestamp64Milli(1000) AND e.ts <= fromUnixTimestamp64Milli(2000)"
    assert expand("ts >= $__fromTime AND ts < $__toTime", ctx) == "ts >= toDateTime(1) AND ts < toDateTime(2)"
    assert expand("$__timeInterval(ts)", ctx) == "toStartOfInterval(toDateTime(ts), INTERVAL 30 second)"
    assert expand("t = ${tenant:singlequote}", ctx) == "t = 'o\\'brien'"
    assert expand("$__conditionalAll(a IN (${agent:singlequote}), $agent) AND x", ctx) == "1=1 AND x"
    assert expand("$__conditionalAll(a IN (${one:singlequote}), $one)", ctx) == "a IN ('x')"
    assert expand("a IN ($agent)", ctx) == "a IN ('a','b')"
    for bad in ("$__timeFilter(ts, x)", "$__unknown(ts)", "x = $nobody", "x = ${tenant:csv}", "$__timeFilter ts"):
        with pytest.raises(UnexpandedError):
            expand(bad, ctx)


# --------------------------------------------------------------------------- the files


def _dashboards() -> list[dict[str, Any]]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in DASHBOARD_FILES]


def _datasource() -> dict[str, Any]:
    (ds,) = [d for d in yaml.safe_load(DATASOURCES_FILE.read_text(encoding="utf-8"))["datasources"] if d["type"] == PLUGIN]
    return ds


def _query_panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for p in board["panels"]:
        yield from ([p] if p["type"] != "row" else p.get("panels") or [])


def _targets(board: dict[str, Any]) -> Iterator[tuple[str, str, int]]:
    """(panel title, rawSql, format) of every query of every panel."""
    for p in _query_panels(board):
        if p["type"] == "row":
            continue
        for t in p["targets"]:
            yield p["title"], t["rawSql"], t["format"]


def test_every_dashboard_is_grafana_dashboard_json_on_the_provisioned_datasource() -> None:
    boards = _dashboards()
    assert {b["uid"] for b in boards} == {"agentgym-overview", "agentgym-experiments"}
    ds = _datasource()
    ref = {"type": PLUGIN, "uid": ds["uid"]}
    for path, b in zip(DASHBOARD_FILES, boards):
        where = path.name
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", b["uid"]), where
        assert b["title"] and isinstance(b["schemaVersion"], int) and b.get("id") is None, where
        assert b["time"]["from"].startswith("now-") and b["time"]["to"] == "now", where
        ids = [p["id"] for p in b["panels"]] + [q["id"] for p in b["panels"] for q in p.get("panels") or []]
        assert len(ids) == len(set(ids)) and all(isinstance(i, int) for i in ids), f"{where}: panel ids {ids}"
        cells: set[tuple[int, int]] = set()
        titles: set[str] = set()
        for p in b["panels"]:
            g = p["gridPos"]
            assert {"h", "w", "x", "y"} <= g.keys() and all(isinstance(g[k], int) and g[k] >= 0 for k in "hwxy"), p["title"]
            assert g["w"] >= 1 and g["h"] >= 1 and g["x"] + g["w"] <= 24, f"{where}: {p['title']} {g}"
            mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
            assert not mine & cells, f"{where}: {p['title']} overlaps another panel"
            cells |= mine
            if p["type"] == "row":
                continue
            assert p["type"] in {"timeseries", "stat", "table", "barchart", "bargauge"}, p["type"]
            assert p["title"] and p["description"] and p["datasource"] == ref, f"{where}: {p['title']}"
            assert p["title"] not in titles, f"{where}: two panels called {p['title']!r}"
            titles.add(p["title"])
            refs = [t["refId"] for t in p["targets"]]
            assert refs and len(refs) == len(set(refs)), f"{where}: {p['title']}"
            for t in p["targets"]:
                assert t["datasource"] == ref and t["editorType"] == "sql", f"{where}: {p['title']}"
                assert t["format"] == (0 if p["type"] == "timeseries" else 1), f"{where}: {p['title']}"
                # the tables are the data source's database's (compose: CLICKHOUSE_DB, test_compose.py)
                databases = set(re.findall(r"\b(\w+)\.(?:v_\w+|experiences)\b", t["rawSql"]))
                assert databases == {ds["jsonData"]["defaultDatabase"]}, f"{where}: {p['title']} reads {databases}"
                # every panel is the picked tenant's: the filter is in its SQL
                assert "tenant_id = ${tenant:singlequote}" in t["rawSql"] or "(${tenant:singlequote}, '')" in t["rawSql"], p["title"]
        variables = {v["name"]: v for v in b["templating"]["list"]}
        assert {"tenant", "agent"} <= variables.keys(), where
        tenant = variables["tenant"]
        assert tenant["type"] == "query" and not tenant["multi"] and not tenant["includeAll"], "a tenant is picked alone"
        for v in variables.values():
            if v["type"] == "query":
                assert v["datasource"] == ref and v["query"]["rawSql"], f"{where}: variable {v['name']}"


def test_compose_mounts_the_dashboards_where_the_provider_reads_them() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    mounts = {}
    for vol in compose["services"]["grafana"]["volumes"]:
        parts = str(vol).split(":")
        if parts[0].startswith("./"):
            mounts[parts[1]] = (ROOT / parts[0]).resolve()
            assert parts[2:] == ["ro"], f"{vol} should be read-only"
    assert mounts["/etc/grafana/provisioning/dashboards"] == PROVIDERS_DIR.resolve()
    providers = [p for f in sorted(PROVIDERS_DIR.glob("*.y*ml"))
                 for p in yaml.safe_load(f.read_text(encoding="utf-8"))["providers"]]
    assert len(providers) == 1 and providers[0]["type"] == "file"
    assert mounts[providers[0]["options"]["path"]] == (GRAFANA / "dashboards").resolve()


# --------------------------------------------------------------------------- the SQL, on the real engine


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    s = open_store(f"chdb://{tmp_path_factory.mktemp('grafana') / 'ch'}")
    migrate(s)
    yield s
    s.close()


def _seed(store: Store, tenant: str, scale: int) -> dict[str, int]:
    """Runs of two agents and model versions with feedback, labels, drift alerts and dead letters,
    and an experiment with statistics, a guardrail and a decision. ``scale`` varies every count and
    value, so a row of one tenant in another's panel would change what that panel shows.

    Returns:
        runs per agent.
    """
    n = 6 * scale
    agents = ["support" if i % 3 else "billing" for i in range(n)]
    exps = [samples.experience(tenant, agent=agents[i], ts_ms=T0 + i * 600_000, model_version=f"v{1 + i % 2}",
                               latency_ms=100.0 * scale + i, cost_usd=0.001 * scale, prompt_tokens=30 * scale,
                               experiment_id="exp1" if agents[i] == "support" else None) for i in range(n)]
    insert_records(store, "Experience", exps)
    fbs = []
    for i, e in enumerate(exps):
        ts = e["timestamp_ms"] + 30_000 * (1 + i % 4)
        if i % 2 == 0:
            fbs.append(samples.feedback(tenant, e["trace_id"], agent=e["agent_id"], ts_ms=ts, thumbs_up=i % 4 == 0))
        if i % 3 == 0:
            fbs.append(samples.feedback(tenant, e["trace_id"], agent=e["agent_id"], ts_ms=ts + 1, kind="rating",
                                        thumbs_up=None, rating=float(1 + i % 5)))
        if i % 5 == 1:  # a reviewer's audit label: it never relabels the run
            audit = samples.feedback(tenant, e["trace_id"], agent=e["agent_id"], ts_ms=ts + 2, thumbs_up=i % 2 == 1)
            audit["metadata"] = {"audit": "true"}
            fbs.append(audit)
    insert_records(store, "Feedback", fbs)
    outs = []
    for i, e in enumerate(exps):
        o = samples.outcome(tenant, e["trace_id"], agent=e["agent_id"], model_version=e["model_version"],
                            label=("success", "failure", "unknown")[i % 3], ts_ms=e["timestamp_ms"] + 60_000)
        o["confidence"] = (0.95, 0.6)[i % 2]
        o["labeller"] = ("human", "rules", "model:logreg")[i % 3]
        outs.append(o)
    insert_records(store, "Outcome", outs)
    insert_records(store, "DeadLetter", [samples.dead_letter(tenant, ts_ms=T0 + i, offset=i) for i in range(scale)])
    insert_records(store, "DriftAlert", [samples.decoded("DriftAlert", {
        "event_id": samples.new_id(), "tenant_id": tenant, "agent_id": "support", "model_version": "v1",
        "timestamp_ms": T0 + 7_200_000 + i, "metric": "success_rate", "detector": "ADWIN(delta=0.002)",
        "estimate_before": 0.8, "estimate_after": 0.4 / scale, "n": 100 * scale + i}) for i in range(scale)])
    insert_records(store, "ExperimentConfig", [samples.experiment_config(tenant, "exp1", updated_ms=T0)])
    snaps = []
    for i in range(3 * scale):
        s = samples.stats_snapshot(tenant, "exp1", ts_ms=T0 + 600_000 * (i + 1))
        s["arms"] = [{**a, "n": a["n"] * scale + 10 * i} for a in s["arms"]]
        s["comparisons"] = [{**c, "ci_low": c["ci_low"] / scale, "p_value": 0.5 / (i + scale)} for c in s["comparisons"]]
        snaps.append(s)
        g = samples.stats_snapshot(tenant, "exp1", ts_ms=T0 + 600_000 * (i + 1) + 1)
        g["metric"], g["role"] = "latency_ms", "guardrail"
        g["details_json"] = json.dumps({"comparisons": {"treatment": {"guardrail": {
            "status": "holds", "limit": 0.1, "degradation": {"estimate": 0.01 * scale}, "p_value_breached": 0.9}}}})
        snaps.append(g)
    insert_records(store, "StatsSnapshot", snaps)
    insert_records(store, "Decision", [samples.decision(tenant, "exp1", ts_ms=T0 + 600_000 * (3 * scale) + 5000)])
    return {a: agents.count(a) for a in set(agents)}


def _context(tenant: str, agent: str | None, agents: tuple[str, ...], experiments: tuple[str, ...] = ("exp1",)) -> QueryContext:
    return QueryContext(variables={
        "tenant": Var.one(tenant),
        "agent": Var(agents, all=True, multi=True) if agent is None else Var((agent,), multi=True),
        "experiment": Var(experiments, all=True, multi=True),
        "min_confidence": Var.one("0.7"),
    })


def _run(store: Store, sql: str, ctx: QueryContext) -> QueryResult:
    expanded = expand(sql, ctx)
    try:
        return store.query(expanded)
    except Exception as exc:  # the store's error names ClickHouse's; show the SQL that failed
        raise AssertionError(f"{exc}\n--- expanded SQL:\n{expanded}") from exc


def _run_dashboards(store: Store, ctx: QueryContext) -> dict[tuple[str, str], QueryResult]:
    """Every panel query and query variable of every dashboard, keyed by (dashboard uid, title)."""
    results = {}
    for b in _dashboards():
        # only the dashboard's own variables: a panel naming another dashboard's fails to expand
        defined = {v["name"] for v in b["templating"]["list"]}
        own = QueryContext(ctx.from_s, ctx.to_s, ctx.interval_s, {k: v for k, v in ctx.variables.items() if k in defined})
        for v in b["templating"]["list"]:
            if v["type"] == "query":
                results[(b["uid"], f"variable {v['name']}")] = _run(store, v["query"]["rawSql"], own)
        for title, sql, fmt in _targets(b):
            r = _run(store, sql, own)
            if fmt == 0:  # the plugin turns a long table into time series: a `time` column, sorted
                assert r.column_names[0] == "time" and r.column_types[0].startswith("DateTime"), (title, r.column_names)
                times = [row[0] for row in r.rows]
                assert times == sorted(times), title
            results[(b["uid"], title)] = r
    return results


def _canonical(r: QueryResult) -> list[str]:
    return sorted(repr(row) for row in r.rows)


@pytest.mark.timeout(120)
def test_every_query_runs_on_the_schema_and_shows_only_the_picked_tenant(store: Store) -> None:
    a, b = "graf-a", "graf-b"
    a_runs = _seed(store, a, 1)
    # a dead letter the sink could not read a tenant from: shown with every tenant's own
    unknown = samples.dead_letter("", ts_ms=T0, offset=99)
    insert_records(store, "DeadLetter", [unknown])
    agents = tuple(sorted(a_runs))

    before = _run_dashboards(store, _context(a, None, agents))
    for key, r in before.items():
        assert r.rows, f"{key} returns no row: a leak could not show"
    assert before[("agentgym-overview", "Runs")].rows == [(sum(a_runs.values()),)]
    assert sum(row[2] for row in before[("agentgym-overview", "Runs over time")].rows) == sum(a_runs.values())
    assert [row[0] for row in before[("agentgym-overview", "variable agent")].rows] == list(agents)
    assert [row[0] for row in before[("agentgym-experiments", "variable experiment")].rows] == ["exp1"]
    # the latest statistics: 100 + 20 and 110 + 20 units, weights 0.5 each
    assert before[("agentgym-experiments", "Units per arm")].rows == [("exp1", "control", 120, 0.48, 0.5),
                                                                      ("exp1", "treatment", 130, 0.52, 0.5)]

    one = _run_dashboards(store, _context(a, "support", agents))
    assert one[("agentgym-overview", "Runs")].rows == [(a_runs["support"],)]
    assert {row[0] for row in one[("agentgym-overview", "Per agent and model version")].rows} == {"support"}

    b_runs = _seed(store, b, 3)
    after = _run_dashboards(store, _context(a, None, agents))
    changed = [k for k in before if k[1] != "variable tenant" and _canonical(after[k]) != _canonical(before[k])]
    assert not changed, f"another tenant's rows reach these panels: {changed}"
    assert {row[0] for row in after[("agentgym-overview", "variable tenant")].rows} >= {a, b}

    theirs = _run_dashboards(store, _context(b, None, agents))
    assert theirs[("agentgym-overview", "Runs")].rows == [(sum(b_runs.values()),)]
    differs = [k for k in before if _canonical(theirs[k]) != _canonical(before[k])]
    assert len(differs) > len(before) // 2, "tenant B's own data should show in its panels"
