"""``agentgym sql "SELECT ..."``: run SQL against the ClickHouse store (for analysts).

Reads go to the store named by ``--url`` / ``AGENTGYM_CLICKHOUSE_URL``. For the
embedded store (``chdb://``) owned by another process (the sink), the query goes to
that process's read-only HTTP interface, found through ``<dir>/http.port``.
Statements are read-only unless ``--allow-writes`` is given (operators).
"""

from __future__ import annotations

import sys

import click

from agentgym.processors.store import StoreError, StoreSettings, open_reader, open_store
from agentgym.processors.store.exceptions import QueryError

__all__ = ["sql", "FORMATS"]

# --format choice -> ClickHouse output format
FORMATS: dict[str, str] = {
    "table": "PrettyCompactMonoBlock",
    "csv": "CSVWithNames",
    "tsv": "TSVWithNames",
    "json": "JSONEachRow",
}


def _params(values: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{item!r}: expected name=value", param_hint="--param")
        out[name] = value
    return out


@click.command()
@click.argument("query")
@click.option("--format", "fmt", type=click.Choice(sorted(FORMATS)), default="table", show_default=True,
              help="table, csv/tsv with a header line, or json (one object per line)")
@click.option("--url", default=None, help="store URL [env AGENTGYM_CLICKHOUSE_URL; chdb://~/.agentgym/clickhouse]")
@click.option("--database", default=None, help="default database [env AGENTGYM_CLICKHOUSE_DATABASE; agentgym]")
@click.option("--param", "-p", "param_items", multiple=True, metavar="NAME=VALUE",
              help="value of a {NAME:Type} placeholder (repeatable)")
@click.option("--allow-writes", is_flag=True, help="allow INSERT, DDL and other writes (not through a read interface)")
def sql(query: str, fmt: str, url: str | None, database: str | None, param_items: tuple[str, ...], allow_writes: bool) -> None:
    """Run QUERY against the ClickHouse store and print the result ("-" reads QUERY from stdin).

    Tables and views are described in docs/analytics.md; unqualified names are in the
    Agent Gym database (v_runs, v_experiences, v_rollup_hourly, ...).
    """
    if query == "-":
        query = sys.stdin.read()
    overrides: dict[str, object] = {}
    if url is not None:
        overrides["clickhouse_url"] = url
    if database is not None:
        overrides["clickhouse_database"] = database
    try:
        settings = StoreSettings(**overrides)  # type: ignore[arg-type]
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    params = _params(param_items)
    engine_settings: dict[str, object] = {"output_format_json_quote_64bit_integers": 0}
    if fmt == "table":
        engine_settings.update(
            output_format_pretty_row_numbers=0,
            output_format_pretty_color=1 if sys.stdout.isatty() else 0,
        )
    try:
        store = open_store(settings=settings, create_database=False) if allow_writes else open_reader(settings=settings)
        try:
            result = store.query_raw(
                query, FORMATS[fmt], params=params or None, settings=engine_settings, readonly=not allow_writes
            )
        finally:
            store.close()
    except StoreError as exc:
        if isinstance(exc, QueryError) and exc.code == 81 and settings.clickhouse_database in str(exc):
            # UNKNOWN_DATABASE for our own database: the data directory or server is there,
            # but nothing has created Agent Gym's tables in it yet
            click.echo(
                f"error: no Agent Gym store at {settings.clickhouse_url} (database {settings.clickhouse_database!r} "
                "does not exist yet); create it by running the stream processors with AGENTGYM_CLICKHOUSE_URL set to it "
                "(`agentgym processors run`; `agentgym demo` does too): their ClickHouse sink applies the migrations",
                err=True,
            )
            sys.exit(1)
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    out = click.get_binary_stream("stdout")
    out.write(result.data)
    out.flush()
